// The TypeScript snippets of lightbox's documentation (issue 18), verbatim
// between the two harness parts. They run against a store of this file's
// own (LIGHTBOX_ROOT) with the default private network, in a working
// directory holding ./my-project and ./my-rust-project.
//
// The snapshots they name are stand-ins made from Debian's static busybox
// (test-helpers/fixtures.ts has their scripts):
//  - node-ci: no Node.js (the Dockerfile build of a real one is not part of
//    this repository's tests yet); `npm` is a shell script that checks the
//    project as `npm ci` would, records each run in the npm-cache volume
//    and runs the project's test script.
//  - rust-toolchain: not Debian's cargo. The Debian base plus
//    `apt-get install cargo` inside a sandbox downloads rustc, cargo,
//    libstd-rust-dev, LLVM 14 and gcc 12: about 120 MB of packages, some
//    530 MB unpacked (sizes from apt-cache show on Debian 12), in each of
//    make test's two passes — too heavy for make test. And its output
//    would not run on minimal-runtime as the snippet has it: Debian's Rust
//    links glibc dynamically, and minimal-runtime is busybox alone. `cargo`
//    is a script that reads Cargo.toml and writes target/release/myapp,
//    itself a script answering --version.
//  - minimal-runtime: busybox, nothing else (real, not a stand-in).
//  - py-ml: no Python; the model hub is not reachable from these tests, so
//    `python` is a script that writes a fake bert-base-uncased into the
//    Hugging Face cache volume where transformers would put the real one.

// ---- harness, before ----
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { attachSandbox, listSandboxes, defaultLightbox } from "@beamhop/lightbox";
import { newStore, npmStandIn, cargoStandIn, pythonStandIn } from "../test-helpers/fixtures.js";

const store = newStore("snippets");
store.importSnapshot("node-ci", { "usr/bin/npm": { body: npmStandIn, mode: 0o755 } });
store.importSnapshot("rust-toolchain", { "usr/bin/cargo": { body: cargoStandIn, mode: 0o755 } });
store.importSnapshot("minimal-runtime");
store.importSnapshot("py-ml", { "usr/bin/python": { body: pythonStandIn, mode: 0o755 } });
process.env.LIGHTBOX_ROOT = store.root;
const project = path.join(store.dir, "my-project");
fs.mkdirSync(project);
fs.writeFileSync(path.join(project, "package.json"), '{"name": "my-project", "scripts": {"test": "sh ./test.sh"}}\n');
fs.writeFileSync(path.join(project, "package-lock.json"), '{"lockfileVersion": 3}\n');
fs.writeFileSync(path.join(project, "test.sh"), 'echo "tests of $(hostname) pass"\n');
const rustProject = path.join(store.dir, "my-rust-project");
fs.mkdirSync(path.join(rustProject, "src"), { recursive: true });
fs.writeFileSync(path.join(rustProject, "Cargo.toml"), '[package]\nname = "myapp"\nversion = "0.1.0"\nedition = "2021"\n');
fs.writeFileSync(path.join(rustProject, "src/main.rs"), 'fn main() { println!("myapp {}", env!("CARGO_PKG_VERSION")); }\n');
process.chdir(store.dir);
function isOlderThan30Days(d: Date): boolean {
  return Date.now() - d.getTime() > 30 * 24 * 3600 * 1000;
}
after(async () => {
  await defaultLightbox().close();
  store.cleanup();
});

// ---- the snippets, verbatim ----
import { runInSandbox, launchSandbox, ensureVolume, listVolumes, removeVolume } from "@beamhop/lightbox";

async function runTest(name: string) {
  return runInSandbox(
    { snapshot: "node-ci", name: `test-${name}`,
      mounts: { "/work": "./my-project", "/root/.npm": { volume: "npm-cache" } },
      workdir: "/work" },
    (sb) => sb.shell("npm ci && npm test"),
  );
}
await Promise.all(["unit", "integration", "e2e"].map(runTest));

await runInSandbox({ snapshot: "rust-toolchain", name: "build",
    mounts: { "/src": "./my-rust-project", "/artifacts": { volume: "rust-artifacts" } }, workdir: "/src" },
  (sb) => sb.shell("cargo build --release && cp target/release/myapp /artifacts/"));
await runInSandbox({ snapshot: "minimal-runtime", name: "run", mounts: { "/app": { volume: "rust-artifacts" } } },
  (sb) => sb.exec("/app/myapp", ["--version"]));

await runInSandbox({ snapshot: "py-ml", name: "prime", mounts: { "/root/.cache/huggingface": { volume: "hf-cache" } } },
  (sb) => sb.shell("python -c \"from transformers import AutoModel; AutoModel.from_pretrained('bert-base-uncased')\""));
await Promise.all(Array.from({ length: 10 }, (_, i) => i).map(async (i) => {
  const sb = await launchSandbox({ snapshot: "py-ml", name: `worker-${i}`,
    mounts: { "/root/.cache/huggingface": { volume: "hf-cache" } } });
  await sb.detach();
}));

await ensureVolume("npm-cache", { quotaMib: 4096, labels: { team: "platform", purpose: "ci-cache", ttl: "30d" } });
const stale = (await listVolumes()).filter((v) => v.labels.ttl === "30d" && isOlderThan30Days(v.createdAt));
for (const v of stale) { await removeVolume(v.name); }

// ---- harness, after: what the snippets left ----
const workers = Array.from({ length: 10 }, (_, i) => `worker-${i}`);

test("the three npm runs shared the npm-cache volume, and no runTest sandbox is left", async () => {
  const out = await runInSandbox({ snapshot: "minimal-runtime", network: "none", mounts: { "/c": { volume: "npm-cache" } } },
    (sb) => sb.shell("sort /c/_cacache/ci-runs"));
  assert.equal(out.stdout, "test-e2e\ntest-integration\ntest-unit\n");
  const left = (await listSandboxes()).map((s) => s.name).filter((n) => !workers.includes(n));
  assert.deepEqual(left, []);
});

test("the artifact built in one snapshot runs in another", async () => {
  const r = await runInSandbox({ snapshot: "minimal-runtime", network: "none", mounts: { "/app": { volume: "rust-artifacts" } } },
    (sb) => sb.exec("/app/myapp", ["--version"]));
  assert.deepEqual(r, { exitCode: 0, stdout: "myapp 0.1.0\n", stderr: "" });
});

test("the ten detached workers run and see the primed model", async () => {
  assert.deepEqual(store.sandboxes(), workers.map((w) => `${w}:running`).sort());
  for (const w of workers) {
    const sb = await attachSandbox(w);
    const r = await sb.shell("cat /root/.cache/huggingface/hub/models--bert-base-uncased/snapshots/stand-in/config.json; hostname");
    assert.equal(r.stdout, `{"model_type": "bert", "stand_in": true}\n${w}\n`);
    await sb.destroy();
  }
  assert.deepEqual(store.sandboxes(), []);
});

test("ensureVolume left the existing npm-cache as it was, and no fresh volume was stale", async () => {
  const vols = await listVolumes();
  assert.deepEqual(vols.map((v) => v.name), ["hf-cache", "npm-cache", "rust-artifacts"]);
  const npm = vols.find((v) => v.name === "npm-cache")!;
  assert.ok(npm.createdAt instanceof Date && !isOlderThan30Days(npm.createdAt));
  assert.deepEqual(npm.labels, {}, "quota and labels apply only when a volume is created; runTest created it");
  assert.deepEqual(stale, []);
});
