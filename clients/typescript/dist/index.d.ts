/** What a mount puts at a path inside the sandbox: a host path (a string, or
 * `{ source }`; relative paths are taken from this process's working
 * directory) or a named volume, created on first use. A new volume starts
 * with what the snapshot has at the mount's path (copied once, by the
 * first sandbox that mounts it, read-only too), unless `noCopy` keeps it empty.
 * `overlay` makes a host directory copy-on-write (podman's `:O`): the
 * sandbox sees and changes it, its changes stay in the sandbox and go with
 * it, and the host's directory stays as it was (not with `readOnly`). */
export type MountSpec = string | {
    source: string;
    readOnly?: boolean;
    overlay?: boolean;
} | {
    volume: string;
    readOnly?: boolean;
    noCopy?: boolean;
};
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
export declare class Spawned<T extends string | Buffer = string> {
    #private;
    /** Settles when the command ends, as exec's promise does: its result
     * on exit 0, else an ExitError carrying it. Await it (or catch it). */
    readonly result: Promise<Result<T>>;
    /** @internal Spawned comes from Sandbox.spawn. */
    constructor(call: (method: string, params: object) => Promise<any>, result: Promise<Result<T>>);
    /** Appends data to the command's standard input: a string (UTF-8) or
     * bytes. */
    write(data: string | Uint8Array): Promise<void>;
    /** Ends the command's standard input, after data when given (the
     * command reads end of file; on a terminal, send "\u0004" or "exit\n"
     * instead: a terminal has no end of file). Writing after it is a
     * LightboxError. */
    end(data?: string | Uint8Array): Promise<void>;
    /** Changes the size of the command's terminal (spawned with tty). */
    resize(rows: number, cols: number): Promise<void>;
    /** Sends signal ("SIGINT", "int", a number as a string; default
     * SIGTERM) to the command. */
    kill(signal?: string): Promise<void>;
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
export type ErrorCode = "not_found" | "exists" | "in_use" | "invalid_name" | "quota_unsupported" | "exit" | "command_not_found" | "not_executable" | "not_running" | "output_truncated" | "canceled" | "no_command" | "invalid_params" | "method_not_found" | "invalid_request" | "parse_error" | "server_exited" | "error";
/** An error lightbox answered with; `code` is stable, the message is for
 * people. */
export declare class LightboxError extends Error {
    readonly code: ErrorCode;
    constructor(code: ErrorCode, message: string, options?: {
        cause?: unknown;
    });
}
/** A command that ran and exited non-zero, wrote more output than is kept
 * (code "output_truncated"), or was killed as its `timeoutMs` passed or the
 * server shut down (code "canceled", `exitCode` -1); `result` is what it
 * left: all it wrote until then. */
export declare class ExitError<T extends string | Buffer = string> extends LightboxError {
    readonly result: Result<T>;
    readonly exitCode: number;
    readonly stdout: T;
    readonly stderr: T;
    /** The signal that killed it, 0 when it exited. */
    readonly signal: number;
    constructor(code: "exit" | "output_truncated" | "canceled", message: string, result: Result<T>, signal?: number, options?: {
        cause?: unknown;
    });
}
/** Where a Client finds lightbox. */
export interface ClientOptions {
    /** The lightbox binary; default LIGHTBOX_BIN, else `lightbox` on PATH. */
    bin?: string;
    /** The store; default LIGHTBOX_ROOT, else lightbox's default. */
    root?: string;
}
declare class Connection {
    #private;
    constructor(bin: string, root: string | undefined);
    get dead(): boolean;
    call(method: string, params?: unknown, signal?: AbortSignal, onOutput?: (params: any, method: string) => void, onSent?: (id: number, conn: Connection) => void): Promise<any>;
    close(): Promise<void>;
}
/** A handle on a sandbox. A launched sandbox dies with this process unless
 * detached. */
export declare class Sandbox {
    #private;
    /** The sandbox's name (also its hostname). */
    readonly name: string;
    /** @internal Sandboxes come from launchSandbox and attachSandbox. */
    constructor(client: Client, name: string);
    /** Runs script with /bin/sh -c. Resolves to the result of an exit 0;
     * rejects with an ExitError carrying the result otherwise. */
    shell(script: string, opts: ExecOptions<Buffer> & {
        encoding: "buffer";
    }): Promise<Result<Buffer>>;
    shell(script: string, opts?: ExecOptions<string> & {
        encoding?: "utf8";
    }): Promise<Result>;
    shell(script: string, opts?: ExecOptions): Promise<Result<string | Buffer>>;
    /** Runs path with args (path without a slash is looked up in the
     * sandbox's PATH); as shell for the result. */
    exec(path: string, args: string[], opts: ExecOptions<Buffer> & {
        encoding: "buffer";
    }): Promise<Result<Buffer>>;
    exec(path: string, args?: string[], opts?: ExecOptions<string> & {
        encoding?: "utf8";
    }): Promise<Result>;
    exec(path: string, args?: string[], opts?: ExecOptions): Promise<Result<string | Buffer>>;
    /** Starts path with args and returns at once a handle that writes its
     * standard input as it runs (write, end), resizes its terminal (with
     * opts.tty), signals it (kill), and whose `result` settles when it
     * ends, as exec's promise does. Pass onStdout (and onStderr) to see its
     * output as it comes: an interactive shell or REPL. For a script, spawn
     * "/bin/sh" with ["-c", script]. */
    spawn(path: string, args: string[], opts: SpawnOptions<Buffer> & {
        encoding: "buffer";
    }): Spawned<Buffer>;
    spawn(path: string, args?: string[], opts?: SpawnOptions<string> & {
        encoding?: "utf8";
    }): Spawned<string>;
    spawn(path: string, args?: string[], opts?: SpawnOptions): Spawned<string | Buffer>;
    /** Leaves the sandbox running after this process exits; attachSandbox
     * finds it again. */
    detach(): Promise<void>;
    /** Sends signal ("SIGHUP", "hup", "RTMIN+1" or a number as a string) to
     * the sandbox's main command: a LightboxError "no_command" when it was
     * launched without one, "not_running" once that has exited. */
    signal(signal: string): Promise<void>;
    /** Ends the main command as `docker stop` does: its stop signal, then
     * SIGKILL after timeoutMs (10000 when omitted; 0: at once); resolves once
     * it has exited. The sandbox stays, exited, until destroyed. */
    stop(timeoutMs?: number): Promise<void>;
    /** Waits for the main command to end and resolves to its exit status
     * (128+N when signal N killed it); at once when it has ended already. A
     * LightboxError "no_command" when the sandbox was launched without one.
     * opts.timeoutMs passing or opts.signal aborting stops the wait (a
     * LightboxError "canceled"), not the command. */
    wait(opts?: WaitOptions): Promise<number>;
    /** Resolves to what the main command wrote, as the sandbox keeps it on
     * disk (also after it exited, until the sandbox is removed); with
     * `follow`, once the sandbox has stopped running, the output having
     * come to onStdout and onStderr as it was written. */
    logs(opts: LogsOptions<Buffer> & {
        encoding: "buffer";
    }): Promise<Logs<Buffer>>;
    logs(opts?: LogsOptions<string> & {
        encoding?: "utf8";
    }): Promise<Logs>;
    logs(opts?: LogsOptions): Promise<Logs<string | Buffer>>;
    /** Saves the sandbox as a new snapshot, `snapshot`: its snapshot plus
     * what the sandbox wrote over it (mounts and volumes are not part of
     * it), with its snapshot's config; resolves to the new snapshot as
     * listSnapshots shows it. The sandbox's processes are paused while its
     * layer is read and run on after. A taken name is a LightboxError
     * "exists" unless opts.replace. */
    commit(snapshot: string, opts?: CommitOptions): Promise<SnapshotInfo>;
    /** Stops every process in the sandbox and removes it. */
    destroy(): Promise<void>;
}
/** A connection to one store through one `lightbox api` process, started on
 * first use and again if it died. Safe to use from many concurrent calls. */
export declare class Client {
    #private;
    constructor(opts?: ClientOptions);
    /** @internal */
    _call(method: string, params?: unknown, signal?: AbortSignal, onOutput?: (params: any, method: string) => void, onSent?: (id: number, conn: Connection) => void): Promise<any>;
    /** Launches a sandbox, runs fn with it and destroys it when fn's promise
     * settles — also when fn throws or rejects; resolves to fn's value. */
    runInSandbox<T>(opts: SandboxOptions, fn: (sb: Sandbox) => T | Promise<T>): Promise<T>;
    /** Launches a sandbox and returns its handle. It is destroyed when this
     * process exits unless detached. */
    launchSandbox(opts: SandboxOptions): Promise<Sandbox>;
    /** Keeps n sandboxes launched with opts ready in the api server, so that
     * a matching launchSandbox or runInSandbox takes one instead of
     * launching (a launch with a command, ports or timeoutMs launches cold,
     * as does one with a host mount when the server is not root). n is the
     * pool's size, not a number to add: a second call with the same options
     * sets it, 0 empties the pool. Resolves once n are ready; rejects with
     * the error of a launch that failed. Pooled sandboxes show in
     * listSandboxes under generated names until taken, and go when the
     * server does (this process exits, or close()). */
    prewarm(opts: PrewarmOptions, n: number): Promise<void>;
    /** Finds a sandbox by name (a LightboxError "not_found" when there is
     * none); attaching does not tie its life to this process. */
    attachSandbox(name: string): Promise<Sandbox>;
    /** Lists the store's sandboxes. */
    listSandboxes(): Promise<SandboxInfo[]>;
    /** Describes the sandbox of that name as listSandboxes does (a
     * LightboxError "not_found" when there is none), without attaching. */
    inspectSandbox(name: string): Promise<SandboxInfo>;
    /** Removes the sandbox of that name, any of the store's (one launched
     * here, or by another process and detached), as `lightbox rm`: a running
     * one is refused with "in_use" and left running unless opts.force, which
     * stops it first (its stop signal, SIGKILL after opts.timeoutMs). Once
     * sent it is carried out to the end. */
    removeSandbox(name: string, opts?: RemoveSandboxOptions): Promise<void>;
    /** Runs lightbox's garbage collector on the store (`lightbox gc`): removes
     * what crashed processes left (dead sandboxes, unused capped writable
     * layers and unpacked layers) and other builds' unused sandbox inits, and
     * resolves to what it removed. Running
     * and exited sandboxes are left alone. */
    gc(opts?: GCOptions): Promise<Collected>;
    /** Lists the store's snapshots. */
    listSnapshots(): Promise<SnapshotInfo[]>;
    /** Imports source, a path on this host (relative paths are taken from
     * this process's working directory), as snapshot name: an OCI image
     * layout directory ("dir" or "dir:tag"), an oci-archive tar ("file" or
     * "file:tag"), a `docker save` tar, a root filesystem directory or a
     * root filesystem tarball (gzip, zstd or plain). Resolves to the
     * snapshot as listSnapshots shows it. A taken name is a LightboxError
     * "exists" unless opts.replace. */
    importSnapshot(name: string, source: string, opts?: ImportOptions): Promise<SnapshotInfo>;
    /** Removes a snapshot and frees the layers no other snapshot uses;
     * refused ("in_use") while a sandbox, running or kept, uses it. */
    removeSnapshot(name: string): Promise<void>;
    /** Returns the snapshot of that name as listSnapshots shows it; a
     * LightboxError "not_found" when there is none. */
    inspectSnapshot(name: string): Promise<SnapshotInfo>;
    /** Builds snapshot opts.name from a Dockerfile whose FROM names a
     * snapshot of the store (or scratch), as `lightbox snapshot build` does;
     * resolves to the snapshot as listSnapshots shows it. Every step's
     * result is cached: a later build reuses the steps that finished, also
     * those of one that failed. A RUN that fails rejects with an ExitError
     * (code "exit") whose message names the Dockerfile's line, the
     * instruction and the status, and whose result is that RUN's exit code
     * and output; a failed or stopped build leaves no snapshot and no
     * sandbox. onOutput and onStep get the build's progress as it goes. */
    buildSnapshot(opts: BuildOptions): Promise<SnapshotInfo>;
    /** Writes the snapshot to destination, a path on this host (relative:
     * from this process's working directory), as an OCI image that
     * importSnapshot (or skopeo, podman, umoci) reads back as
     * "destination:tag". */
    exportSnapshot(name: string, destination: string, opts?: ExportOptions): Promise<void>;
    /** Creates the volume, or returns it as it is if it exists (quota and
     * labels apply only at creation). */
    ensureVolume(name: string, opts?: VolumeOptions): Promise<Volume>;
    /** Lists the store's volumes, by name. */
    listVolumes(): Promise<Volume[]>;
    /** Removes a volume; refused ("in_use") while a sandbox uses it. */
    removeVolume(name: string): Promise<void>;
    /** Closes the api process's stdin: it destroys the sandboxes launched
     * through this client and not detached, and exits; resolves once it has.
     * A later call starts a new process. */
    close(): Promise<void>;
}
/** The Client the module-level functions use, made on first use from
 * LIGHTBOX_BIN and LIGHTBOX_ROOT. */
export declare function defaultLightbox(): Client;
/** Client.runInSandbox on the default client. */
export declare function runInSandbox<T>(opts: SandboxOptions, fn: (sb: Sandbox) => T | Promise<T>): Promise<T>;
/** Client.launchSandbox on the default client. */
export declare function launchSandbox(opts: SandboxOptions): Promise<Sandbox>;
/** Client.prewarm on the default client. */
export declare function prewarm(opts: PrewarmOptions, n: number): Promise<void>;
/** Client.attachSandbox on the default client. */
export declare function attachSandbox(name: string): Promise<Sandbox>;
/** Client.listSandboxes on the default client. */
export declare function listSandboxes(): Promise<SandboxInfo[]>;
/** Client.inspectSandbox on the default client. */
export declare function inspectSandbox(name: string): Promise<SandboxInfo>;
/** Client.removeSandbox on the default client. */
export declare function removeSandbox(name: string, opts?: RemoveSandboxOptions): Promise<void>;
/** Client.gc on the default client. */
export declare function gc(opts?: GCOptions): Promise<Collected>;
/** Client.listSnapshots on the default client. */
export declare function listSnapshots(): Promise<SnapshotInfo[]>;
/** Client.importSnapshot on the default client. */
export declare function importSnapshot(name: string, source: string, opts?: ImportOptions): Promise<SnapshotInfo>;
/** Client.removeSnapshot on the default client. */
export declare function removeSnapshot(name: string): Promise<void>;
/** Client.inspectSnapshot on the default client. */
export declare function inspectSnapshot(name: string): Promise<SnapshotInfo>;
/** Client.buildSnapshot on the default client. */
export declare function buildSnapshot(opts: BuildOptions): Promise<SnapshotInfo>;
/** Client.exportSnapshot on the default client. */
export declare function exportSnapshot(name: string, destination: string, opts?: ExportOptions): Promise<void>;
/** Client.ensureVolume on the default client. */
export declare function ensureVolume(name: string, opts?: VolumeOptions): Promise<Volume>;
/** Client.listVolumes on the default client. */
export declare function listVolumes(): Promise<Volume[]>;
/** Client.removeVolume on the default client. */
export declare function removeVolume(name: string): Promise<void>;
export {};
