// The client's behaviour beyond the snippets: results and errors, the
// promise that runInSandbox always destroys, concurrency over one server,
// volumes, snapshots, detach and attach. Sandboxes here use no network.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { execFileSync } from "node:child_process";
import {
  Client,
  ExitError,
  LightboxError,
  type Sandbox,
} from "@beamhop/lightbox";
import { busyboxRootfs, lb as lbCLI, newStore, until } from "../test-helpers/fixtures.js";

const store = newStore("client");
store.importSnapshot("busybox");
const lb = new Client({ root: store.root });
after(async () => {
  await lb.close();
  store.cleanup();
});

const none = { snapshot: "busybox", network: "none" as const };

test("shell and exec resolve to the result; exec takes args, env, workdir and stdin", async () => {
  const hostDir = path.join(store.dir, "host");
  fs.mkdirSync(hostDir);
  fs.writeFileSync(path.join(hostDir, "f"), "from the host\n");
  await lb.runInSandbox({ ...none, name: "results", mounts: { "/h": { source: hostDir, readOnly: true } }, env: { GREETING: "hi" } }, async (sb) => {
    assert.equal(sb.name, "results");
    assert.deepEqual(await sb.shell("cat /h/f; echo $GREETING; echo e >&2"), { exitCode: 0, stdout: "from the host\nhi\n", stderr: "e\n" });
    const r = await sb.exec("/bin/sh", ["-c", 'pwd; echo "$A"; cat'], { env: { A: "b" }, workdir: "/tmp", stdin: "in" });
    assert.equal(r.stdout, "/tmp\nb\nin");
    const bin = await sb.exec("cat", [], { stdin: new Uint8Array([104, 105, 10]) });
    assert.equal(bin.stdout, "hi\n");
    const ro = await sb.shell("echo x > /h/f").catch((e: unknown) => e);
    assert.ok(ro instanceof ExitError && ro.exitCode !== 0, "a read-only mount is read-only");
  });
});

test("signal and stop reach the main command; a sandbox without one refuses them", async () => {
  const sb = await lb.launchSandbox({
    ...none, name: "stoppable", stopSignal: "USR1",
    command: ["sh", "-c", 'trap "exit 4" USR1; trap "echo hup > /tmp/h" HUP; echo > /tmp/ready; while :; do sleep 0.05; done'],
  });
  const waitFile = async (f: string) => {
    const deadline = Date.now() + 30000;
    while (!(await sb.exec("test", ["-e", f]).then(() => true, () => false))) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${f} in the sandbox`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await waitFile("/tmp/ready");
  await sb.signal("HUP");
  await waitFile("/tmp/h");
  await sb.stop(20000);
  assert.ok(!store.sandboxes().includes("stoppable:running"), "stopped: no longer running");
  const [info] = (await lb.listSandboxes()).filter((i) => i.name === "stoppable");
  assert.equal(info?.exitCode, 4, "the USR1 trap's status");
  assert.equal(info?.networkLost, false, "a sandbox with no network stack has lost none");
  await assert.rejects(sb.signal("TERM"), (e: unknown) => e instanceof LightboxError && e.code === "not_running");
  await sb.destroy();
  await lb.runInSandbox({ ...none, name: "idle" }, async (idle) => {
    await assert.rejects(idle.stop(), (e: unknown) => e instanceof LightboxError && e.code === "no_command");
  });
});

test("encoding \"buffer\" returns the bytes as written, in results and errors; text replaces what is not UTF-8", async () => {
  await lb.runInSandbox({ ...none, name: "bytes" }, async (sb) => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const r = await sb.exec("cat", [], { stdin: all, encoding: "buffer" });
    assert.ok(Buffer.isBuffer(r.stdout) && r.stdout.equals(all), `stdout ${r.stdout.toString("hex")}`);
    assert.ok(Buffer.isBuffer(r.stderr) && r.stderr.length === 0);
    const fromText = await sb.shell("cat; printf '\\377' >&2", { stdin: "é", encoding: "buffer" });
    assert.deepEqual([...fromText.stdout, ...fromText.stderr], [0xc3, 0xa9, 0xff]);
    const err = await sb.shell("printf '\\377\\000x'; exit 3", { encoding: "buffer" }).then(
      () => assert.fail("exit 3 resolved"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ExitError && err.exitCode === 3, `${err}`);
    assert.ok(Buffer.isBuffer(err.stdout) && err.stdout.equals(Buffer.from([0xff, 0, 0x78])), `error stdout ${err.stdout}`);
    assert.equal((await sb.exec("cat", [], { stdin: new Uint8Array([0xff, 0x61]) })).stdout, "\ufffda", "text by default, bytes in or not");
  });
});

test("a non-zero exit rejects with an ExitError carrying the result", async () => {
  await lb.runInSandbox({ ...none, name: "exits" }, async (sb) => {
    const err = await sb.shell("echo out; echo bad >&2; exit 7").then(
      () => assert.fail("exit 7 resolved"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ExitError, `${err}`);
    assert.ok(err instanceof LightboxError);
    assert.equal(err.code, "exit");
    assert.deepEqual(err.result, { exitCode: 7, stdout: "out\n", stderr: "bad\n" });
    assert.equal(err.exitCode, 7);
    await assert.rejects(sb.exec("/no/such/program"), (e: unknown) => e instanceof LightboxError && e.code === "command_not_found");
  });
});

test("a command past its timeoutMs rejects with what it wrote until then", async () => {
  await lb.runInSandbox({ ...none, name: "slow" }, async (sb) => {
    const err = await sb.shell("echo so far; echo warn >&2; sleep 1000", { timeoutMs: 2000 }).then(
      () => assert.fail("a shell past its timeoutMs resolved"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ExitError, `${err}`);
    assert.equal(err.code, "canceled");
    assert.match(err.message, /killed as timeoutMs \(2000\) passed/);
    assert.deepEqual(err.result, { exitCode: -1, stdout: "so far\n", stderr: "warn\n" });
  });
});

test("a background job holding a command's output does not hold its result: it resolves when the command exits", async () => {
  await lb.runInSandbox({ ...none, name: "bgjob" }, async (sb) => {
    // The job sleeps 1001 s; timeoutMs (30 s) would reject long before.
    assert.deepEqual(await sb.shell("sleep 1001 & echo started; echo warn >&2", { timeoutMs: 30000 }), { exitCode: 0, stdout: "started\n", stderr: "warn\n" });
    assert.equal((await sb.shell("ps -o args | grep -c '^sleep 1001'")).stdout, "1\n", "the background job runs on");
  });
});

test("aborting a command's signal kills it and rejects with what it wrote; an aborted signal runs nothing", async () => {
  await lb.runInSandbox({ ...none, name: "aborted" }, async (sb) => {
    const ac = new AbortController();
    const reason = new Error("the user pressed stop");
    // timeoutMs only bounds the test should the abort not reach the command.
    const running = sb.shell("echo $$ > /tmp/pid; echo so far; echo warn >&2; exec sleep 1000", { signal: ac.signal, timeoutMs: 60000 });
    for (const deadline = Date.now() + 30000; !(await sb.exec("test", ["-s", "/tmp/pid"]).then(() => true, () => false)); ) {
      if (Date.now() > deadline) throw new Error("timed out waiting for the command to start");
      await new Promise((r) => setTimeout(r, 50));
    }
    const started = Date.now();
    ac.abort(reason);
    const err = await running.then(
      () => assert.fail("an aborted shell resolved"),
      (e: unknown) => e,
    );
    assert.ok(Date.now() - started < 20000, `the abort took ${Date.now() - started} ms`);
    assert.ok(err instanceof ExitError, `${err}`);
    assert.equal(err.code, "canceled");
    assert.match(err.message, /killed as the client cancelled the request/);
    assert.equal(err.cause, reason);
    assert.deepEqual(err.result, { exitCode: -1, stdout: "so far\n", stderr: "warn\n" });
    const pid = (await sb.exec("cat", ["/tmp/pid"])).stdout.trim();
    await assert.rejects(sb.exec("kill", ["-0", pid]), ExitError, `the aborted command (pid ${pid}) is gone`);

    const pre = await sb.shell("touch /tmp/ran", { signal: AbortSignal.abort(reason) }).then(
      () => assert.fail("a shell with an aborted signal resolved"),
      (e: unknown) => e,
    );
    assert.ok(pre instanceof LightboxError && pre.code === "canceled" && pre.cause === reason, `${pre}`);
    await assert.rejects(sb.exec("test", ["-e", "/tmp/ran"]), ExitError, "a shell with an aborted signal ran");

    const ok = new AbortController();
    assert.equal((await sb.shell("echo fine", { signal: ok.signal })).stdout, "fine\n");
    ok.abort(); // after the answer: nothing to cancel, and the connection goes on
    assert.equal((await sb.shell("echo still")).stdout, "still\n");
  });
});

test("onStdout and onStderr get the output as the command writes it; the promise settles as without them", async () => {
  const dir = path.join(store.dir, "fifos");
  fs.mkdirSync(dir);
  for (const f of ["go", "split", "bin"]) execFileSync("mkfifo", [path.join(dir, f)]);
  await lb.runInSandbox({ ...none, name: "streaming", mounts: { "/h": dir } }, async (sb) => {
    // Causality, no timing: the command waits on a fifo that this test
    // writes only once onStdout had the first line; "\342\202\254" (€) is
    // split across the writes on either side of it.
    const out: string[] = [];
    const err: string[] = [];
    let first!: () => void;
    const sawFirst = new Promise<void>((resolve) => (first = resolve));
    const running = sb.shell("echo first; printf 'a\\342'; read x < /h/go; printf '\\202\\254'; echo second >&2", {
      timeoutMs: 60000, // bounds the test should a chunk never come
      onStdout: (chunk) => {
        out.push(chunk);
        if (out.join("") === "first\na") first();
      },
      onStderr: (chunk) => err.push(chunk),
    });
    await Promise.race([sawFirst, running.then((r) => assert.fail(`resolved before its first line was streamed: ${JSON.stringify(r)}`))]);
    await fs.promises.writeFile(path.join(dir, "go"), "go\n");
    const r = await running;
    assert.deepEqual(r, { exitCode: 0, stdout: "first\na€", stderr: "second\n" });
    assert.equal(out.join(""), r.stdout);
    assert.ok(out.every((c) => !c.includes("\uFFFD")), `a chunk split the character: ${JSON.stringify(out)}`);
    assert.deepEqual(err, ["second\n"]);

    // Text of a command given binary stdin comes as base64: decoded per
    // stream, so a split character still comes whole.
    const text: string[] = [];
    const bin = await sb.shell("cat; printf 'a\\342'; read x < /h/bin; printf '\\202\\254'", {
      timeoutMs: 60000,
      stdin: new Uint8Array([0x78]),
      onStdout: (chunk) => {
        text.push(chunk);
        if (text.join("") === "xa") void fs.promises.writeFile(path.join(dir, "bin"), "go\n");
      },
    });
    assert.equal(bin.stdout, "xa€");
    assert.deepEqual(text.join(""), "xa€");
    assert.ok(text.every((c) => !c.includes("\uFFFD")), `a chunk split the character: ${JSON.stringify(text)}`);

    // Buffers with encoding "buffer", the bytes as they come; an ExitError
    // still carries the result, after the callbacks had all of it.
    const bufs: Buffer[] = [];
    const e = await sb.exec("sh", ["-c", "printf 'a\\342'; read x < /h/split; printf '\\202\\254'; exit 3"], {
      encoding: "buffer",
      timeoutMs: 60000,
      onStdout: (chunk) => {
        bufs.push(chunk);
        if (Buffer.concat(bufs).equals(Buffer.from([0x61, 0xe2]))) void fs.promises.writeFile(path.join(dir, "split"), "go\n");
      },
    }).then(() => assert.fail("exit 3 resolved"), (x: unknown) => x);
    assert.ok(e instanceof ExitError && e.code === "exit" && Buffer.isBuffer(e.stdout), `${e}`);
    assert.ok(bufs.every((b) => Buffer.isBuffer(b)));
    assert.ok(Buffer.concat(bufs).equals(e.stdout as Buffer), `streamed ${Buffer.concat(bufs).toString("hex")}, result ${(e.stdout as Buffer).toString("hex")}`);
    assert.equal((e.stdout as Buffer).toString("hex"), "61e282ac");

    // A callback that throws: the command runs to its end, and the
    // promise rejects with what it threw.
    const boom = new Error("the UI went away");
    await assert.rejects(sb.shell("echo one; echo two > /tmp/ran", { onStdout: () => { throw boom; } }), (x: unknown) => x === boom);
    assert.equal((await sb.exec("cat", ["/tmp/ran"])).stdout, "two\n");
  });
});

test("a request past the protocol's 16 MiB rejects with invalid_request, and the connection goes on", async () => {
  await lb.runInSandbox({ ...none, name: "big" }, async (sb) => {
    await assert.rejects(
      sb.exec("wc", ["-c"], { stdin: "x".repeat(17 << 20) }),
      (e: unknown) => e instanceof LightboxError && e.code === "invalid_request" && /longer than 16777216 bytes/.test(e.message),
    );
    assert.equal((await sb.exec("wc", ["-c"], { stdin: "x".repeat(15 << 20) })).stdout.trim(), String(15 << 20));
  });
});

test("an overlay mount is copy-on-write: the sandbox changes it, the host's directory stays as it was", async () => {
  const hostDir = path.join(store.dir, "checkout");
  fs.mkdirSync(hostDir);
  fs.writeFileSync(path.join(hostDir, "f"), "host\n");
  const r = await lb.runInSandbox({ ...none, mounts: { "/w": { source: hostDir, overlay: true } } }, (sb) =>
    sb.shell("cat /w/f; echo sandbox > /w/f; mkdir /w/node_modules; rm /w/f; echo again > /w/f; cat /w/f; ls /w"),
  );
  assert.equal(r.stdout, "host\nagain\nf\nnode_modules\n");
  assert.deepEqual(fs.readdirSync(hostDir), ["f"], "the sandbox's writes reached the host");
  assert.equal(fs.readFileSync(path.join(hostDir, "f"), "utf8"), "host\n");
});

test("resources limit the sandbox: processes and /dev/shm, as listSandboxes' limits say", async () => {
  await lb.runInSandbox({ ...none, name: "limited", resources: { pidsLimit: 100, shmMib: 8 } }, async (sb) => {
    const [info] = (await lb.listSandboxes()).filter((i) => i.name === "limited");
    assert.match(info?.limits?.pids ?? "", /\b100\b/, `limits ${JSON.stringify(info?.limits)}`);
    assert.match(info?.limits?.shm ?? "", /\b8 MiB\b/, `limits ${JSON.stringify(info?.limits)}`);
    const shm = await sb.shell("head -c 16777216 /dev/zero > /dev/shm/big; wc -c < /dev/shm/big");
    assert.ok(Number(shm.stdout) <= 8 << 20 && shm.stderr !== "", `16 MiB into an 8 MiB /dev/shm kept ${shm.stdout.trim()} bytes: ${shm.stderr}`);
    const forks = await sb.shell("for i in $(seq 150); do sleep 1000 >/dev/null 2>&1 & done; echo done").catch((e: unknown) => e as ExitError);
    assert.match(forks.stderr, /can't fork/, "150 processes under a limit of 100");
  });
});

test("errors carry the stable codes of lightbox's sentinels", async () => {
  const code = (p: Promise<unknown>) => p.then(() => "resolved", (e: unknown) => (e instanceof LightboxError ? e.code : `${e}`));
  assert.equal(await code(lb.launchSandbox({ ...none, snapshot: "nosuch" })), "not_found");
  assert.equal(await code(lb.launchSandbox({ ...none, name: "bad/name" })), "invalid_name");
  assert.equal(await code(lb.attachSandbox("nosuch")), "not_found");
  assert.equal(await code(lb.removeVolume("nosuch")), "not_found");
  assert.equal(await code(lb.ensureVolume("a b")), "invalid_name");
  const sb = await lb.launchSandbox({ ...none, name: "taken", mounts: { "/v": { volume: "busy" } } });
  assert.equal(await code(lb.launchSandbox({ ...none, name: "taken" })), "exists");
  assert.equal(await code(lb.removeVolume("busy")), "in_use");
  await sb.destroy();
  await lb.removeVolume("busy");
  const quota = await code(lb.ensureVolume("quota", { quotaMib: 8 }));
  if (process.getuid?.() === 0) {
    assert.equal(quota, "resolved", "as root a quota is enforced by a loop-mounted image");
    await lb.removeVolume("quota");
  } else {
    assert.equal(quota, "quota_unsupported");
  }
});

test("runInSandbox destroys the sandbox when fn throws, and rethrows", async () => {
  const boom = new Error("boom");
  await assert.rejects(
    lb.runInSandbox({ ...none, name: "throws" }, async (sb) => {
      await sb.shell("true");
      throw boom;
    }),
    (e: unknown) => e === boom,
  );
  await assert.rejects(
    lb.runInSandbox({ ...none, name: "throws-sync" }, () => {
      throw boom;
    }),
    (e: unknown) => e === boom,
  );
  await assert.rejects(lb.runInSandbox({ ...none, name: "fails" }, (sb) => sb.shell("exit 3")), ExitError);
  assert.deepEqual(store.sandboxes(), []);
  assert.deepEqual(await lb.listSandboxes(), []);
});

test("three runInSandbox at once share one lightbox api process and run in parallel", async () => {
  // Each waits until all three have started: they can only finish if the
  // server runs their shells at the same time.
  const names = ["par-a", "par-b", "par-c"];
  const rs = await Promise.all(
    names.map((n) =>
      lb.runInSandbox({ ...none, name: n, mounts: { "/meet": { volume: "meet" } } }, (sb) =>
        sb.shell("touch /meet/$(hostname); i=0; while [ $(ls /meet | wc -l) -lt 3 ]; do i=$((i+1)); [ $i -gt 600 ] && exit 9; sleep 0.05; done; hostname"),
      ),
    ),
  );
  assert.deepEqual(rs.map((r) => r.stdout), names.map((n) => n + "\n"));
  const apis = apiProcessesOf(process.pid);
  assert.equal(apis.length, 1, `lightbox api processes of this test: ${apis}`);
  await lb.removeVolume("meet");
});

test("ensureVolume is idempotent; listVolumes returns dates and numbers", async () => {
  const v1 = await lb.ensureVolume("labelled", { labels: { team: "platform", ttl: "30d" } });
  const v2 = await lb.ensureVolume("labelled", { labels: { ttl: "1d" } });
  assert.deepEqual(v2.labels, { team: "platform", ttl: "30d" });
  assert.equal(v2.createdAt.getTime(), v1.createdAt.getTime());
  await lb.runInSandbox({ ...none, mounts: { "/v": { volume: "labelled" } } }, (sb) => sb.shell("head -c 100000 /dev/zero > /v/f"));
  const vols = await lb.listVolumes();
  assert.deepEqual(vols.map((v) => v.name), ["labelled"]);
  const v = vols[0]!;
  assert.ok(v.createdAt instanceof Date && Math.abs(Date.now() - v.createdAt.getTime()) < 3600e3, `createdAt ${v.createdAt}`);
  assert.equal(v.quotaMib, 0);
  assert.ok(v.usedBytes >= 100000, `usedBytes ${v.usedBytes}`);
  assert.deepEqual(v.labels, { team: "platform", ttl: "30d" });
  await lb.removeVolume("labelled");
  assert.deepEqual(await lb.listVolumes(), []);
});

test("a new volume starts with the snapshot's files at its path; noCopy keeps one empty", async () => {
  const st = newStore("fill"); // its own snapshot, not in this store's list
  st.importSnapshot("withdata", { "data/a.txt": { body: "from image\n" }, "other/b.txt": { body: "b\n" } });
  const c = new Client({ root: st.root });
  try {
    const mounts = { "/data": { volume: "data" }, "/other": { volume: "other", noCopy: true } };
    const r = await c.runInSandbox({ snapshot: "withdata", network: "none", mounts }, (sb) => sb.shell("cat /data/a.txt; ls -A /other | wc -l"));
    assert.equal(r.stdout, "from image\n0\n", "a new volume over /data holds the image's a.txt; a noCopy one over /other (b.txt) is empty");
  } finally {
    await c.close();
    st.cleanup();
  }
});

test("listings carry every field the server sends: oomKilled, usage, usageKnown, backend, storedSize", async () => {
  await lb.runInSandbox({ ...none, name: "listed", mounts: { "/v": { volume: "listed-vol" } } }, async () => {
    const [info] = (await lb.listSandboxes()).filter((i) => i.name === "listed");
    assert.equal(info?.oomKilled, false);
    assert.ok(typeof info?.pid === "number" && info.pid > 0, `pid ${info?.pid}`);
    const vols = await lb.listVolumes();
    assert.deepEqual(vols.map((v) => [v.name, v.usageKnown, v.backend]), [["listed-vol", true, "dir"]]);
  });
  await lb.removeVolume("listed-vol");
  const [snap] = await lb.listSnapshots();
  assert.ok(snap!.storedSize > 0, `storedSize ${snap!.storedSize}`);
});

test("listSnapshots; a detached sandbox outlives its client and another client attaches", async () => {
  const snaps = await lb.listSnapshots();
  assert.deepEqual(snaps.map((s) => s.name), ["busybox"]);
  assert.ok(snaps[0]!.createdAt instanceof Date);

  const first = new Client({ root: store.root });
  const kept: Sandbox = await first.launchSandbox({ ...none, name: "kept" });
  await kept.detach();
  await first.launchSandbox({ ...none, name: "dropped" });
  await first.close(); // its server destroys "dropped" and exits
  await until("the first client's server to destroy what it launched", 30000, () => store.sandboxes().join(",") === "kept:running");
  const listed = await lb.listSandboxes();
  assert.deepEqual(listed.map((s) => [s.name, s.status, s.detached, s.timedOut]), [["kept", "running", true, false]]);

  const sb = await lb.attachSandbox("kept");
  assert.equal((await sb.shell("hostname")).stdout, "kept\n");
  await sb.destroy();
  assert.deepEqual(store.sandboxes(), []);
});

test("commit saves a sandbox as a snapshot that launches with its files; removeSnapshot refuses it while in use", async () => {
  const [busybox] = await lb.listSnapshots();
  const snap = await lb.runInSandbox({ ...none, name: "committed" }, async (sb) => {
    await sb.shell("echo saved > /etc/marker");
    const s = await sb.commit("ts-commit");
    await assert.rejects(sb.commit("ts-commit"), (e: unknown) => e instanceof LightboxError && e.code === "exists");
    await sb.shell("echo replaced > /etc/marker");
    const r = await sb.commit("ts-commit", { replace: true });
    assert.notEqual(r.digest, s.digest, "a replacing commit of other files is another image");
    return r;
  });
  assert.equal(snap.name, "ts-commit");
  assert.equal(snap.layers, busybox!.layers + 1);
  assert.ok(snap.createdAt instanceof Date && snap.storedSize > 0);
  assert.deepEqual((await lb.listSnapshots()).find((s) => s.name === "ts-commit"), snap, "commit resolves to what listSnapshots shows");

  const sb = await lb.launchSandbox({ ...none, name: "from-commit", snapshot: "ts-commit" });
  assert.equal((await sb.shell("cat /etc/marker")).stdout, "replaced\n");
  await assert.rejects(lb.removeSnapshot("ts-commit"), (e: unknown) => e instanceof LightboxError && e.code === "in_use");
  await sb.destroy();
  await lb.removeSnapshot("ts-commit");
  assert.deepEqual((await lb.listSnapshots()).map((s) => s.name), ["busybox"]);
  await assert.rejects(lb.removeSnapshot("ts-commit"), (e: unknown) => e instanceof LightboxError && e.code === "not_found");
});

test("importSnapshot brings in a rootfs directory and an exported OCI layout (relative paths from this process's directory)", async () => {
  const rootfs = busyboxRootfs(path.join(store.dir, "rootfs-import"), { "etc/marker": { body: "imported\n" } });
  const imp = await lb.importSnapshot("ts-rootfs", path.relative(process.cwd(), rootfs));
  assert.equal(imp.name, "ts-rootfs");
  assert.equal(imp.layers, 1);
  await assert.rejects(lb.importSnapshot("ts-rootfs", rootfs), (e: unknown) => e instanceof LightboxError && e.code === "exists");
  await assert.rejects(
    lb.importSnapshot("ts-bad", rootfs, { format: "zip" as "oci" }),
    (e: unknown) => e instanceof LightboxError && e.code === "invalid_params",
  );

  const layout = path.join(store.dir, "layout");
  lbCLI(store.root, "snapshot", "export", "ts-rootfs", layout);
  const oci = await lb.importSnapshot("ts-oci", `${layout}:ts-rootfs`, { format: "oci" });
  assert.equal(oci.digest, imp.digest, "the exported image comes back as it was");
  await lb.runInSandbox({ ...none, snapshot: "ts-oci" }, async (sb) => {
    assert.equal((await sb.shell("cat /etc/marker")).stdout, "imported\n");
  });
  for (const n of ["ts-rootfs", "ts-oci"]) await lb.removeSnapshot(n);
});

test("prewarm keeps sandboxes ready: a matching launchSandbox takes one (the init that ran in the pool); n sets the pool's size, 0 empties it", async () => {
  const pool = { ...none, resources: { pidsLimit: 64 } };
  await assert.rejects(lb.prewarm(pool, -1), (e: unknown) => e instanceof LightboxError && e.code === "invalid_params" && /n is -1/.test(e.message));
  await lb.prewarm(pool, 1);
  const running = async () => (await lb.listSandboxes()).filter((i) => i.status === "running");
  const warm = await running();
  assert.equal(warm.length, 1, `the pool: ${JSON.stringify(warm)}`);
  assert.equal(warm[0]!.pooled, true, "the pool's sandbox is listed as pooled");
  const sb = await lb.launchSandbox({ ...pool, name: "warm", env: { TAKEN: "yes" } });
  assert.equal((await sb.shell("hostname; echo $TAKEN")).stdout, "warm\nyes\n");
  const [info] = (await running()).filter((i) => i.name === "warm");
  assert.ok(warm[0]!.pid! > 0 && info?.pid === warm[0]!.pid, `sandbox warm runs init ${info?.pid}, the pool's was ${warm[0]!.pid}`);
  assert.equal(info?.pooled, false, "a taken sandbox is no longer pooled");
  // The pool refills in the background; 0 empties it.
  for (const deadline = Date.now() + 30000; (await running()).filter((i) => i.pid).length < 2; ) {
    if (Date.now() > deadline) throw new Error(`the pool did not refill: ${JSON.stringify(await running())}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await lb.prewarm(pool, 0);
  assert.deepEqual((await lb.listSandboxes()).map((i) => i.name), ["warm"]);
  await sb.destroy();
  assert.deepEqual(await lb.listSandboxes(), []);
});

// apiProcessesOf lists the pids of `lightbox api` children of pid.
function apiProcessesOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const argv = fs.readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0");
      if (ppid === pid && argv.includes("api")) out.push(Number(d));
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

test("wait resolves to the main command's exit status and logs to its output, also followed as the command writes it", async () => {
  const sb = await lb.launchSandbox({ ...none, name: "waited", command: ["sh", "-c", "echo out; echo err >&2; exit 3"] });
  assert.equal(await sb.wait(), 3);
  assert.deepEqual(await sb.logs(), { stdout: "out\n", stderr: "err\n", stdoutDropped: 0, stderrDropped: 0 });
  const bytes = await sb.logs({ encoding: "buffer" });
  assert.ok(Buffer.isBuffer(bytes.stdout) && bytes.stdout.equals(Buffer.from("out\n")), `logs as bytes: ${JSON.stringify(bytes)}`);
  const info = await lb.inspectSandbox("waited");
  assert.equal(info.status, "exited");
  assert.equal(info.exitCode, 3);
  assert.ok(info.createdAt instanceof Date);
  await assert.rejects(lb.inspectSandbox("nosuch"), (e: unknown) => e instanceof LightboxError && e.code === "not_found");
  await sb.destroy();
  await lb.runInSandbox({ ...none, name: "no-main" }, async (idle) => {
    await assert.rejects(idle.wait(), (e: unknown) => e instanceof LightboxError && e.code === "no_command");
  });

  // Causality, no timing: the command waits on a fifo that this test
  // writes only once onStdout had its first line.
  const dir = path.join(store.dir, "follow");
  fs.mkdirSync(dir);
  execFileSync("mkfifo", ["-m", "666", path.join(dir, "go")]);
  const followed = await lb.launchSandbox({
    ...none, name: "followed", mounts: { "/h": dir },
    command: ["sh", "-c", "echo first; read x < /h/go; echo second; echo late >&2"],
  });
  let out = "";
  let err = "";
  let first!: () => void;
  const sawFirst = new Promise<void>((resolve) => (first = resolve));
  const following = followed.logs({
    follow: true,
    onStdout: (chunk) => {
      out += chunk;
      if (out === "first\n") first();
    },
    onStderr: (chunk) => (err += chunk),
  });
  await Promise.race([sawFirst, following.then((r) => assert.fail(`resolved before its first line was streamed: ${JSON.stringify(r)}`))]);
  await fs.promises.writeFile(path.join(dir, "go"), "go\n");
  assert.deepEqual(await following, { stdout: "first\nsecond\n", stderr: "late\n", stdoutDropped: 0, stderrDropped: 0 });
  assert.equal(out, "first\nsecond\n");
  assert.equal(err, "late\n");
  assert.equal(await followed.wait(), 0);
  await followed.destroy();
});

test("an aborted wait or follow leaves the sandbox running; removeSandbox removes a detached one by name, as rm [-f]; gc", async () => {
  lbCLI(store.root, "run", "-d", "--network", "none", "--name", "detached-rm", "busybox", "sh", "-c", "echo up; exec sleep 100000");
  const sb = await lb.attachSandbox("detached-rm");
  const ac = new AbortController();
  const waiting = sb.wait({ signal: ac.signal });
  ac.abort(new Error("enough"));
  await assert.rejects(waiting, (e: unknown) => e instanceof LightboxError && e.code === "canceled" && (e.cause as Error)?.message === "enough");
  await assert.rejects(sb.wait({ timeoutMs: 200 }), (e: unknown) => e instanceof LightboxError && e.code === "canceled" && /timeoutMs \(200\) passed/.test(e.message));

  const follow = new AbortController();
  let out = "";
  const following = sb.logs({
    follow: true,
    signal: follow.signal,
    onStdout: (chunk) => {
      out += chunk;
      if (out === "up\n") follow.abort(new Error("seen it"));
    },
  });
  await assert.rejects(following, (e: unknown) => e instanceof LightboxError && e.code === "canceled" && (e.cause as Error)?.message === "seen it");
  assert.equal((await lb.inspectSandbox("detached-rm")).status, "running");

  await assert.rejects(lb.removeSandbox("detached-rm"), (e: unknown) => e instanceof LightboxError && e.code === "in_use");
  assert.ok(store.sandboxes().includes("detached-rm:running"), "a refused removeSandbox leaves it running");
  await lb.removeSandbox("detached-rm", { force: true, timeoutMs: 0 });
  assert.ok(!store.sandboxes().some((s) => s.startsWith("detached-rm:")), `removed: ${store.sandboxes()}`);
  await assert.rejects(lb.removeSandbox("detached-rm"), (e: unknown) => e instanceof LightboxError && e.code === "not_found");

  // Another lightbox build's init, unused for a month: gc removes it and says so.
  const staleInit = ".init-" + "d4".repeat(16);
  const stalePath = path.join(store.root, "sandboxes", staleInit);
  fs.writeFileSync(stalePath, "\x7fELF another build's init", { mode: 0o555 });
  const monthAgo = new Date(Date.now() - 30 * 24 * 3600 * 1000);
  fs.utimesSync(stalePath, monthAgo, monthAgo);
  const collected = await lb.gc();
  assert.ok(Array.isArray(collected.sandboxes) && Array.isArray(collected.disks) && Array.isArray(collected.layers), JSON.stringify(collected));
  assert.deepEqual(collected.inits, [staleInit], JSON.stringify(collected));
  assert.ok(!fs.existsSync(stalePath), "gc removed the other build's init");
});

test("buildSnapshot builds from a Dockerfile (relative context), reporting steps and RUN output; inspectSnapshot and exportSnapshot round-trip through importSnapshot", async () => {
  const ctx = path.join(store.dir, "build-ctx");
  fs.mkdirSync(ctx);
  fs.writeFileSync(path.join(ctx, "hello"), "hello\n");
  fs.writeFileSync(path.join(ctx, "Dockerfile"), 'FROM busybox\nARG WHO\nCOPY hello /hello\nRUN echo out; echo err >&2; echo "$WHO" >> /hello\nCMD ["cat", "/hello"]\n');
  const steps: string[] = [];
  const output: string[] = [];
  const built = await lb.buildSnapshot({
    name: "ts-built", context: path.relative(process.cwd(), ctx), network: "none", buildArgs: { WHO: "node" },
    onStep: (s) => steps.push(`${s.done ? "done" : "start"} ${s.step}/${s.total} ${s.instruction}`),
    onOutput: (chunk, stream) => output.push(`${stream}:${chunk}`),
  });
  assert.equal(built.name, "ts-built");
  assert.deepEqual(built.config.cmd, ["cat", "/hello"]);
  const run = 'RUN echo out; echo err >&2; echo "$WHO" >> /hello';
  assert.deepEqual(steps.filter((s) => s.includes("RUN")), [`start 4/5 ${run}`, `done 4/5 ${run}`]);
  assert.equal(steps.length, 10, `steps: ${steps}`);
  assert.deepEqual(output.filter((o) => o.startsWith("stdout:")).join(""), "stdout:out\n");
  assert.deepEqual(output.filter((o) => o.startsWith("stderr:")).join(""), "stderr:err\n");
  const inspected = await lb.inspectSnapshot("ts-built");
  assert.equal(inspected.digest, built.digest);
  await assert.rejects(lb.inspectSnapshot("ts-nosuch"), (e: unknown) => e instanceof LightboxError && e.code === "not_found");

  const archive = path.join(store.dir, "built.tar");
  await lb.exportSnapshot("ts-built", path.relative(process.cwd(), archive), { format: "oci-archive", tag: "v1" });
  const back = await lb.importSnapshot("ts-back", `${archive}:v1`);
  assert.equal(back.digest, built.digest, "the exported image comes back as it was");
  await lb.runInSandbox({ ...none, snapshot: "ts-back" }, async (sb) => {
    assert.equal((await sb.shell("cat /hello")).stdout, "hello\nnode\n");
  });

  const failed = await lb.buildSnapshot({ name: "ts-failed", context: ctx, network: "none", recipe: "FROM busybox\nRUN echo why; exit 5\n" }).then(
    () => assert.fail("a failing RUN resolved"),
    (e: unknown) => e,
  );
  assert.ok(failed instanceof ExitError, `${failed}`);
  assert.equal(failed.code, "exit");
  assert.equal(failed.exitCode, 5);
  assert.equal(failed.stdout, "why\n");
  assert.match(failed.message, /line 2: RUN echo why; exit 5: command exited with status 5/);
  await assert.rejects(lb.inspectSnapshot("ts-failed"), (e: unknown) => e instanceof LightboxError && e.code === "not_found");
  for (const n of ["ts-built", "ts-back"]) await lb.removeSnapshot(n);
});

test("aborting buildSnapshot's signal stops the build mid-RUN: canceled, no snapshot, no sandbox", async () => {
  const ctx = path.join(store.dir, "build-abort");
  fs.mkdirSync(ctx);
  fs.writeFileSync(path.join(ctx, "Dockerfile"), "FROM busybox\nRUN echo started; while :; do sleep 1; done\n");
  const ac = new AbortController();
  const reason = new Error("the pipeline was stopped");
  // timeoutMs only bounds the test should the abort not reach the build.
  const err = await lb.buildSnapshot({
    name: "ts-aborted", context: ctx, network: "none", signal: ac.signal, timeoutMs: 60000,
    onOutput: (chunk) => {
      if (chunk.includes("started")) ac.abort(reason);
    },
  }).then(
    () => assert.fail("an aborted build resolved"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof LightboxError && !(err instanceof ExitError), `${err}`);
  assert.equal(err.code, "canceled");
  assert.match(err.message, /build ts-aborted: stopped as the client cancelled the request/);
  assert.equal(err.cause, reason);
  await assert.rejects(lb.inspectSnapshot("ts-aborted"), (e: unknown) => e instanceof LightboxError && e.code === "not_found");
  assert.equal(lbCLI(store.root, "ps", "-aq").trim(), "", "no sandbox left, running or exited");
  assert.deepEqual((await lb.listSnapshots()).map((s) => s.name), ["busybox"]);
});

test("spawn runs an interactive shell: each line written once the previous one's output came, end() ends it with its status", async () => {
  await lb.runInSandbox({ ...none, name: "spawned" }, async (sb) => {
    let out = "";
    let wake: () => void = () => {};
    const outputHas = (s: string) =>
      new Promise<void>((resolve) => {
        wake = () => { if (out.includes(s)) resolve(); };
        wake();
      });
    const sh = sb.spawn("sh", [], { onStdout: (chunk) => { out += chunk; wake(); } });
    for (const word of ["one", "two"]) {
      await sh.write(`echo ${word}\n`);
      await outputHas(`${word}\n`);
    }
    await sh.write(new Uint8Array([101, 99, 104, 111, 32, 51, 10])); // "echo 3\n" as bytes
    await outputHas("3\n");
    await sh.end("exit 6\n");
    const e = await sh.result.catch((x: unknown) => x);
    assert.ok(e instanceof ExitError && e.exitCode === 6, `exit 6: ${e}`);
    assert.equal(e.stdout, "one\ntwo\n3\n");
    await assert.rejects(sh.write("late\n"), (x: unknown) => x instanceof LightboxError && x.code === "not_found");
    // kill signals it.
    const cat = sb.spawn("cat");
    await cat.kill("SIGTERM");
    const k = await cat.result.catch((x: unknown) => x);
    assert.ok(k instanceof ExitError && k.signal === 15, `cat killed by SIGTERM: ${k}`);
  });
});

test("spawn with tty runs on a terminal of ttySize; resize changes it", async () => {
  await lb.runInSandbox({ ...none, name: "spawned-tty" }, async (sb) => {
    let out = "";
    let wake: () => void = () => {};
    const outputHas = (s: string) =>
      new Promise<void>((resolve) => {
        wake = () => { if (out.includes(s)) resolve(); };
        wake();
      });
    const p = sb.spawn("sh", ["-c", "tty; stty size; echo ready; read x; stty size; echo err >&2; exit 2"], {
      tty: true, ttySize: [20, 70], onStdout: (chunk) => { out += chunk; wake(); },
    });
    await outputHas("ready\r\n");
    assert.match(out, /^\/dev\/pts\/\d+\r\n20 70\r\n/);
    await p.resize(40, 120);
    await p.write("go\n");
    const e = await p.result.catch((x: unknown) => x);
    assert.ok(e instanceof ExitError && e.exitCode === 2, `exit 2: ${e}`);
    assert.ok(e.stdout.endsWith("go\r\n40 120\r\nerr\r\n"), `stdout ${JSON.stringify(e.stdout)}`);
    assert.equal(e.stderr, "");
  });
});
