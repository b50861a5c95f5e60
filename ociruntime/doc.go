// Package ociruntime is lightbox's OCI runtime face: what the binary does
// when invoked as lightbox-runc, so that containerd's runc shim
// (io.containerd.runc.v2 with BinaryName), Kubernetes through a
// RuntimeClass, podman and CRI-O (--runtime) run their containers in
// lightbox's init. It speaks runc's command line (create, start, state,
// kill, delete, exec, ps, run, pause, resume, update, events, features,
// spec) over runtime-spec bundles.
//
// Why a package of its own: a bundle is not a snapshot and a container is
// not a sandbox. The engine prepares the root filesystem and every mount,
// names the container, owns its lifecycle and reaps its process; lightbox
// only carries the bundle's config.json out. So this package neither uses
// the snapshot or volume stores nor the runtime package's names, state
// dirs and overlay roots. It translates config.json
// (github.com/opencontainers/runtime-spec/specs-go) into nsinit's launch
// spec (nsinit.OCIConfig): the same init, mount code (targets resolved
// inside the root with openat2), pivot and pty handling lightbox's own
// sandboxes use. It imports nsinit's message types and internal/ only, as
// DESIGN.md allows runtime to, and two libraries: containerd/cgroups/v3
// (the cgroup code runtime uses, here driven by the spec's
// LinuxResources: limits, update, freezer, stats). linux.seccomp is
// compiled here, by internal/sys/seccomp, the compiler of the sandbox
// profile too, with its syscall name tables (generated from
// elastic/go-seccomp-bpf's); nsinit only loads the program.
//
// # Vocabulary and lifecycle
//
// A container is a directory --root/<id> holding state.json, the exec
// FIFO and the init's exec socket. create starts the init (re-executed
// binary, role "init") in the config's namespaces, in its cgroup before
// it runs anything; the init mounts and pivots, then holds before the
// user's program, blocked opening the FIFO. The container is "created";
// start opens the FIFO, the init starts the process with its credentials
// ("running") and exits with its status when it ends ("stopped"). The pid
// of the container (state, --pid-file) is the init's: it is the process
// the engine's reaper sees exit, with the program's status. The init is
// PID 1 of the container's pid namespace and the program its child, PID
// 2, to which it forwards every signal it gets: unlike under runc, where
// the program is PID 1, a signal it has no handler for is not dropped
// (README, "Where it differs from runc"). exec asks the init, over its
// socket, to start another process in the container; a detached exec
// leaves a small relay process whose pid and exit status stand for the
// exec'd process's. When the program ends, the init kills the
// container's other processes, as the kernel would at its exit, and
// exits once each exec has its process's status: its own, or 137 for one
// still running then. delete removes the directory and the
// cgroup; after a kill -9 at any step, delete --force cleans what is left
// (the init dies with its pid namespace, its mounts with its mount
// namespace).
//
// What it refuses, with the field named: AppArmor and SELinux labels,
// joining a user or mount namespace by path, a new time namespace,
// createContainer and startContainer hooks, seccomp listeners, Intel RDT,
// personality, I/O priority, scheduler and CPU affinity of the process,
// systemd cgroup paths, and (as runc does) a sysctl the container does not
// own: one not per namespace, or of a namespace that is the host's.
//
// Linux only: off Linux the package is empty (an OCI runtime runs its
// containers on the host kernel; cmd/lightbox's lightbox-runc says so).
package ociruntime
