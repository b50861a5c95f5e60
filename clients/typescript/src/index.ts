// @beamhop/lightbox: lightbox's API for Node.js.
//
// Every call goes to a `lightbox api` process (JSON-RPC 2.0 over its stdin
// and stdout, docs/api-protocol.md in the lightbox repository) that this
// module starts on first use: one per Client, and the module-level
// functions share one default Client, so one per Node.js process. There
// is no daemon: the server runs lightbox's Go API in-process, answers
// requests concurrently, and when this process exits or dies (its pipe
// closes) it destroys the sandboxes launched through it that were not
// detached.
//
// The binary is LIGHTBOX_BIN, else `lightbox` on PATH; the store is
// LIGHTBOX_ROOT, else lightbox's default.

import { spawn, type ChildProcess } from "node:child_process";
import { resolve as resolvePath } from "node:path";
import { createInterface } from "node:readline";
import { StringDecoder } from "node:string_decoder";

/** What a mount puts at a path inside the sandbox: a host path (a string, or
 * `{ source }`; relative paths are taken from this process's working
 * directory) or a named volume, created on first use. A new volume starts
 * with what the snapshot has at the mount's path (copied once, by the
 * first sandbox that mounts it, read-only too), unless `noCopy` keeps it empty.
 * `overlay` makes a host directory copy-on-write (podman's `:O`): the
 * sandbox sees and changes it, its changes stay in the sandbox and go with
 * it, and the host's directory stays as it was (not with `readOnly`). */
export type MountSpec =
  | string
  | { source: string; readOnly?: boolean; overlay?: boolean }
  | { volume: string; readOnly?: boolean; noCopy?: boolean };

/** Options of launchSandbox and runInSandbox. Omitted fields take
 * lightbox's defaults. */
export interface SandboxOptions {
  /** The snapshot the sandbox's root is made from. */
  snapshot: string;
  /** The sandbox's name (and hostname); generated when omitted. */
  name?: string;
  /** Absolute paths inside the sandbox to what is mounted there. */
  mounts?: Record<string, MountSpec>;
  /** Working directory of commands; the snapshot's when omitted. */
  workdir?: string;
  /** Environment on top of the snapshot's: `{ K: "v" }` or `["K=v"]`. */
  env?: Record<string, string> | string[];
  /** "user[:group]" commands run as; the snapshot's when omitted. */
  user?: string;
  /** "private" (the default: own network with outbound access), "none"
   * (loopback only) or "host". */
  network?: "private" | "none" | "host";
  /** Ports published with the private network: "[HOSTIP:]HOSTPORT:PORT[/tcp|udp]". */
  ports?: string[];
  /** An optional main process; the sandbox lives as long as it does. */
  command?: string[];
  /** The sandbox's own init destroys it after this many milliseconds. */
  timeoutMs?: number;
  /** Caps the sandbox's writable layer. */
  diskMib?: number;
  /** Lets processes inside create user namespaces (refused by default). */
  allowUserNamespaces?: boolean;
  /** What stop and destroy send the main command first ("SIGINT", "15");
   * the snapshot's STOPSIGNAL, else SIGTERM, when omitted. */
  stopSignal?: string;
  /** Limits on what the sandbox uses; lightbox's defaults when omitted. A
   * limit the host cannot enforce fails the launch, never is ignored;
   * listSandboxes' `limits` says how each holds. */
  resources?: Resources;
}

/** Options of prewarm: the options of SandboxOptions that pooled sandboxes
 * are launched with. A launchSandbox (or runInSandbox) whose snapshot,
 * network, resources, diskMib, allowUserNamespaces and stopSignal are the
 * same takes a pooled sandbox; its name, mounts, env, workdir and user
 * are applied as it is taken. */
export type PrewarmOptions = Pick<SandboxOptions, "snapshot" | "network" | "diskMib" | "allowUserNamespaces" | "stopSignal" | "resources">;

/** A sandbox's limits (lightbox.Resources); each omitted or 0 takes
 * lightbox's default: no memory or CPU limit, 4096 processes, a 64 MiB
 * /dev/shm, 16 MiB of logs per stream. */
export interface Resources {
  /** Memory, /dev/shm included; a command that runs out is OOM-killed. */
  memoryMib?: number;
  /** Memory plus swap, at least memoryMib; -1: unlimited swap. Needs memoryMib. */
  memorySwapMib?: number;
  /** CPU time in cores (1.5: one and a half). */
  cpus?: number;
  /** Processes and threads; -1: no limit. */
  pidsLimit?: number;
  /** The size of /dev/shm. */
  shmMib?: number;
  /** What a main command's logs keep on disk per stream; -1: no cap. */
  logMib?: number;
}

/** Per-command options of shell and exec. T is what the output callbacks
 * get: strings, or Buffers with `encoding: "buffer"`. */
export interface ExecOptions<T extends string | Buffer = string | Buffer> {
  /** Added to the sandbox's environment: `{ K: "v" }` or `["K=v"]`. */
  env?: Record<string, string> | string[];
  /** Working directory; the sandbox's when omitted. */
  workdir?: string;
  /** "user[:group]"; the sandbox's when omitted. */
  user?: string;
  /** Standard input; /dev/null when omitted. */
  stdin?: string | Uint8Array;
  /** "buffer": the result's stdout and stderr are Buffers holding the
   * bytes as written; "utf8" (the default): strings, each run of bytes
   * that is not UTF-8 replaced by U+FFFD. */
  encoding?: "utf8" | "buffer";
  /** The command is killed after this many milliseconds: an ExitError with
   * code "canceled" and what it wrote until then. */
  timeoutMs?: number;
  /** Aborting it kills the command (the server's `request.cancel`): an
   * ExitError with code "canceled", what it wrote until then, and the
   * signal's reason as its `cause`. Already aborted: a LightboxError
   * "canceled" and nothing runs. */
  signal?: AbortSignal;
  /** Called with each chunk of the command's standard output as the
   * command writes it (the server streams it: `stream`), in order and
   * before the promise settles; the result still holds all of it. A string
   * (a character split across writes comes whole), or a Buffer with
   * `encoding: "buffer"`. If it throws, later chunks are not delivered and
   * the promise rejects with what it threw once the command has ended. */
  onStdout?: (chunk: T) => void;
  /** As onStdout, for standard error. */
  onStderr?: (chunk: T) => void;
}

/** Options of Sandbox.spawn: those of exec but stdin (written through the
 * handle instead), and a terminal. */
export interface SpawnOptions<T extends string | Buffer = string | Buffer> extends Omit<ExecOptions<T>, "stdin"> {
  /** Runs the command on a terminal (a pty) inside the sandbox, as
   * `lightbox exec -t`: everything it writes, stderr too, comes to
   * onStdout (and the result's stdout); the terminal echoes input and ends
   * lines in "\r\n". */
  tty?: boolean;
  /** The terminal's initial size, [rows, cols]; with tty. */
  ttySize?: [number, number];
}

/** A command started by Sandbox.spawn: its stdin is written through the
 * handle while it runs. Each method resolves once the server has taken
 * the message (input is queued for the command, not necessarily read
 * yet) and rejects with a LightboxError "not_found" once the command has
 * been answered (ended). Messages are carried out in the order they are
 * called, so there is no need to await one before the next. */
export class Spawned<T extends string | Buffer = string> {
  readonly #call: (method: string, params: object) => Promise<any>;
  /** Settles when the command ends, as exec's promise does: its result
   * on exit 0, else an ExitError carrying it. Await it (or catch it). */
  readonly result: Promise<Result<T>>;

  /** @internal Spawned comes from Sandbox.spawn. */
  constructor(call: (method: string, params: object) => Promise<any>, result: Promise<Result<T>>) {
    this.#call = call;
    this.result = result;
  }

  /** Appends data to the command's standard input: a string (UTF-8) or
   * bytes. */
  async write(data: string | Uint8Array): Promise<void> {
    await this.#call("exec.input", inputParams(data));
  }

  /** Ends the command's standard input, after data when given (the
   * command reads end of file; on a terminal, send "\u0004" or "exit\n"
   * instead: a terminal has no end of file). Writing after it is a
   * LightboxError. */
  async end(data?: string | Uint8Array): Promise<void> {
    await this.#call("exec.input", { ...inputParams(data ?? ""), eof: true });
  }

  /** Changes the size of the command's terminal (spawned with tty). */
  async resize(rows: number, cols: number): Promise<void> {
    await this.#call("exec.resize", { rows, cols });
  }

  /** Sends signal ("SIGINT", "int", a number as a string; default
   * SIGTERM) to the command. */
  async kill(signal = "SIGTERM"): Promise<void> {
    await this.#call("exec.signal", { signal });
  }
}

function inputParams(data: string | Uint8Array): Record<string, unknown> {
  if (typeof data === "string") return { data, encoding: "utf8" };
  return { data: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64"), encoding: "base64" };
}

/** What a finished command left. stdout and stderr hold at most 16 MiB
 * each: strings decoded as UTF-8, or Buffers with `encoding: "buffer"`. */
export interface Result<T extends string | Buffer = string> {
  exitCode: number;
  stdout: T;
  stderr: T;
}

/** Options of Sandbox.wait. */
export interface WaitOptions {
  /** Stop waiting after this many milliseconds: a LightboxError "canceled"
   * (the sandbox runs on). */
  timeoutMs?: number;
  /** Aborting it stops the wait (the server's `request.cancel`): a
   * LightboxError "canceled" with the signal's reason as its `cause`; the
   * sandbox runs on. */
  signal?: AbortSignal;
}

/** Options of Sandbox.logs. T is what the output callbacks get: strings,
 * or Buffers with `encoding: "buffer"`. */
export interface LogsOptions<T extends string | Buffer = string | Buffer> {
  /** Keep reading as the main command writes, until the sandbox stops
   * running (its main command ended, or it was removed or destroyed);
   * the output comes to onStdout and onStderr as it is written, and the
   * promise resolves once the follow ended. A sandbox without a main
   * command is followed until it is destroyed: pass a `signal`. */
  follow?: boolean;
  /** "buffer": stdout and stderr are Buffers of the bytes as written;
   * "utf8" (the default): strings, each run of bytes that is not UTF-8
   * replaced by U+FFFD. */
  encoding?: "utf8" | "buffer";
  /** Aborting it ends a follow (the server's `request.cancel`): a
   * LightboxError "canceled" with the signal's reason as its `cause`; the
   * sandbox runs on, and the callbacks have had the output until then. */
  signal?: AbortSignal;
  /** With follow: called with each chunk of the main command's standard
   * output, what was written before first, in order and before the promise
   * settles. If it throws, later chunks are not delivered and the promise
   * rejects with what it threw once the follow has ended. */
  onStdout?: (chunk: T) => void;
  /** As onStdout, for standard error. */
  onStderr?: (chunk: T) => void;
}

/** A sandbox's logs: what its main command wrote, as kept on disk. */
export interface Logs<T extends string | Buffer = string> {
  /** The newest 16 MiB of each stream. */
  stdout: T;
  stderr: T;
  /** How many older bytes of the stream were left out (0: none). */
  stdoutDropped: number;
  stderrDropped: number;
}

/** Options of removeSandbox. */
export interface RemoveSandboxOptions {
  /** Stop a running sandbox and remove it; without it a running sandbox is
   * refused with "in_use" (and left running). */
  force?: boolean;
  /** How long its processes have after the stop signal before SIGKILL
   * (10000 when omitted; 0: SIGKILL at once). */
  timeoutMs?: number;
}

/** Options of gc. */
export interface GCOptions {
  /** Aborting it stops the collection between two removals: a
   * LightboxError "canceled". */
  signal?: AbortSignal;
}

/** What gc removed. */
export interface Collected {
  /** Dead sandboxes (their init gone without cleaning up). */
  sandboxes: string[];
  /** Size-capped writable layers no sandbox named any more. */
  disks: string[];
  /** Digests of unpacked layers no snapshot uses. */
  layers: string[];
  /** Sandbox init programs of other lightbox builds (upgrades, other
   * embedding programs) that no running lightbox process can still launch
   * from and that nothing used for a week: file names under the store's
   * `sandboxes/`. */
  inits: string[];
}

/** A named volume. */
export interface Volume {
  name: string;
  labels: Record<string, string>;
  createdAt: Date;
  lastUsedAt?: Date;
  /** 0 = no quota. */
  quotaMib: number;
  usedBytes: number;
  /** Live sandboxes that have it mounted. */
  usedBy: string[];
  /** usedBytes was computed (listVolumes computes it). */
  usageKnown: boolean;
  /** How its quota is enforced: "dir" (none), "loop", "xfs", or
   * "delegated" (rootless store, a volume root keeps for its user). */
  backend: string;
}

/** Options of ensureVolume; they apply only when the volume is created. */
export interface VolumeOptions {
  quotaMib?: number;
  labels?: Record<string, string>;
}

/** A sandbox in the store. */
export interface SandboxInfo {
  name: string;
  snapshot: string;
  /** "running", "exited" or "dead" (`lightbox gc` removes it). */
  status: string;
  exitCode?: number;
  /** The sandbox exited because its timeout passed. */
  timedOut: boolean;
  createdAt: Date;
  volumes: string[];
  /** Its launcher detached it: it outlives the process that launched it. */
  detached: boolean;
  /** A warm pool (`prewarm`) launched it and holds it until a launch
   * takes it; it goes with the `lightbox api` process that pooled it. */
  pooled: boolean;
  /** It runs, but its private network's user-mode stack has exited: it
   * has no network any more. */
  networkLost: boolean;
  /** The kernel's OOM killer killed a process of it (its memory limit). */
  oomKilled: boolean;
  /** The init's process id on the host, while it runs. */
  pid?: number;
  /** How each limit holds, by resource ("pids", "memory", "cpu", "shm",
   * "logs"): e.g. "cgroup v1 4096", "rlimit 4096". */
  limits?: Record<string, string>;
  /** What it uses now, while it runs. */
  usage?: SandboxUsage;
}

/** A running sandbox's use of resources (lightbox.Usage). */
export interface SandboxUsage {
  memoryBytes: number;
  /** 0 = no limit. */
  memoryLimitBytes: number;
  pids: number;
  /** 0 = no limit. */
  pidsLimit: number;
  cpuNanos: number;
}

/** A snapshot in the store. */
export interface SnapshotInfo {
  name: string;
  /** The digest of its OCI manifest. */
  digest: string;
  layers: number;
  /** Its unpacked size in bytes. */
  size: number;
  /** What its blobs take in the store, as stored (compressed or not). */
  storedSize: number;
  createdAt: Date;
  /** The image config a launch applies. */
  config: SnapshotConfig;
}

/** The part of a snapshot's OCI image config a launch applies; what it
 * leaves unset is absent. */
export interface SnapshotConfig {
  env?: string[];
  workingDir?: string;
  user?: string;
  entrypoint?: string[];
  cmd?: string[];
  labels?: Record<string, string>;
  /** The image's STOPSIGNAL as written (absent: SIGTERM). */
  stopSignal?: string;
}

/** Options of Sandbox.commit. */
export interface CommitOptions {
  /** Replace an existing snapshot of that name (refused with "in_use"
   * while a sandbox uses it); otherwise a taken name is "exists". */
  replace?: boolean;
}

/** The formats importSnapshot reads: an OCI image layout directory, a tar
 * of one, a `docker save` tar, a root filesystem directory or tarball. */
export type ImportFormat = "oci" | "oci-archive" | "docker-archive" | "rootfs-dir" | "rootfs-tar";

/** Options of importSnapshot. */
export interface ImportOptions {
  /** The source's format; detected when omitted. */
  format?: ImportFormat;
  /** Replace an existing snapshot of that name (refused with "in_use"
   * while a sandbox uses it); otherwise a taken name is "exists". */
  replace?: boolean;
}

/** Options of exportSnapshot. */
export interface ExportOptions {
  /** "oci" (the default): an OCI image layout directory, made if missing,
   * the other images in it kept; "oci-archive": a tar file, which must not
   * exist yet. A destination ending in ".tar" does not choose it: say so. */
  format?: "oci" | "oci-archive";
  /** The image's tag in the destination; the snapshot's name when omitted. */
  tag?: string;
}

/** Options of buildSnapshot: lightbox's BuildOptions. Paths are this
 * host's; relative ones are taken from this process's working directory. */
export interface BuildOptions {
  /** The snapshot to make. */
  name: string;
  /** The build context directory that COPY, ADD and RUN --mount=type=bind
   * read from. */
  context: string;
  /** The Dockerfile; `Dockerfile` in context when omitted (and no recipe). */
  dockerfile?: string;
  /** The Dockerfile's text, in place of a file (not with dockerfile). */
  recipe?: string;
  /** Build arguments (`--build-arg K=V`). HTTP_PROXY & co. are predefined
   * as in docker, but only the values given here reach a RUN. */
  buildArgs?: Record<string, string>;
  /** The stage (`FROM … AS target`) to make the snapshot of; later stages
   * are not built. The last stage when omitted. */
  target?: string;
  /** Runs every step again instead of reusing cached ones. */
  noCache?: boolean;
  /** Replaces an existing snapshot of that name (refused with "in_use"
   * while a sandbox uses it); otherwise a taken name is "exists", before
   * anything runs. */
  replace?: boolean;
  /** Each RUN's network: "private" (the default), "none" or "host". */
  network?: "private" | "none" | "host";
  /** Mounted into each RUN, as launchSandbox's mounts; in no layer. */
  mounts?: Record<string, MountSpec>;
  /** "host": the host's CA bundle over the image's in each RUN, in no layer. */
  caCerts?: "host";
  /** The build is stopped after this many milliseconds: a LightboxError
   * "canceled", and no snapshot. */
  timeoutMs?: number;
  /** Aborting it stops the build (the RUN running is killed, its sandbox
   * destroyed, no snapshot made): a LightboxError "canceled" with the
   * signal's reason as its `cause`. */
  signal?: AbortSignal;
  /** Called with what each RUN writes, as it writes it (the server
   * streams it), in order and before the promise settles: text (a
   * character split across writes comes whole) and the stream it went to.
   * If it (or onStep) throws, nothing more is delivered and the promise
   * rejects with what it threw once the build has ended. */
  onOutput?: (chunk: string, stream: "stdout" | "stderr") => void;
  /** Called as each step starts (done false) and as it ends (done true;
   * a step that fails has no end). */
  onStep?: (step: BuildStep) => void;
}

/** A build step starting or finished (lightbox.BuildProgress). */
export interface BuildStep {
  /** 1-based, of total. */
  step: number;
  total: number;
  /** The instruction as the Dockerfile has it. */
  instruction: string;
  done: boolean;
  /** Done: the step's result came from the build cache. */
  cached?: boolean;
  /** Done: how long it took. */
  durationMs?: number;
  /** Done: the compressed size of the layer it added (0 for none). */
  layerSize?: number;
}

/** The stable error codes of the protocol; the first five are lightbox's
 * sentinel errors (ErrNotFound, ErrExists, ErrInUse, ErrInvalidName,
 * ErrQuotaUnsupported). */
export type ErrorCode =
  | "not_found"
  | "exists"
  | "in_use"
  | "invalid_name"
  | "quota_unsupported"
  | "exit"
  | "command_not_found"
  | "not_executable"
  | "not_running"
  | "output_truncated"
  | "canceled"
  | "no_command"
  | "invalid_params"
  | "method_not_found"
  | "invalid_request"
  | "parse_error"
  | "server_exited"
  | "error";

/** An error lightbox answered with; `code` is stable, the message is for
 * people. */
export class LightboxError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "LightboxError";
    this.code = code;
  }
}

/** A command that ran and exited non-zero, wrote more output than is kept
 * (code "output_truncated"), or was killed as its `timeoutMs` passed or the
 * server shut down (code "canceled", `exitCode` -1); `result` is what it
 * left: all it wrote until then. */
export class ExitError<T extends string | Buffer = string> extends LightboxError {
  readonly result: Result<T>;
  readonly exitCode: number;
  readonly stdout: T;
  readonly stderr: T;
  /** The signal that killed it, 0 when it exited. */
  readonly signal: number;
  constructor(code: "exit" | "output_truncated" | "canceled", message: string, result: Result<T>, signal = 0, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = "ExitError";
    this.result = result;
    this.exitCode = result.exitCode;
    this.stdout = result.stdout;
    this.stderr = result.stderr;
    this.signal = signal;
  }
}

/** Where a Client finds lightbox. */
export interface ClientOptions {
  /** The lightbox binary; default LIGHTBOX_BIN, else `lightbox` on PATH. */
  bin?: string;
  /** The store; default LIGHTBOX_ROOT, else lightbox's default. */
  root?: string;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  /** Gets the params of the request's notifications (exec.output,
   * build.output, build.step) and their method. */
  onOutput?: (params: any, method: string) => void;
}

// Connection is one `lightbox api` process. It keeps this process alive
// only while a request is waiting for its answer: an idle connection never
// holds Node.js's event loop open, and when the process exits the pipe
// closes and the server cleans up.
class Connection {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #dead: LightboxError | undefined;
  #stderrTail = "";
  #bin: string;
  #closed: Promise<void>;

  constructor(bin: string, root: string | undefined) {
    this.#bin = bin;
    const env = { ...process.env };
    if (root !== undefined) env.LIGHTBOX_ROOT = root;
    this.#child = spawn(bin, ["api"], { stdio: ["pipe", "pipe", "pipe"], env });
    this.#child.on("error", (err: NodeJS.ErrnoException) => {
      const hint = err.code === "ENOENT" ? " (set LIGHTBOX_BIN or put lightbox on PATH)" : "";
      this.#fail(new LightboxError("server_exited", `start ${bin} api: ${err.message}${hint}`));
    });
    this.#closed = new Promise((resolve) => this.#child.once("close", () => resolve()));
    this.#child.on("close", (code, signal) => {
      const how = signal ? `was killed by ${signal}` : `exited with status ${code}`;
      const tail = this.#stderrTail.trim();
      this.#fail(new LightboxError("server_exited", `${bin} api ${how}${tail ? ": " + tail : ""}`));
    });
    this.#child.stdin!.on("error", () => {
      // EPIPE when the server died; the exit handler reports it.
    });
    const lines = createInterface({ input: this.#child.stdout!, crlfDelay: Infinity });
    lines.on("line", (line) => this.#onLine(line));
    this.#child.stderr!.on("data", (chunk: Buffer) => {
      process.stderr.write(chunk);
      this.#stderrTail = (this.#stderrTail + chunk.toString("utf8")).slice(-4096);
    });
    this.#hold(false);
  }

  get dead(): boolean {
    return this.#dead !== undefined;
  }

  call(
    method: string,
    params?: unknown,
    signal?: AbortSignal,
    onOutput?: (params: any, method: string) => void,
    onSent?: (id: number, conn: Connection) => void,
  ): Promise<any> {
    if (this.#dead) return Promise.reject(this.#dead);
    if (signal?.aborted) {
      return Promise.reject(new LightboxError("canceled", `${method}: aborted before it was sent`, { cause: signal.reason }));
    }
    const id = this.#nextId++;
    const msg = JSON.stringify({ jsonrpc: "2.0", id, method, params: params ?? {} }) + "\n";
    const answered = new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onOutput });
      this.#hold(true);
      this.#child.stdin!.write(msg);
    });
    onSent?.(id, this);
    if (!signal) return answered;
    // On abort the server kills what the request runs and answers it
    // (a "canceled" error with the output so far): the answer settles it.
    const onAbort = () => {
      if (this.#pending.has(id) && !this.#dead) {
        this.#child.stdin!.write(JSON.stringify({ jsonrpc: "2.0", method: "request.cancel", params: { id } }) + "\n");
      }
    };
    signal.addEventListener("abort", onAbort, { once: true });
    return answered.then(
      (r) => {
        signal.removeEventListener("abort", onAbort);
        return r;
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        if (signal.aborted && e instanceof LightboxError && e.code === "canceled" && e.cause === undefined) {
          throw e instanceof ExitError
            ? new ExitError("canceled", e.message, e.result, e.signal, { cause: signal.reason })
            : new LightboxError("canceled", e.message, { cause: signal.reason });
        }
        throw e;
      },
    );
  }

  close(): Promise<void> {
    this.#child.stdin!.end();
    if (this.#child.exitCode !== null || this.#child.signalCode !== null || this.#dead) return Promise.resolve();
    this.#child.ref(); // the caller waits for the exit
    return this.#closed;
  }

  // hold refs the child and its pipes while requests wait, unrefs them when
  // none does.
  #hold(busy: boolean): void {
    const handles = [this.#child, this.#child.stdin, this.#child.stdout, this.#child.stderr] as Array<
      { ref?: () => void; unref?: () => void } | null
    >;
    for (const h of handles) {
      if (busy) h?.ref?.();
      else h?.unref?.();
    }
  }

  #onLine(line: string): void {
    let msg: any;
    try {
      msg = JSON.parse(line);
    } catch {
      return; // not ours to answer: the protocol has only JSON lines
    }
    if (notifications.includes(msg?.method) && msg.id === undefined) {
      // A streaming request's output (an exec's, a followed sandbox's
      // logs, a build's steps and output), before its answer; not ours
      // when its id is not one of ours.
      const id = msg.params?.id;
      const p = typeof id === "number" ? this.#pending.get(id) : undefined;
      p?.onOutput?.(msg.params, msg.method);
      return;
    }
    const p = typeof msg?.id === "number" ? this.#pending.get(msg.id) : undefined;
    if (!p) return; // another notification, or an answer nobody waits for
    this.#pending.delete(msg.id);
    if (this.#pending.size === 0) this.#hold(false);
    if (msg.error) p.reject(toError(msg.error));
    else p.resolve(msg.result);
  }

  #fail(err: LightboxError): void {
    if (this.#dead) return;
    this.#dead = err;
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    this.#hold(false);
  }
}

// notifications are the methods of the notifications a request gets
// before its answer.
const notifications = ["exec.output", "logs.output", "build.output", "build.step"];

function toError(e: { code: number; message: string; data?: any }): LightboxError {
  const data = e.data ?? {};
  const code: ErrorCode = typeof data.code === "string" ? data.code : "error";
  if ((code === "exit" || code === "output_truncated" || code === "canceled") && typeof data.exitCode === "number") {
    const result = { exitCode: data.exitCode, stdout: decode(data.stdout, data.encoding), stderr: decode(data.stderr, data.encoding) };
    return new ExitError(code, e.message, result, data.signal ?? 0);
  }
  return new LightboxError(code, e.message);
}

// decode returns a stream of a result as sent: a Buffer when base64.
function decode(s: unknown, encoding: unknown): string | Buffer {
  if (typeof s !== "string") return encoding === "base64" ? Buffer.alloc(0) : "";
  return encoding === "base64" ? Buffer.from(s, "base64") : s;
}

function envList(env: Record<string, string> | string[] | undefined): string[] | undefined {
  if (env === undefined) return undefined;
  if (Array.isArray(env)) return env;
  return Object.entries(env).map(([k, v]) => `${k}=${v}`);
}

// resourcesParams spells Resources as the protocol does.
function resourcesParams(r: Resources | undefined): object | undefined {
  return r && {
    memoryMiB: r.memoryMib,
    memorySwapMiB: r.memorySwapMib,
    cpus: r.cpus,
    pidsLimit: r.pidsLimit,
    shmMiB: r.shmMib,
    logMiB: r.logMib,
  };
}

// mountsParams spells mounts as the protocol does, host paths absolute.
function mountsParams(specs: Record<string, MountSpec> | undefined): object {
  const mounts: Record<string, { source?: string; volume?: string; readOnly?: boolean; overlay?: boolean; noCopy?: boolean }> = {};
  for (const [target, m] of Object.entries(specs ?? {})) {
    if (typeof m === "string") mounts[target] = { source: resolvePath(m) };
    else if ("volume" in m) mounts[target] = { volume: m.volume, readOnly: m.readOnly, noCopy: m.noCopy };
    else mounts[target] = { source: resolvePath(m.source), readOnly: m.readOnly, overlay: m.overlay };
  }
  return mounts;
}

function toVolume(v: any): Volume {
  return {
    name: v.name,
    labels: v.labels ?? {},
    createdAt: new Date(v.createdAt),
    lastUsedAt: v.lastUsedAt && !v.lastUsedAt.startsWith("0001-") ? new Date(v.lastUsedAt) : undefined,
    quotaMib: v.quotaMiB ?? 0,
    usedBytes: v.usedBytes ?? 0,
    usedBy: v.usedBy ?? [],
    usageKnown: v.usageKnown ?? false,
    backend: v.backend ?? "",
  };
}

function toSandboxInfo(s: any): SandboxInfo {
  return {
    name: s.name,
    snapshot: s.snapshot,
    status: s.status,
    exitCode: s.exitCode,
    timedOut: s.timedOut ?? false,
    createdAt: new Date(s.createdAt),
    volumes: s.volumes ?? [],
    detached: s.detached ?? false,
    pooled: s.pooled ?? false,
    networkLost: s.networkLost ?? false,
    oomKilled: s.oomKilled ?? false,
    pid: s.pid,
    limits: s.limits,
    usage: s.usage && {
      memoryBytes: s.usage.memoryBytes ?? 0,
      memoryLimitBytes: s.usage.memoryLimitBytes ?? 0,
      pids: s.usage.pids ?? 0,
      pidsLimit: s.usage.pidsLimit ?? 0,
      cpuNanos: s.usage.cpuNanos ?? 0,
    },
  };
}

function toSnapshot(s: any): SnapshotInfo {
  return {
    name: s.name,
    digest: s.digest,
    layers: s.layers,
    size: s.size,
    storedSize: s.storedSize ?? 0,
    createdAt: new Date(s.createdAt),
    config: s.config ?? {},
  };
}

/** A handle on a sandbox. A launched sandbox dies with this process unless
 * detached. */
export class Sandbox {
  readonly #client: Client;
  /** The sandbox's name (also its hostname). */
  readonly name: string;

  /** @internal Sandboxes come from launchSandbox and attachSandbox. */
  constructor(client: Client, name: string) {
    this.#client = client;
    this.name = name;
  }

  /** Runs script with /bin/sh -c. Resolves to the result of an exit 0;
   * rejects with an ExitError carrying the result otherwise. */
  shell(script: string, opts: ExecOptions<Buffer> & { encoding: "buffer" }): Promise<Result<Buffer>>;
  shell(script: string, opts?: ExecOptions<string> & { encoding?: "utf8" }): Promise<Result>;
  shell(script: string, opts?: ExecOptions): Promise<Result<string | Buffer>>;
  shell(script: string, opts: ExecOptions<any> = {}): Promise<Result<string | Buffer>> {
    return this.#run("sandbox.shell", { script }, opts);
  }

  /** Runs path with args (path without a slash is looked up in the
   * sandbox's PATH); as shell for the result. */
  exec(path: string, args: string[], opts: ExecOptions<Buffer> & { encoding: "buffer" }): Promise<Result<Buffer>>;
  exec(path: string, args?: string[], opts?: ExecOptions<string> & { encoding?: "utf8" }): Promise<Result>;
  exec(path: string, args?: string[], opts?: ExecOptions): Promise<Result<string | Buffer>>;
  exec(path: string, args: string[] = [], opts: ExecOptions<any> = {}): Promise<Result<string | Buffer>> {
    return this.#run("sandbox.exec", { path, args }, opts);
  }

  /** Starts path with args and returns at once a handle that writes its
   * standard input as it runs (write, end), resizes its terminal (with
   * opts.tty), signals it (kill), and whose `result` settles when it
   * ends, as exec's promise does. Pass onStdout (and onStderr) to see its
   * output as it comes: an interactive shell or REPL. For a script, spawn
   * "/bin/sh" with ["-c", script]. */
  spawn(path: string, args: string[], opts: SpawnOptions<Buffer> & { encoding: "buffer" }): Spawned<Buffer>;
  spawn(path: string, args?: string[], opts?: SpawnOptions<string> & { encoding?: "utf8" }): Spawned<string>;
  spawn(path: string, args?: string[], opts?: SpawnOptions): Spawned<string | Buffer>;
  spawn(path: string, args: string[] = [], opts: SpawnOptions<any> = {}): Spawned<any> {
    if ((opts as ExecOptions).stdin !== undefined) {
      throw new LightboxError("invalid_params", "spawn: write stdin through the handle (write, end), not opts.stdin");
    }
    const what: Record<string, unknown> = { path, args, stdinStream: true };
    if (opts.tty) what.tty = true;
    if (opts.ttySize !== undefined) what.ttySize = opts.ttySize;
    let sent: { id: number; conn: Connection } | undefined;
    const result = this.#run("sandbox.exec", what, opts, (id, conn) => (sent = { id, conn }));
    const call = async (method: string, params: object): Promise<any> => {
      if (!sent) {
        await result; // rejects with why the command was not sent
        throw new LightboxError("error", `${method}: the command was not started`);
      }
      return sent.conn.call(method, { id: sent.id, ...params });
    };
    return new Spawned(call, result);
  }

  /** Leaves the sandbox running after this process exits; attachSandbox
   * finds it again. */
  async detach(): Promise<void> {
    await this.#client._call("sandbox.detach", { name: this.name });
  }

  /** Sends signal ("SIGHUP", "hup", "RTMIN+1" or a number as a string) to
   * the sandbox's main command: a LightboxError "no_command" when it was
   * launched without one, "not_running" once that has exited. */
  async signal(signal: string): Promise<void> {
    await this.#client._call("sandbox.signal", { name: this.name, signal });
  }

  /** Ends the main command as `docker stop` does: its stop signal, then
   * SIGKILL after timeoutMs (10000 when omitted; 0: at once); resolves once
   * it has exited. The sandbox stays, exited, until destroyed. */
  async stop(timeoutMs?: number): Promise<void> {
    await this.#client._call("sandbox.stop", { name: this.name, timeoutMs });
  }

  /** Waits for the main command to end and resolves to its exit status
   * (128+N when signal N killed it); at once when it has ended already. A
   * LightboxError "no_command" when the sandbox was launched without one.
   * opts.timeoutMs passing or opts.signal aborting stops the wait (a
   * LightboxError "canceled"), not the command. */
  async wait(opts: WaitOptions = {}): Promise<number> {
    const r = await this.#client._call("sandbox.wait", { name: this.name, timeoutMs: opts.timeoutMs }, opts.signal);
    return r.exitCode;
  }

  /** Resolves to what the main command wrote, as the sandbox keeps it on
   * disk (also after it exited, until the sandbox is removed); with
   * `follow`, once the sandbox has stopped running, the output having
   * come to onStdout and onStderr as it was written. */
  logs(opts: LogsOptions<Buffer> & { encoding: "buffer" }): Promise<Logs<Buffer>>;
  logs(opts?: LogsOptions<string> & { encoding?: "utf8" }): Promise<Logs>;
  logs(opts?: LogsOptions): Promise<Logs<string | Buffer>>;
  async logs(opts: LogsOptions<any> = {}): Promise<Logs<string | Buffer>> {
    const bytes = opts.encoding === "buffer";
    if (opts.encoding !== undefined && opts.encoding !== "utf8" && !bytes) {
      throw new LightboxError("invalid_params", `encoding ${JSON.stringify(opts.encoding)}: want "utf8" or "buffer"`);
    }
    const params: Record<string, unknown> = { name: this.name };
    if (opts.follow) params.follow = true;
    if (bytes) params.encoding = "base64";
    const callbacks = { stdout: opts.onStdout, stderr: opts.onStderr } as Record<string, ((chunk: string | Buffer) => void) | undefined>;
    let thrown: { error: unknown } | undefined;
    const onOutput = (p: any) => {
      const fn = typeof p?.data === "string" ? callbacks[p.stream] : undefined;
      if (!fn || thrown || p.data.length === 0) return;
      try {
        fn(bytes ? Buffer.from(p.data, "base64") : p.data);
      } catch (error) {
        thrown = { error };
      }
    };
    const r = await this.#client._call("sandbox.logs", params, opts.signal, opts.follow ? onOutput : undefined);
    if (thrown) throw thrown.error;
    const as = (v: unknown) => {
      const d = decode(v, r.encoding);
      return bytes ? Buffer.from(d) : d;
    };
    return { stdout: as(r.stdout), stderr: as(r.stderr), stdoutDropped: r.stdoutDropped ?? 0, stderrDropped: r.stderrDropped ?? 0 };
  }

  /** Saves the sandbox as a new snapshot, `snapshot`: its snapshot plus
   * what the sandbox wrote over it (mounts and volumes are not part of
   * it), with its snapshot's config; resolves to the new snapshot as
   * listSnapshots shows it. The sandbox's processes are paused while its
   * layer is read and run on after. A taken name is a LightboxError
   * "exists" unless opts.replace. */
  async commit(snapshot: string, opts: CommitOptions = {}): Promise<SnapshotInfo> {
    return toSnapshot(await this.#client._call("sandbox.commit", { name: this.name, snapshot, replace: opts.replace }));
  }

  /** Stops every process in the sandbox and removes it. */
  async destroy(): Promise<void> {
    await this.#client._call("sandbox.destroy", { name: this.name });
  }

  async #run(
    method: string,
    what: object,
    opts: ExecOptions<any>,
    onSent?: (id: number, conn: Connection) => void,
  ): Promise<Result<string | Buffer>> {
    const params: Record<string, unknown> = { name: this.name, ...what };
    const env = envList(opts.env);
    if (env) params.env = env;
    if (opts.workdir !== undefined) params.workdir = opts.workdir;
    if (opts.user !== undefined) params.user = opts.user;
    if (opts.timeoutMs !== undefined) params.timeoutMs = opts.timeoutMs;
    const bytes = opts.encoding === "buffer";
    if (opts.encoding !== undefined && opts.encoding !== "utf8" && !bytes) {
      throw new LightboxError("invalid_params", `encoding ${JSON.stringify(opts.encoding)}: want "utf8" or "buffer"`);
    }
    const b64 = bytes || (opts.stdin !== undefined && typeof opts.stdin !== "string");
    if (b64) params.encoding = "base64";
    if (typeof opts.stdin === "string") params.stdin = b64 ? Buffer.from(opts.stdin, "utf8").toString("base64") : opts.stdin;
    else if (opts.stdin !== undefined) {
      params.stdin = Buffer.from(opts.stdin.buffer, opts.stdin.byteOffset, opts.stdin.byteLength).toString("base64");
    }
    // The streams come as the server sent them (Buffers when base64):
    // bytes for "buffer", UTF-8 text otherwise.
    const as = (v: string | Buffer): string | Buffer => (bytes ? Buffer.from(v) : typeof v === "string" ? v : v.toString("utf8"));
    // Streamed output goes to the callbacks as it comes: Buffers for
    // "buffer"; text otherwise, through a decoder per stream when it comes
    // as base64 (binary stdin), whose chunks may split a character (the
    // server's UTF-8 chunks never do).
    const callbacks = { stdout: opts.onStdout, stderr: opts.onStderr } as Record<string, ((chunk: string | Buffer) => void) | undefined>;
    const decoders: Record<string, StringDecoder> = { stdout: new StringDecoder("utf8"), stderr: new StringDecoder("utf8") };
    let thrown: { error: unknown } | undefined;
    const deliver = (stream: string, chunk: string | Buffer) => {
      const fn = callbacks[stream];
      if (!fn || thrown || chunk.length === 0) return;
      try {
        fn(chunk);
      } catch (error) {
        thrown = { error };
      }
    };
    let onOutput: ((p: any, method: string) => void) | undefined;
    if (opts.onStdout || opts.onStderr) {
      params.stream = true;
      onOutput = (p: any, method: string) => {
        if (method !== "exec.output" || typeof p?.data !== "string" || !(p.stream in decoders)) return;
        if (!b64) deliver(p.stream, p.data);
        else if (bytes) deliver(p.stream, Buffer.from(p.data, "base64"));
        else deliver(p.stream, decoders[p.stream]!.write(Buffer.from(p.data, "base64")));
      };
    }
    const ended = () => {
      if (b64 && !bytes) for (const s of ["stdout", "stderr"]) deliver(s, decoders[s]!.end());
      if (thrown) throw thrown.error;
    };
    let r: any;
    try {
      r = await this.#client._call(method, params, opts.signal, onOutput, onSent);
    } catch (e) {
      if (!(e instanceof ExitError)) throw e;
      ended();
      const result = { exitCode: e.exitCode, stdout: as(e.stdout), stderr: as(e.stderr) };
      throw new ExitError(e.code as "exit" | "output_truncated" | "canceled", e.message, result, e.signal, { cause: e.cause });
    }
    ended();
    return { exitCode: r.exitCode, stdout: as(decode(r.stdout, r.encoding)), stderr: as(decode(r.stderr, r.encoding)) };
  }
}

/** A connection to one store through one `lightbox api` process, started on
 * first use and again if it died. Safe to use from many concurrent calls. */
export class Client {
  readonly #bin: string;
  readonly #root: string | undefined;
  #conn: Connection | undefined;

  constructor(opts: ClientOptions = {}) {
    this.#bin = opts.bin ?? process.env.LIGHTBOX_BIN ?? "lightbox";
    this.#root = opts.root ?? process.env.LIGHTBOX_ROOT;
  }

  /** @internal */
  _call(
    method: string,
    params?: unknown,
    signal?: AbortSignal,
    onOutput?: (params: any, method: string) => void,
    onSent?: (id: number, conn: Connection) => void,
  ): Promise<any> {
    if (!this.#conn || this.#conn.dead) this.#conn = new Connection(this.#bin, this.#root);
    return this.#conn.call(method, params, signal, onOutput, onSent);
  }

  /** Launches a sandbox, runs fn with it and destroys it when fn's promise
   * settles — also when fn throws or rejects; resolves to fn's value. */
  async runInSandbox<T>(opts: SandboxOptions, fn: (sb: Sandbox) => T | Promise<T>): Promise<T> {
    const sb = await this.launchSandbox(opts);
    let value: T;
    try {
      value = await fn(sb);
    } catch (err) {
      await sb.destroy().catch(() => {
        // fn's error is the one to report; a sandbox that could not be
        // destroyed still goes when the api server exits.
      });
      throw err;
    }
    await sb.destroy().catch((err: unknown) => {
      if (!(err instanceof LightboxError && err.code === "not_found")) throw err; // fn destroyed it itself
    });
    return value;
  }

  /** Launches a sandbox and returns its handle. It is destroyed when this
   * process exits unless detached. */
  async launchSandbox(opts: SandboxOptions): Promise<Sandbox> {
    const r = await this._call("sandbox.launch", {
      snapshot: opts.snapshot,
      name: opts.name,
      mounts: mountsParams(opts.mounts),
      workdir: opts.workdir,
      env: envList(opts.env),
      user: opts.user,
      network: opts.network,
      ports: opts.ports,
      command: opts.command,
      timeoutMs: opts.timeoutMs,
      diskMiB: opts.diskMib,
      allowUserNamespaces: opts.allowUserNamespaces,
      stopSignal: opts.stopSignal,
      resources: resourcesParams(opts.resources),
    });
    return new Sandbox(this, r.name);
  }

  /** Keeps n sandboxes launched with opts ready in the api server, so that
   * a matching launchSandbox or runInSandbox takes one instead of
   * launching (a launch with a command, ports or timeoutMs launches cold,
   * as does one with a host mount when the server is not root). n is the
   * pool's size, not a number to add: a second call with the same options
   * sets it, 0 empties the pool. Resolves once n are ready; rejects with
   * the error of a launch that failed. Pooled sandboxes show in
   * listSandboxes under generated names until taken, and go when the
   * server does (this process exits, or close()). */
  async prewarm(opts: PrewarmOptions, n: number): Promise<void> {
    await this._call("sandbox.prewarm", {
      snapshot: opts.snapshot,
      n,
      network: opts.network,
      diskMiB: opts.diskMib,
      allowUserNamespaces: opts.allowUserNamespaces,
      stopSignal: opts.stopSignal,
      resources: resourcesParams(opts.resources),
    });
  }

  /** Finds a sandbox by name (a LightboxError "not_found" when there is
   * none); attaching does not tie its life to this process. */
  async attachSandbox(name: string): Promise<Sandbox> {
    const r = await this._call("sandbox.attach", { name });
    return new Sandbox(this, r.name);
  }

  /** Lists the store's sandboxes. */
  async listSandboxes(): Promise<SandboxInfo[]> {
    const list: any[] = await this._call("sandbox.list");
    return list.map(toSandboxInfo);
  }

  /** Describes the sandbox of that name as listSandboxes does (a
   * LightboxError "not_found" when there is none), without attaching. */
  async inspectSandbox(name: string): Promise<SandboxInfo> {
    return toSandboxInfo(await this._call("sandbox.inspect", { name }));
  }

  /** Removes the sandbox of that name, any of the store's (one launched
   * here, or by another process and detached), as `lightbox rm`: a running
   * one is refused with "in_use" and left running unless opts.force, which
   * stops it first (its stop signal, SIGKILL after opts.timeoutMs). Once
   * sent it is carried out to the end. */
  async removeSandbox(name: string, opts: RemoveSandboxOptions = {}): Promise<void> {
    await this._call("sandbox.remove", { name, force: opts.force, timeoutMs: opts.timeoutMs });
  }

  /** Runs lightbox's garbage collector on the store (`lightbox gc`): removes
   * what crashed processes left (dead sandboxes, unused capped writable
   * layers and unpacked layers) and other builds' unused sandbox inits, and
   * resolves to what it removed. Running
   * and exited sandboxes are left alone. */
  async gc(opts: GCOptions = {}): Promise<Collected> {
    const r = await this._call("server.gc", {}, opts.signal);
    return { sandboxes: r.sandboxes ?? [], disks: r.disks ?? [], layers: r.layers ?? [], inits: r.inits ?? [] };
  }

  /** Lists the store's snapshots. */
  async listSnapshots(): Promise<SnapshotInfo[]> {
    const list: any[] = await this._call("snapshot.list");
    return list.map(toSnapshot);
  }

  /** Imports source, a path on this host (relative paths are taken from
   * this process's working directory), as snapshot name: an OCI image
   * layout directory ("dir" or "dir:tag"), an oci-archive tar ("file" or
   * "file:tag"), a `docker save` tar, a root filesystem directory or a
   * root filesystem tarball (gzip, zstd or plain). Resolves to the
   * snapshot as listSnapshots shows it. A taken name is a LightboxError
   * "exists" unless opts.replace. */
  async importSnapshot(name: string, source: string, opts: ImportOptions = {}): Promise<SnapshotInfo> {
    return toSnapshot(await this._call("snapshot.import", { name, source: resolvePath(source), format: opts.format, replace: opts.replace }));
  }

  /** Removes a snapshot and frees the layers no other snapshot uses;
   * refused ("in_use") while a sandbox, running or kept, uses it. */
  async removeSnapshot(name: string): Promise<void> {
    await this._call("snapshot.remove", { name });
  }

  /** Returns the snapshot of that name as listSnapshots shows it; a
   * LightboxError "not_found" when there is none. */
  async inspectSnapshot(name: string): Promise<SnapshotInfo> {
    return toSnapshot(await this._call("snapshot.inspect", { name }));
  }

  /** Builds snapshot opts.name from a Dockerfile whose FROM names a
   * snapshot of the store (or scratch), as `lightbox snapshot build` does;
   * resolves to the snapshot as listSnapshots shows it. Every step's
   * result is cached: a later build reuses the steps that finished, also
   * those of one that failed. A RUN that fails rejects with an ExitError
   * (code "exit") whose message names the Dockerfile's line, the
   * instruction and the status, and whose result is that RUN's exit code
   * and output; a failed or stopped build leaves no snapshot and no
   * sandbox. onOutput and onStep get the build's progress as it goes. */
  async buildSnapshot(opts: BuildOptions): Promise<SnapshotInfo> {
    const params: Record<string, unknown> = {
      name: opts.name,
      context: opts.context === undefined ? undefined : resolvePath(opts.context),
      dockerfile: opts.dockerfile === undefined ? undefined : resolvePath(opts.dockerfile),
      recipe: opts.recipe,
      buildArgs: opts.buildArgs,
      target: opts.target,
      noCache: opts.noCache,
      replace: opts.replace,
      network: opts.network,
      mounts: mountsParams(opts.mounts),
      caCerts: opts.caCerts,
      timeoutMs: opts.timeoutMs,
    };
    let thrown: { error: unknown } | undefined;
    let onNote: ((p: any, method: string) => void) | undefined;
    if (opts.onOutput || opts.onStep) {
      params.stream = true;
      onNote = (p: any, method: string) => {
        if (thrown) return;
        try {
          if (method === "build.output" && opts.onOutput && typeof p?.data === "string" && p.data.length > 0 && (p.stream === "stdout" || p.stream === "stderr")) {
            opts.onOutput(p.data, p.stream);
          } else if (method === "build.step" && opts.onStep) {
            const step: BuildStep = { step: p.step, total: p.total, instruction: p.instruction, done: p.done === true };
            if (step.done) Object.assign(step, { cached: p.cached ?? false, durationMs: p.durationMs ?? 0, layerSize: p.layerSize ?? 0 });
            opts.onStep(step);
          }
        } catch (error) {
          thrown = { error };
        }
      };
    }
    let r: any;
    try {
      r = await this._call("snapshot.build", params, opts.signal, onNote);
    } catch (e) {
      if (thrown) throw thrown.error;
      throw e;
    }
    if (thrown) throw thrown.error;
    return toSnapshot(r);
  }

  /** Writes the snapshot to destination, a path on this host (relative:
   * from this process's working directory), as an OCI image that
   * importSnapshot (or skopeo, podman, umoci) reads back as
   * "destination:tag". */
  async exportSnapshot(name: string, destination: string, opts: ExportOptions = {}): Promise<void> {
    await this._call("snapshot.export", { name, destination: resolvePath(destination), format: opts.format, tag: opts.tag });
  }

  /** Creates the volume, or returns it as it is if it exists (quota and
   * labels apply only at creation). */
  async ensureVolume(name: string, opts: VolumeOptions = {}): Promise<Volume> {
    return toVolume(await this._call("volume.ensure", { name, quotaMiB: opts.quotaMib, labels: opts.labels }));
  }

  /** Lists the store's volumes, by name. */
  async listVolumes(): Promise<Volume[]> {
    const list: any[] = await this._call("volume.list");
    return list.map(toVolume);
  }

  /** Removes a volume; refused ("in_use") while a sandbox uses it. */
  async removeVolume(name: string): Promise<void> {
    await this._call("volume.remove", { name });
  }

  /** Closes the api process's stdin: it destroys the sandboxes launched
   * through this client and not detached, and exits; resolves once it has.
   * A later call starts a new process. */
  async close(): Promise<void> {
    const conn = this.#conn;
    this.#conn = undefined;
    await conn?.close();
  }
}

let defaultClient: Client | undefined;

/** The Client the module-level functions use, made on first use from
 * LIGHTBOX_BIN and LIGHTBOX_ROOT. */
export function defaultLightbox(): Client {
  defaultClient ??= new Client();
  return defaultClient;
}

/** Client.runInSandbox on the default client. */
export function runInSandbox<T>(opts: SandboxOptions, fn: (sb: Sandbox) => T | Promise<T>): Promise<T> {
  return defaultLightbox().runInSandbox(opts, fn);
}

/** Client.launchSandbox on the default client. */
export function launchSandbox(opts: SandboxOptions): Promise<Sandbox> {
  return defaultLightbox().launchSandbox(opts);
}

/** Client.prewarm on the default client. */
export function prewarm(opts: PrewarmOptions, n: number): Promise<void> {
  return defaultLightbox().prewarm(opts, n);
}

/** Client.attachSandbox on the default client. */
export function attachSandbox(name: string): Promise<Sandbox> {
  return defaultLightbox().attachSandbox(name);
}

/** Client.listSandboxes on the default client. */
export function listSandboxes(): Promise<SandboxInfo[]> {
  return defaultLightbox().listSandboxes();
}

/** Client.inspectSandbox on the default client. */
export function inspectSandbox(name: string): Promise<SandboxInfo> {
  return defaultLightbox().inspectSandbox(name);
}

/** Client.removeSandbox on the default client. */
export function removeSandbox(name: string, opts: RemoveSandboxOptions = {}): Promise<void> {
  return defaultLightbox().removeSandbox(name, opts);
}

/** Client.gc on the default client. */
export function gc(opts: GCOptions = {}): Promise<Collected> {
  return defaultLightbox().gc(opts);
}

/** Client.listSnapshots on the default client. */
export function listSnapshots(): Promise<SnapshotInfo[]> {
  return defaultLightbox().listSnapshots();
}

/** Client.importSnapshot on the default client. */
export function importSnapshot(name: string, source: string, opts: ImportOptions = {}): Promise<SnapshotInfo> {
  return defaultLightbox().importSnapshot(name, source, opts);
}

/** Client.removeSnapshot on the default client. */
export function removeSnapshot(name: string): Promise<void> {
  return defaultLightbox().removeSnapshot(name);
}

/** Client.inspectSnapshot on the default client. */
export function inspectSnapshot(name: string): Promise<SnapshotInfo> {
  return defaultLightbox().inspectSnapshot(name);
}

/** Client.buildSnapshot on the default client. */
export function buildSnapshot(opts: BuildOptions): Promise<SnapshotInfo> {
  return defaultLightbox().buildSnapshot(opts);
}

/** Client.exportSnapshot on the default client. */
export function exportSnapshot(name: string, destination: string, opts: ExportOptions = {}): Promise<void> {
  return defaultLightbox().exportSnapshot(name, destination, opts);
}

/** Client.ensureVolume on the default client. */
export function ensureVolume(name: string, opts: VolumeOptions = {}): Promise<Volume> {
  return defaultLightbox().ensureVolume(name, opts);
}

/** Client.listVolumes on the default client. */
export function listVolumes(): Promise<Volume[]> {
  return defaultLightbox().listVolumes();
}

/** Client.removeVolume on the default client. */
export function removeVolume(name: string): Promise<void> {
  return defaultLightbox().removeVolume(name);
}
