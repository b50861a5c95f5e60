// The Node.js process kill.test.ts kills: it launches two sandboxes (one
// left as it is, one inside a runInSandbox whose fn never returns), then
// prints "ready" and waits to be killed. LIGHTBOX_ROOT names the store.
import { launchSandbox, runInSandbox } from "@beamhop/lightbox";

const opts = { snapshot: "busybox", network: "none" as const };
await launchSandbox({ ...opts, name: "kill-launched" });
let started!: () => void;
const running = new Promise<void>((r) => (started = r));
void runInSandbox({ ...opts, name: "kill-running" }, async (sb) => {
  const never = sb.shell("sleep 3600");
  started();
  await never;
});
await running;
// The shell's request is in flight: the server holds it while it waits.
process.stdout.write("ready\n");
setInterval(() => {}, 1 << 30); // wait to be killed
