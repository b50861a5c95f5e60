// Fixtures of the client's tests: a store per test file with snapshots made
// from Debian's static busybox (busybox-static, /bin/busybox), driven
// through the lightbox CLI. LIGHTBOX_BIN names the binary (make test sets
// it), else `lightbox` on PATH.

import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export const bin = process.env.LIGHTBOX_BIN ?? "lightbox";
export const busybox = "/bin/busybox";

/** lb runs the CLI against root and returns its stdout. */
export function lb(root: string, ...args: string[]): string {
  return execFileSync(bin, ["--root", root, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** A file of a rootfs: its content and mode. */
export interface FileSpec {
  body: string;
  mode?: number;
}

/** busyboxRootfs makes a root filesystem in dir: busybox with a link per
 * applet in /bin, /etc/passwd and /etc/group with root, /tmp, /root, and
 * the extra files given (paths relative to the root). */
export function busyboxRootfs(dir: string, files: Record<string, FileSpec> = {}): string {
  for (const d of ["bin", "usr/bin", "etc", "root", "tmp", "dev", "proc", "sys", "run", "var/tmp"]) {
    fs.mkdirSync(path.join(dir, d), { recursive: true });
  }
  fs.chmodSync(path.join(dir, "tmp"), 0o1777);
  fs.chmodSync(path.join(dir, "root"), 0o700);
  fs.copyFileSync(busybox, path.join(dir, "bin/busybox"));
  fs.chmodSync(path.join(dir, "bin/busybox"), 0o755);
  for (const applet of execFileSync(busybox, ["--list"], { encoding: "utf8" }).split(/\s+/)) {
    if (!applet || applet === "busybox" || applet.includes("/")) continue;
    fs.symlinkSync("busybox", path.join(dir, "bin", applet));
  }
  fs.writeFileSync(path.join(dir, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n");
  fs.writeFileSync(path.join(dir, "etc/group"), "root:x:0:\nnogroup:x:65534:\n");
  for (const [p, f] of Object.entries(files)) {
    const full = path.join(dir, p);
    fs.mkdirSync(path.dirname(full), { recursive: true });
    fs.writeFileSync(full, f.body, { mode: f.mode ?? 0o644 });
    fs.chmodSync(full, f.mode ?? 0o644);
  }
  return dir;
}

/** A test's store: a temporary directory, its store root, and cleanup. */
export interface Store {
  dir: string;
  root: string;
  importSnapshot(name: string, files?: Record<string, FileSpec>): void;
  /** sandboxes lists the store's sandboxes as NAME:STATUS. */
  sandboxes(): string[];
  /** cleanup destroys what is left in the store and removes it. */
  cleanup(): void;
}

export function newStore(tag: string): Store {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `lightbox-ts-${tag}-`));
  const root = path.join(dir, "store");
  const store: Store = {
    dir,
    root,
    importSnapshot(name, files = {}) {
      const rootfs = busyboxRootfs(path.join(dir, `rootfs-${name}`), files);
      lb(root, "snapshot", "import", name, rootfs);
      fs.rmSync(rootfs, { recursive: true, force: true });
    },
    sandboxes() {
      const list = JSON.parse(lb(root, "ps", "--format", "json")) as Array<{ name: string; status: string }>;
      return list.map((s) => `${s.name}:${s.status}`).sort();
    },
    cleanup() {
      for (const s of store.sandboxes()) lb(root, "rm", "-f", s.split(":")[0]);
      const vols = JSON.parse(lb(root, "volume", "ls", "--format", "json")) as Array<{ name: string }>;
      if (vols.length > 0) lb(root, "volume", "rm", ...vols.map((v) => v.name));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return store;
}

/** mountsUnder lists the host's mount points under dir. */
export function mountsUnder(dir: string): string[] {
  return fs
    .readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4])
    .filter((m) => m !== undefined && m.startsWith(dir));
}

/** until polls cond every 50 ms until it holds or timeoutMs passes. */
export async function until(what: string, timeoutMs: number, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// The stand-ins for the snapshots the docs' snippets name. Each says what
// it stands in for; none needs the network.

/** node-ci: busybox has no Node.js; this `npm` checks the project the way
 * `npm ci` would (package.json and its lock), records the run in the npm
 * cache (/root/.npm) and runs the project's test script. */
export const npmStandIn = `#!/bin/sh
# Stand-in for npm in the node-ci test snapshot (busybox has no Node.js):
# "ci" checks package.json and package-lock.json, makes node_modules and
# records the run in the cache; "test" runs the project's ./test.sh.
set -e
cache=/root/.npm
case "$1" in
ci)
	[ -f package.json ] || { echo "npm ci: no package.json in $(pwd)" >&2; exit 1; }
	[ -f package-lock.json ] || { echo "npm ci: no package-lock.json in $(pwd)" >&2; exit 1; }
	mkdir -p node_modules "$cache/_cacache"
	echo "$(hostname)" >> "$cache/_cacache/ci-runs"
	echo "added 0 packages (npm stand-in)"
	;;
test)
	[ -d node_modules ] || { echo "npm test: run npm ci first" >&2; exit 1; }
	sh ./test.sh
	;;
*)
	echo "npm stand-in: $1: not supported" >&2
	exit 1
	;;
esac
`;

/** rust-toolchain: a stand-in for Debian's cargo (see snippets.test.ts for
 * why): "build --release" reads the package's name and version from
 * Cargo.toml, checks src/main.rs exists, and writes
 * target/release/NAME, a script that prints "NAME VERSION" for
 * --version. */
export const cargoStandIn = `#!/bin/sh
# Stand-in for Debian's cargo in the rust-toolchain test snapshot.
set -e
[ "$1" = build ] || { echo "cargo stand-in: $1: not supported" >&2; exit 101; }
[ -f Cargo.toml ] || { echo "error: could not find Cargo.toml in $(pwd)" >&2; exit 101; }
[ -f src/main.rs ] || { echo "error: no src/main.rs" >&2; exit 101; }
name=$(sed -n 's/^name *= *"\\(.*\\)"/\\1/p' Cargo.toml | head -n 1)
version=$(sed -n 's/^version *= *"\\(.*\\)"/\\1/p' Cargo.toml | head -n 1)
profile=debug
[ "$2" = --release ] && profile=release
mkdir -p "target/$profile"
printf '#!/bin/sh\\n[ "$1" = --version ] && echo "%s %s" && exit 0\\necho "hello from %s"\\n' "$name" "$version" "$name" > "target/$profile/$name"
chmod 755 "target/$profile/$name"
echo "    Finished $profile target (cargo stand-in)"
`;

/** py-ml: a stand-in for Python with transformers: the model hub is not
 * reachable from these tests, so from_pretrained('NAME') writes a fake
 * model of NAME into the Hugging Face cache as the real one lays it out. */
export const pythonStandIn = `#!/bin/sh
# Stand-in for python with transformers in the py-ml test snapshot: the
# model hub is not reachable here; from_pretrained('NAME') writes a fake
# model into the cache where transformers would put the real one.
set -e
[ "$1" = -c ] || { echo "python stand-in: only -c CODE" >&2; exit 2; }
model=$(echo "$2" | sed -n "s/.*from_pretrained('\\([^']*\\)').*/\\1/p")
[ -n "$model" ] || { echo "python stand-in: no from_pretrained('NAME') in: $2" >&2; exit 1; }
snap=/root/.cache/huggingface/hub/models--$model/snapshots/stand-in
mkdir -p "$snap"
echo '{"model_type": "bert", "stand_in": true}' > "$snap/config.json"
head -c 65536 /dev/zero > "$snap/model.safetensors"
`;
