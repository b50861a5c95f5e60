// Killing the Node.js process that uses the client leaves nothing that
// `lightbox gc` does not clean: with SIGKILL to Node.js alone its `lightbox
// api` child sees its stdin close and destroys the sandboxes itself; with
// SIGKILL to both, each sandbox's init sees its liveness pipe close and
// tears the sandbox down, and gc removes what is left on disk.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { lb, mountsUnder, newStore, until } from "../test-helpers/fixtures.js";

const store = newStore("kill");
store.importSnapshot("busybox");
after(() => store.cleanup());

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), "../test-helpers/kill-child.js");

// startChild runs kill-child.js and resolves to its pid and its lightbox
// api child's pid once it printed "ready".
async function startChild(): Promise<{ node: number; api: number }> {
  const p = spawn(process.execPath, [child], {
    env: { ...process.env, LIGHTBOX_ROOT: store.root },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  await new Promise<void>((resolve, reject) => {
    p.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("ready\n")) resolve();
    });
    p.on("exit", (code) => reject(new Error(`kill-child exited ${code} before it was ready: ${out}`)));
  });
  const api = childrenOf(p.pid!);
  assert.equal(api.length, 1, `children of the Node.js process: ${api}`);
  return { node: p.pid!, api: api[0]! };
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, "utf8");
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid) out.push(Number(d));
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

// assertClean runs lightbox gc and checks the store holds no sandbox, no
// sandbox state and no mount.
function assertClean(): void {
  lb(store.root, "gc");
  assert.deepEqual(store.sandboxes(), []);
  const dir = path.join(store.root, "sandboxes");
  assert.deepEqual(fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => !n.startsWith(".")) : [], []);
  assert.deepEqual(mountsUnder(store.root), []);
}

test("SIGKILL to Node.js: its lightbox api destroys what it launched", async () => {
  const { node, api } = await startChild();
  assert.deepEqual(store.sandboxes(), ["kill-launched:running", "kill-running:running"]);
  process.kill(node, "SIGKILL");
  await until("lightbox api to exit after its stdin closed", 60000, () => !alive(api));
  // Before gc: the server destroyed both itself.
  assert.deepEqual(store.sandboxes(), []);
  assertClean();
});

test("SIGKILL to Node.js and lightbox api: the sandboxes die, and gc cleans up", async () => {
  const { node, api } = await startChild();
  assert.deepEqual(store.sandboxes(), ["kill-launched:running", "kill-running:running"]);
  process.kill(api, "SIGKILL");
  process.kill(node, "SIGKILL");
  await until("the sandboxes' inits to end", 60000, () =>
    store.sandboxes().every((s) => !s.endsWith(":running")),
  );
  assertClean();
});
