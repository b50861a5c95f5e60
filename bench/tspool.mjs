// tspool.mjs: what an agent platform on the TypeScript client pays per
// sandbox, with and without a warm pool (sandbox.prewarm): launchSandbox
// + exec /bin/true + destroy through one `lightbox api` process, timed in
// Node.js around the client's promises.
//
//   node bench/tspool.mjs ROOT SNAPSHOT [N]
//
// ROOT is a store holding SNAPSHOT (busybox); LIGHTBOX_BIN the binary. N
// (default 30) timed rounds per mode, after 3 untimed ones:
//   cold      no pool: each launch starts a sandbox
//   warm      a pool of 1, refilled between rounds (untimed: prewarm(1)
//             answers once one is ready), as BenchmarkPoolTake does
//   b2b       a pool of 1, rounds back to back: a round finds the pool
//             refilled only if the refill (which waits for the taken
//             sandbox's first command, or 100 ms) beat it
//   b2b4      the same with a pool of 4
// It prints, per mode, the median and quartiles of each step and of the
// round, in ms.
import { Client } from "../clients/typescript/dist/index.js";

const [root, snapshot, nArg] = process.argv.slice(2);
if (!root || !snapshot) {
  console.error("usage: node bench/tspool.mjs ROOT SNAPSHOT [N]");
  process.exit(2);
}
const n = Number(nArg ?? 30);
const opts = { snapshot, network: "none" };
const lb = new Client({ root });

const q = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};
const fmt = (xs) => `${q(xs, 0.5).toFixed(2)} [${q(xs, 0.25).toFixed(2)}–${q(xs, 0.75).toFixed(2)}]`;

async function round() {
  const t0 = performance.now();
  const sb = await lb.launchSandbox(opts);
  const t1 = performance.now();
  await sb.exec("/bin/true");
  const t2 = performance.now();
  await sb.destroy();
  const t3 = performance.now();
  return { launch: t1 - t0, exec: t2 - t1, destroy: t3 - t2, round: t3 - t0 };
}

async function mode(name, before) {
  const rows = [];
  for (let i = 0; i < n + 3; i++) {
    if (before) await before();
    const r = await round();
    if (i >= 3) rows.push(r);
  }
  const col = (k) => rows.map((r) => r[k]);
  console.log(
    `${name.padEnd(5)} round ${fmt(col("round"))}  launch ${fmt(col("launch"))}  exec ${fmt(col("exec"))}  destroy ${fmt(col("destroy"))}  (ms, median [IQR], n=${rows.length})`,
  );
}

await mode("cold");
await mode("warm", () => lb.prewarm(opts, 1));
await lb.prewarm(opts, 1);
await mode("b2b");
await lb.prewarm(opts, 4);
await mode("b2b4");
await lb.prewarm(opts, 0);
await lb.close();
