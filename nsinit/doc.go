// Package nsinit is the code that runs inside a sandbox's namespaces: it is
// PID 1 of every sandbox. The runtime re-executes the binary in the "init"
// role in new user, mount, pid, uts, ipc, cgroup (and network) namespaces;
// Main then
//
//   - reads the launch Config (JSON, versioned) from a pipe,
//   - mounts the root (an overlay described by package overlay, carried out
//     here with fsopen/fsconfig so any number of layers fits), /proc (with
//     runc's read-only and masked kernel paths, procfs_linux.go), /dev,
//     /sys read-only, the state dir's /etc/hostname, /etc/hosts and
//     /etc/resolv.conf, and the caller's bind mounts (always nosuid and
//     nodev) with their targets resolved inside the root (openat2
//     RESOLVE_IN_ROOT), then pivot_roots and detaches the host's tree; as
//     real root the runtime opens the layers and makes the binds
//     (idmapped for a store with a private range) and passes them as
//     descriptors (see "Descriptors from the host side" in proto.go),
//     closed before any workload starts,
//   - reports ReportReady, or ReportError with the real cause of a
//     failure, on the report pipe (the sequence and the one codec of every
//     message are in proto.go and codec.go),
//   - and serves Requests on a unix socket (SOCK_SEQPACKET, one JSON
//     message per packet, stdio fds as SCM_RIGHTS): exec, signal, wait,
//     detach, destroy.
//
// Workloads are forked from one locked "spawner" thread that has set
// no_new_privs, dropped to podman's default capability set and loaded the
// seccomp profile of internal/sys/seccomp (refusing new user namespaces
// unless Config.AllowUserNamespaces); each runs in its own session,
// never on the caller's terminal. One SIGCHLD reaper hands exit statuses to waiters by pid
// (and reaps orphans). PID 1 itself is not dumpable, and holds no fd into
// the host's tree: the liveness pipe, the socket and the lock files only,
// plus, for a handover, an O_PATH descriptor of its own program (on a
// read-only mount) and the workloads' cgroup's tasks file.
//
// Handover: once the sandbox is idle after its launch (one second after
// its last connection, or two after the launch; a sandbox waiting in a
// warm pool, Config.Pooled, only once it served one), and again after
// serving once idle for ten seconds, PID 1 executes its own program again
// (execveat of that descriptor) and the new process takes the sandbox
// over from a small state passed in a memfd, with the listener, lock,
// liveness pipe, leases and log relays kept open across the exec; a fresh
// Go heap holds only what the server needs (handover_linux.go).
//
// Lifetime: the init watches the liveness pipe from its launcher and tears
// the sandbox down on EOF unless told to detach. With a main command the
// sandbox lives as long as that command: its status is written into the
// sandbox's lock file (an fd the init holds; no host directory is needed)
// and the init exits, taking every process of the sandbox with it.
//
// This package imports only the standard library, x/sys and internal
// packages, so what runs inside a sandbox stays small and auditable.
package nsinit
