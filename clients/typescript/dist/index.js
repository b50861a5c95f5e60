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
import { spawn } from "node:child_process";
import { resolve as resolvePath } from "node:path";
import { createInterface } from "node:readline";
import { StringDecoder } from "node:string_decoder";
/** A command started by Sandbox.spawn: its stdin is written through the
 * handle while it runs. Each method resolves once the server has taken
 * the message (input is queued for the command, not necessarily read
 * yet) and rejects with a LightboxError "not_found" once the command has
 * been answered (ended). Messages are carried out in the order they are
 * called, so there is no need to await one before the next. */
export class Spawned {
    #call;
    /** Settles when the command ends, as exec's promise does: its result
     * on exit 0, else an ExitError carrying it. Await it (or catch it). */
    result;
    /** @internal Spawned comes from Sandbox.spawn. */
    constructor(call, result) {
        this.#call = call;
        this.result = result;
    }
    /** Appends data to the command's standard input: a string (UTF-8) or
     * bytes. */
    async write(data) {
        await this.#call("exec.input", inputParams(data));
    }
    /** Ends the command's standard input, after data when given (the
     * command reads end of file; on a terminal, send "\u0004" or "exit\n"
     * instead: a terminal has no end of file). Writing after it is a
     * LightboxError. */
    async end(data) {
        await this.#call("exec.input", { ...inputParams(data ?? ""), eof: true });
    }
    /** Changes the size of the command's terminal (spawned with tty). */
    async resize(rows, cols) {
        await this.#call("exec.resize", { rows, cols });
    }
    /** Sends signal ("SIGINT", "int", a number as a string; default
     * SIGTERM) to the command. */
    async kill(signal = "SIGTERM") {
        await this.#call("exec.signal", { signal });
    }
}
function inputParams(data) {
    if (typeof data === "string")
        return { data, encoding: "utf8" };
    return { data: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64"), encoding: "base64" };
}
/** An error lightbox answered with; `code` is stable, the message is for
 * people. */
export class LightboxError extends Error {
    code;
    constructor(code, message, options) {
        super(message, options);
        this.name = "LightboxError";
        this.code = code;
    }
}
/** A command that ran and exited non-zero, wrote more output than is kept
 * (code "output_truncated"), or was killed as its `timeoutMs` passed or the
 * server shut down (code "canceled", `exitCode` -1); `result` is what it
 * left: all it wrote until then. */
export class ExitError extends LightboxError {
    result;
    exitCode;
    stdout;
    stderr;
    /** The signal that killed it, 0 when it exited. */
    signal;
    constructor(code, message, result, signal = 0, options) {
        super(code, message, options);
        this.name = "ExitError";
        this.result = result;
        this.exitCode = result.exitCode;
        this.stdout = result.stdout;
        this.stderr = result.stderr;
        this.signal = signal;
    }
}
// Connection is one `lightbox api` process. It keeps this process alive
// only while a request is waiting for its answer: an idle connection never
// holds Node.js's event loop open, and when the process exits the pipe
// closes and the server cleans up.
class Connection {
    #child;
    #pending = new Map();
    #nextId = 1;
    #dead;
    #stderrTail = "";
    #bin;
    #closed;
    constructor(bin, root) {
        this.#bin = bin;
        const env = { ...process.env };
        if (root !== undefined)
            env.LIGHTBOX_ROOT = root;
        this.#child = spawn(bin, ["api"], { stdio: ["pipe", "pipe", "pipe"], env });
        this.#child.on("error", (err) => {
            const hint = err.code === "ENOENT" ? " (set LIGHTBOX_BIN or put lightbox on PATH)" : "";
            this.#fail(new LightboxError("server_exited", `start ${bin} api: ${err.message}${hint}`));
        });
        this.#closed = new Promise((resolve) => this.#child.once("close", () => resolve()));
        this.#child.on("close", (code, signal) => {
            const how = signal ? `was killed by ${signal}` : `exited with status ${code}`;
            const tail = this.#stderrTail.trim();
            this.#fail(new LightboxError("server_exited", `${bin} api ${how}${tail ? ": " + tail : ""}`));
        });
        this.#child.stdin.on("error", () => {
            // EPIPE when the server died; the exit handler reports it.
        });
        const lines = createInterface({ input: this.#child.stdout, crlfDelay: Infinity });
        lines.on("line", (line) => this.#onLine(line));
        this.#child.stderr.on("data", (chunk) => {
            process.stderr.write(chunk);
            this.#stderrTail = (this.#stderrTail + chunk.toString("utf8")).slice(-4096);
        });
        this.#hold(false);
    }
    get dead() {
        return this.#dead !== undefined;
    }
    call(method, params, signal, onOutput, onSent) {
        if (this.#dead)
            return Promise.reject(this.#dead);
        if (signal?.aborted) {
            return Promise.reject(new LightboxError("canceled", `${method}: aborted before it was sent`, { cause: signal.reason }));
        }
        const id = this.#nextId++;
        const msg = JSON.stringify({ jsonrpc: "2.0", id, method, params: params ?? {} }) + "\n";
        const answered = new Promise((resolve, reject) => {
            this.#pending.set(id, { resolve, reject, onOutput });
            this.#hold(true);
            this.#child.stdin.write(msg);
        });
        onSent?.(id, this);
        if (!signal)
            return answered;
        // On abort the server kills what the request runs and answers it
        // (a "canceled" error with the output so far): the answer settles it.
        const onAbort = () => {
            if (this.#pending.has(id) && !this.#dead) {
                this.#child.stdin.write(JSON.stringify({ jsonrpc: "2.0", method: "request.cancel", params: { id } }) + "\n");
            }
        };
        signal.addEventListener("abort", onAbort, { once: true });
        return answered.then((r) => {
            signal.removeEventListener("abort", onAbort);
            return r;
        }, (e) => {
            signal.removeEventListener("abort", onAbort);
            if (signal.aborted && e instanceof LightboxError && e.code === "canceled" && e.cause === undefined) {
                throw e instanceof ExitError
                    ? new ExitError("canceled", e.message, e.result, e.signal, { cause: signal.reason })
                    : new LightboxError("canceled", e.message, { cause: signal.reason });
            }
            throw e;
        });
    }
    close() {
        this.#child.stdin.end();
        if (this.#child.exitCode !== null || this.#child.signalCode !== null || this.#dead)
            return Promise.resolve();
        this.#child.ref(); // the caller waits for the exit
        return this.#closed;
    }
    // hold refs the child and its pipes while requests wait, unrefs them when
    // none does.
    #hold(busy) {
        const handles = [this.#child, this.#child.stdin, this.#child.stdout, this.#child.stderr];
        for (const h of handles) {
            if (busy)
                h?.ref?.();
            else
                h?.unref?.();
        }
    }
    #onLine(line) {
        let msg;
        try {
            msg = JSON.parse(line);
        }
        catch {
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
        if (!p)
            return; // another notification, or an answer nobody waits for
        this.#pending.delete(msg.id);
        if (this.#pending.size === 0)
            this.#hold(false);
        if (msg.error)
            p.reject(toError(msg.error));
        else
            p.resolve(msg.result);
    }
    #fail(err) {
        if (this.#dead)
            return;
        this.#dead = err;
        for (const p of this.#pending.values())
            p.reject(err);
        this.#pending.clear();
        this.#hold(false);
    }
}
// notifications are the methods of the notifications a request gets
// before its answer.
const notifications = ["exec.output", "logs.output", "build.output", "build.step"];
function toError(e) {
    const data = e.data ?? {};
    const code = typeof data.code === "string" ? data.code : "error";
    if ((code === "exit" || code === "output_truncated" || code === "canceled") && typeof data.exitCode === "number") {
        const result = { exitCode: data.exitCode, stdout: decode(data.stdout, data.encoding), stderr: decode(data.stderr, data.encoding) };
        return new ExitError(code, e.message, result, data.signal ?? 0);
    }
    return new LightboxError(code, e.message);
}
// decode returns a stream of a result as sent: a Buffer when base64.
function decode(s, encoding) {
    if (typeof s !== "string")
        return encoding === "base64" ? Buffer.alloc(0) : "";
    return encoding === "base64" ? Buffer.from(s, "base64") : s;
}
function envList(env) {
    if (env === undefined)
        return undefined;
    if (Array.isArray(env))
        return env;
    return Object.entries(env).map(([k, v]) => `${k}=${v}`);
}
// resourcesParams spells Resources as the protocol does.
function resourcesParams(r) {
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
function mountsParams(specs) {
    const mounts = {};
    for (const [target, m] of Object.entries(specs ?? {})) {
        if (typeof m === "string")
            mounts[target] = { source: resolvePath(m) };
        else if ("volume" in m)
            mounts[target] = { volume: m.volume, readOnly: m.readOnly, noCopy: m.noCopy };
        else
            mounts[target] = { source: resolvePath(m.source), readOnly: m.readOnly, overlay: m.overlay };
    }
    return mounts;
}
function toVolume(v) {
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
function toSandboxInfo(s) {
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
function toSnapshot(s) {
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
    #client;
    /** The sandbox's name (also its hostname). */
    name;
    /** @internal Sandboxes come from launchSandbox and attachSandbox. */
    constructor(client, name) {
        this.#client = client;
        this.name = name;
    }
    shell(script, opts = {}) {
        return this.#run("sandbox.shell", { script }, opts);
    }
    exec(path, args = [], opts = {}) {
        return this.#run("sandbox.exec", { path, args }, opts);
    }
    spawn(path, args = [], opts = {}) {
        if (opts.stdin !== undefined) {
            throw new LightboxError("invalid_params", "spawn: write stdin through the handle (write, end), not opts.stdin");
        }
        const what = { path, args, stdinStream: true };
        if (opts.tty)
            what.tty = true;
        if (opts.ttySize !== undefined)
            what.ttySize = opts.ttySize;
        let sent;
        const result = this.#run("sandbox.exec", what, opts, (id, conn) => (sent = { id, conn }));
        const call = async (method, params) => {
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
    async detach() {
        await this.#client._call("sandbox.detach", { name: this.name });
    }
    /** Sends signal ("SIGHUP", "hup", "RTMIN+1" or a number as a string) to
     * the sandbox's main command: a LightboxError "no_command" when it was
     * launched without one, "not_running" once that has exited. */
    async signal(signal) {
        await this.#client._call("sandbox.signal", { name: this.name, signal });
    }
    /** Ends the main command as `docker stop` does: its stop signal, then
     * SIGKILL after timeoutMs (10000 when omitted; 0: at once); resolves once
     * it has exited. The sandbox stays, exited, until destroyed. */
    async stop(timeoutMs) {
        await this.#client._call("sandbox.stop", { name: this.name, timeoutMs });
    }
    /** Waits for the main command to end and resolves to its exit status
     * (128+N when signal N killed it); at once when it has ended already. A
     * LightboxError "no_command" when the sandbox was launched without one.
     * opts.timeoutMs passing or opts.signal aborting stops the wait (a
     * LightboxError "canceled"), not the command. */
    async wait(opts = {}) {
        const r = await this.#client._call("sandbox.wait", { name: this.name, timeoutMs: opts.timeoutMs }, opts.signal);
        return r.exitCode;
    }
    async logs(opts = {}) {
        const bytes = opts.encoding === "buffer";
        if (opts.encoding !== undefined && opts.encoding !== "utf8" && !bytes) {
            throw new LightboxError("invalid_params", `encoding ${JSON.stringify(opts.encoding)}: want "utf8" or "buffer"`);
        }
        const params = { name: this.name };
        if (opts.follow)
            params.follow = true;
        if (bytes)
            params.encoding = "base64";
        const callbacks = { stdout: opts.onStdout, stderr: opts.onStderr };
        let thrown;
        const onOutput = (p) => {
            const fn = typeof p?.data === "string" ? callbacks[p.stream] : undefined;
            if (!fn || thrown || p.data.length === 0)
                return;
            try {
                fn(bytes ? Buffer.from(p.data, "base64") : p.data);
            }
            catch (error) {
                thrown = { error };
            }
        };
        const r = await this.#client._call("sandbox.logs", params, opts.signal, opts.follow ? onOutput : undefined);
        if (thrown)
            throw thrown.error;
        const as = (v) => {
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
    async commit(snapshot, opts = {}) {
        return toSnapshot(await this.#client._call("sandbox.commit", { name: this.name, snapshot, replace: opts.replace }));
    }
    /** Stops every process in the sandbox and removes it. */
    async destroy() {
        await this.#client._call("sandbox.destroy", { name: this.name });
    }
    async #run(method, what, opts, onSent) {
        const params = { name: this.name, ...what };
        const env = envList(opts.env);
        if (env)
            params.env = env;
        if (opts.workdir !== undefined)
            params.workdir = opts.workdir;
        if (opts.user !== undefined)
            params.user = opts.user;
        if (opts.timeoutMs !== undefined)
            params.timeoutMs = opts.timeoutMs;
        const bytes = opts.encoding === "buffer";
        if (opts.encoding !== undefined && opts.encoding !== "utf8" && !bytes) {
            throw new LightboxError("invalid_params", `encoding ${JSON.stringify(opts.encoding)}: want "utf8" or "buffer"`);
        }
        const b64 = bytes || (opts.stdin !== undefined && typeof opts.stdin !== "string");
        if (b64)
            params.encoding = "base64";
        if (typeof opts.stdin === "string")
            params.stdin = b64 ? Buffer.from(opts.stdin, "utf8").toString("base64") : opts.stdin;
        else if (opts.stdin !== undefined) {
            params.stdin = Buffer.from(opts.stdin.buffer, opts.stdin.byteOffset, opts.stdin.byteLength).toString("base64");
        }
        // The streams come as the server sent them (Buffers when base64):
        // bytes for "buffer", UTF-8 text otherwise.
        const as = (v) => (bytes ? Buffer.from(v) : typeof v === "string" ? v : v.toString("utf8"));
        // Streamed output goes to the callbacks as it comes: Buffers for
        // "buffer"; text otherwise, through a decoder per stream when it comes
        // as base64 (binary stdin), whose chunks may split a character (the
        // server's UTF-8 chunks never do).
        const callbacks = { stdout: opts.onStdout, stderr: opts.onStderr };
        const decoders = { stdout: new StringDecoder("utf8"), stderr: new StringDecoder("utf8") };
        let thrown;
        const deliver = (stream, chunk) => {
            const fn = callbacks[stream];
            if (!fn || thrown || chunk.length === 0)
                return;
            try {
                fn(chunk);
            }
            catch (error) {
                thrown = { error };
            }
        };
        let onOutput;
        if (opts.onStdout || opts.onStderr) {
            params.stream = true;
            onOutput = (p, method) => {
                if (method !== "exec.output" || typeof p?.data !== "string" || !(p.stream in decoders))
                    return;
                if (!b64)
                    deliver(p.stream, p.data);
                else if (bytes)
                    deliver(p.stream, Buffer.from(p.data, "base64"));
                else
                    deliver(p.stream, decoders[p.stream].write(Buffer.from(p.data, "base64")));
            };
        }
        const ended = () => {
            if (b64 && !bytes)
                for (const s of ["stdout", "stderr"])
                    deliver(s, decoders[s].end());
            if (thrown)
                throw thrown.error;
        };
        let r;
        try {
            r = await this.#client._call(method, params, opts.signal, onOutput, onSent);
        }
        catch (e) {
            if (!(e instanceof ExitError))
                throw e;
            ended();
            const result = { exitCode: e.exitCode, stdout: as(e.stdout), stderr: as(e.stderr) };
            throw new ExitError(e.code, e.message, result, e.signal, { cause: e.cause });
        }
        ended();
        return { exitCode: r.exitCode, stdout: as(decode(r.stdout, r.encoding)), stderr: as(decode(r.stderr, r.encoding)) };
    }
}
/** A connection to one store through one `lightbox api` process, started on
 * first use and again if it died. Safe to use from many concurrent calls. */
export class Client {
    #bin;
    #root;
    #conn;
    constructor(opts = {}) {
        this.#bin = opts.bin ?? process.env.LIGHTBOX_BIN ?? "lightbox";
        this.#root = opts.root ?? process.env.LIGHTBOX_ROOT;
    }
    /** @internal */
    _call(method, params, signal, onOutput, onSent) {
        if (!this.#conn || this.#conn.dead)
            this.#conn = new Connection(this.#bin, this.#root);
        return this.#conn.call(method, params, signal, onOutput, onSent);
    }
    /** Launches a sandbox, runs fn with it and destroys it when fn's promise
     * settles — also when fn throws or rejects; resolves to fn's value. */
    async runInSandbox(opts, fn) {
        const sb = await this.launchSandbox(opts);
        let value;
        try {
            value = await fn(sb);
        }
        catch (err) {
            await sb.destroy().catch(() => {
                // fn's error is the one to report; a sandbox that could not be
                // destroyed still goes when the api server exits.
            });
            throw err;
        }
        await sb.destroy().catch((err) => {
            if (!(err instanceof LightboxError && err.code === "not_found"))
                throw err; // fn destroyed it itself
        });
        return value;
    }
    /** Launches a sandbox and returns its handle. It is destroyed when this
     * process exits unless detached. */
    async launchSandbox(opts) {
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
    async prewarm(opts, n) {
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
    async attachSandbox(name) {
        const r = await this._call("sandbox.attach", { name });
        return new Sandbox(this, r.name);
    }
    /** Lists the store's sandboxes. */
    async listSandboxes() {
        const list = await this._call("sandbox.list");
        return list.map(toSandboxInfo);
    }
    /** Describes the sandbox of that name as listSandboxes does (a
     * LightboxError "not_found" when there is none), without attaching. */
    async inspectSandbox(name) {
        return toSandboxInfo(await this._call("sandbox.inspect", { name }));
    }
    /** Removes the sandbox of that name, any of the store's (one launched
     * here, or by another process and detached), as `lightbox rm`: a running
     * one is refused with "in_use" and left running unless opts.force, which
     * stops it first (its stop signal, SIGKILL after opts.timeoutMs). Once
     * sent it is carried out to the end. */
    async removeSandbox(name, opts = {}) {
        await this._call("sandbox.remove", { name, force: opts.force, timeoutMs: opts.timeoutMs });
    }
    /** Runs lightbox's garbage collector on the store (`lightbox gc`): removes
     * what crashed processes left (dead sandboxes, unused capped writable
     * layers and unpacked layers) and other builds' unused sandbox inits, and
     * resolves to what it removed. Running
     * and exited sandboxes are left alone. */
    async gc(opts = {}) {
        const r = await this._call("server.gc", {}, opts.signal);
        return { sandboxes: r.sandboxes ?? [], disks: r.disks ?? [], layers: r.layers ?? [], inits: r.inits ?? [] };
    }
    /** Lists the store's snapshots. */
    async listSnapshots() {
        const list = await this._call("snapshot.list");
        return list.map(toSnapshot);
    }
    /** Imports source, a path on this host (relative paths are taken from
     * this process's working directory), as snapshot name: an OCI image
     * layout directory ("dir" or "dir:tag"), an oci-archive tar ("file" or
     * "file:tag"), a `docker save` tar, a root filesystem directory or a
     * root filesystem tarball (gzip, zstd or plain). Resolves to the
     * snapshot as listSnapshots shows it. A taken name is a LightboxError
     * "exists" unless opts.replace. */
    async importSnapshot(name, source, opts = {}) {
        return toSnapshot(await this._call("snapshot.import", { name, source: resolvePath(source), format: opts.format, replace: opts.replace }));
    }
    /** Removes a snapshot and frees the layers no other snapshot uses;
     * refused ("in_use") while a sandbox, running or kept, uses it. */
    async removeSnapshot(name) {
        await this._call("snapshot.remove", { name });
    }
    /** Returns the snapshot of that name as listSnapshots shows it; a
     * LightboxError "not_found" when there is none. */
    async inspectSnapshot(name) {
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
    async buildSnapshot(opts) {
        const params = {
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
        let thrown;
        let onNote;
        if (opts.onOutput || opts.onStep) {
            params.stream = true;
            onNote = (p, method) => {
                if (thrown)
                    return;
                try {
                    if (method === "build.output" && opts.onOutput && typeof p?.data === "string" && p.data.length > 0 && (p.stream === "stdout" || p.stream === "stderr")) {
                        opts.onOutput(p.data, p.stream);
                    }
                    else if (method === "build.step" && opts.onStep) {
                        const step = { step: p.step, total: p.total, instruction: p.instruction, done: p.done === true };
                        if (step.done)
                            Object.assign(step, { cached: p.cached ?? false, durationMs: p.durationMs ?? 0, layerSize: p.layerSize ?? 0 });
                        opts.onStep(step);
                    }
                }
                catch (error) {
                    thrown = { error };
                }
            };
        }
        let r;
        try {
            r = await this._call("snapshot.build", params, opts.signal, onNote);
        }
        catch (e) {
            if (thrown)
                throw thrown.error;
            throw e;
        }
        if (thrown)
            throw thrown.error;
        return toSnapshot(r);
    }
    /** Writes the snapshot to destination, a path on this host (relative:
     * from this process's working directory), as an OCI image that
     * importSnapshot (or skopeo, podman, umoci) reads back as
     * "destination:tag". */
    async exportSnapshot(name, destination, opts = {}) {
        await this._call("snapshot.export", { name, destination: resolvePath(destination), format: opts.format, tag: opts.tag });
    }
    /** Creates the volume, or returns it as it is if it exists (quota and
     * labels apply only at creation). */
    async ensureVolume(name, opts = {}) {
        return toVolume(await this._call("volume.ensure", { name, quotaMiB: opts.quotaMib, labels: opts.labels }));
    }
    /** Lists the store's volumes, by name. */
    async listVolumes() {
        const list = await this._call("volume.list");
        return list.map(toVolume);
    }
    /** Removes a volume; refused ("in_use") while a sandbox uses it. */
    async removeVolume(name) {
        await this._call("volume.remove", { name });
    }
    /** Closes the api process's stdin: it destroys the sandboxes launched
     * through this client and not detached, and exits; resolves once it has.
     * A later call starts a new process. */
    async close() {
        const conn = this.#conn;
        this.#conn = undefined;
        await conn?.close();
    }
}
let defaultClient;
/** The Client the module-level functions use, made on first use from
 * LIGHTBOX_BIN and LIGHTBOX_ROOT. */
export function defaultLightbox() {
    defaultClient ??= new Client();
    return defaultClient;
}
/** Client.runInSandbox on the default client. */
export function runInSandbox(opts, fn) {
    return defaultLightbox().runInSandbox(opts, fn);
}
/** Client.launchSandbox on the default client. */
export function launchSandbox(opts) {
    return defaultLightbox().launchSandbox(opts);
}
/** Client.prewarm on the default client. */
export function prewarm(opts, n) {
    return defaultLightbox().prewarm(opts, n);
}
/** Client.attachSandbox on the default client. */
export function attachSandbox(name) {
    return defaultLightbox().attachSandbox(name);
}
/** Client.listSandboxes on the default client. */
export function listSandboxes() {
    return defaultLightbox().listSandboxes();
}
/** Client.inspectSandbox on the default client. */
export function inspectSandbox(name) {
    return defaultLightbox().inspectSandbox(name);
}
/** Client.removeSandbox on the default client. */
export function removeSandbox(name, opts = {}) {
    return defaultLightbox().removeSandbox(name, opts);
}
/** Client.gc on the default client. */
export function gc(opts = {}) {
    return defaultLightbox().gc(opts);
}
/** Client.listSnapshots on the default client. */
export function listSnapshots() {
    return defaultLightbox().listSnapshots();
}
/** Client.importSnapshot on the default client. */
export function importSnapshot(name, source, opts = {}) {
    return defaultLightbox().importSnapshot(name, source, opts);
}
/** Client.removeSnapshot on the default client. */
export function removeSnapshot(name) {
    return defaultLightbox().removeSnapshot(name);
}
/** Client.inspectSnapshot on the default client. */
export function inspectSnapshot(name) {
    return defaultLightbox().inspectSnapshot(name);
}
/** Client.buildSnapshot on the default client. */
export function buildSnapshot(opts) {
    return defaultLightbox().buildSnapshot(opts);
}
/** Client.exportSnapshot on the default client. */
export function exportSnapshot(name, destination, opts = {}) {
    return defaultLightbox().exportSnapshot(name, destination, opts);
}
/** Client.ensureVolume on the default client. */
export function ensureVolume(name, opts = {}) {
    return defaultLightbox().ensureVolume(name, opts);
}
/** Client.listVolumes on the default client. */
export function listVolumes() {
    return defaultLightbox().listVolumes();
}
/** Client.removeVolume on the default client. */
export function removeVolume(name) {
    return defaultLightbox().removeVolume(name);
}
