// The package as users get it: dist/ (committed, so that installing the
// directory works from a clean clone) is what src compiles to; `npm pack`
// makes a tarball that a fresh project installs and runs the docs'
// snippets from, type-checked against the shipped declarations; and
// `npm install <this directory>` works too. npm installs nothing from the
// registry here: the package has no dependencies.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const pkgDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const tsc = path.join(pkgDir, "node_modules/typescript/bin/tsc");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "lightbox-ts-package-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

// The environment of the commands run: without NODE_TEST_CONTEXT, which
// would make a nested `node --test` report to this runner instead of
// printing its results.
const env = { ...process.env };
delete env.NODE_TEST_CONTEXT;

function run(cmd: string, args: string[], cwd: string): string {
  try {
    return execFileSync(cmd, args, { cwd, env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (e: any) {
    throw new Error(`${cmd} ${args.join(" ")} (in ${cwd}): ${e.message}\n${e.stdout ?? ""}\n${e.stderr ?? ""}`);
  }
}

function freshProject(name: string): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name, version: "1.0.0", private: true, type: "module" }) + "\n");
  return dir;
}

const npmFlags = ["--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"];

test("dist/ is what src/ compiles to", () => {
  const out = path.join(tmp, "dist-check");
  run(process.execPath, [tsc, "-p", "tsconfig.json", "--outDir", out], pkgDir);
  for (const f of ["index.js", "index.d.ts"]) {
    assert.equal(
      fs.readFileSync(path.join(pkgDir, "dist", f), "utf8"),
      fs.readFileSync(path.join(out, f), "utf8"),
      `dist/${f} is stale: run npm run build in clients/typescript`,
    );
  }
});

test("npm pack makes a tarball a fresh project installs; the snippets run from it, type-checked", () => {
  const packed = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", tmp, ...npmFlags], pkgDir));
  const files = (packed[0].files as Array<{ path: string }>).map((f) => f.path).sort();
  assert.deepEqual(files, ["README.md", "dist/index.d.ts", "dist/index.js", "package.json"]);
  const tarball = path.join(tmp, packed[0].filename);

  const proj = freshProject("fresh-tarball");
  run("npm", ["install", ...npmFlags, tarball], proj);
  const installed = JSON.parse(fs.readFileSync(path.join(proj, "node_modules/@beamhop/lightbox/package.json"), "utf8"));
  assert.equal(installed.name, "@beamhop/lightbox");
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(proj, "package.json"), "utf8")).dependencies, {
    "@beamhop/lightbox": `file:${path.relative(proj, tarball)}`,
  });

  // The snippets' test file, as TypeScript, type-checks against the
  // installed declarations...
  for (const d of ["test", "test-helpers"]) fs.mkdirSync(path.join(proj, d));
  fs.copyFileSync(path.join(pkgDir, "test/snippets.test.ts"), path.join(proj, "test/snippets.test.ts"));
  fs.copyFileSync(path.join(pkgDir, "test-helpers/fixtures.ts"), path.join(proj, "test-helpers/fixtures.ts"));
  fs.writeFileSync(
    path.join(proj, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, outDir: "out",
        types: ["node"], typeRoots: [path.join(pkgDir, "node_modules/@types")], skipLibCheck: false,
      },
      include: ["test/*.ts", "test-helpers/*.ts"],
    }),
  );
  run(process.execPath, [tsc, "-p", "tsconfig.json"], proj);
  // ...and, compiled, runs from the fresh project against the installed
  // package.
  const out = run(process.execPath, ["--test", "out/test/snippets.test.js"], proj);
  assert.match(out, /^# fail 0$/m, out);
  assert.match(out, /^# pass 4$/m, out);
});

test("npm install of the package directory works in a fresh project", () => {
  const proj = freshProject("fresh-dir");
  run("npm", ["install", ...npmFlags, pkgDir], proj);
  fs.writeFileSync(
    path.join(proj, "check.mjs"),
    `import * as lightbox from "@beamhop/lightbox";
const want = ["runInSandbox", "launchSandbox", "attachSandbox", "listSandboxes", "listSnapshots", "ensureVolume", "listVolumes", "removeVolume", "Client", "ExitError", "LightboxError"];
const missing = want.filter((n) => typeof lightbox[n] !== "function");
if (missing.length) throw new Error("missing exports: " + missing);
const lb = new lightbox.Client({ root: process.argv[2] });
const v = await lb.ensureVolume("from-dir-install", { labels: { a: "b" } });
const list = await lb.listVolumes();
await lb.removeVolume("from-dir-install");
await lb.close();
console.log(JSON.stringify({ created: v.createdAt instanceof Date, names: list.map((x) => x.name), labels: v.labels }));
`,
  );
  const out = run(process.execPath, ["check.mjs", path.join(tmp, "dir-store")], proj);
  assert.deepEqual(JSON.parse(out), { created: true, names: ["from-dir-install"], labels: { a: "b" } });
});
