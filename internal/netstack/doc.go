// Package netstack gives a sandbox's private network namespace a way out:
// a user-mode network stack (pasta, from Debian's passt package, or
// slirp4netns when pasta is not installed) attached from outside to the
// sandbox's user and network namespaces, as rootless podman does. The stack owns a tap interface inside the namespace and
// turns the sandbox's packets into ordinary socket calls made by an
// unprivileged process in the caller's network namespace: outbound TCP,
// UDP and DNS work without root, and nothing in the host's network
// configuration changes.
//
// It is not the sandbox launcher: the caller (runtime) creates the
// namespaces, starts the sandbox's init, calls Attach with the init's pid
// before it lets the workload start, writes ResolvConf into the sandbox's
// /etc/resolv.conf, and counts Pids toward the sandbox's memory.
//
// # What the stack exposes
//
//   - Outbound connections leave from the caller's network namespace, so
//     they reach what the caller reaches, including services on the host's
//     own non-loopback addresses (as from any other machine on the LAN).
//   - The host's loopback is never reachable: the gateway address is not
//     mapped to the host's 127.0.0.1 (pasta --no-map-gw, slirp4netns
//     --disable-host-loopback), and no port bound on the host is forwarded
//     into the namespace (pasta -T none -U none).
//   - Only the ports in Options.Ports are published, on 127.0.0.1 unless a
//     Port names another host address; nothing bound inside the sandbox is
//     forwarded automatically (pasta -t none -u none otherwise).
//   - DNS: the sandbox's resolv.conf names the stack's forwarder
//     (DNSForwarder for pasta, 10.0.2.3 for slirp4netns), which relays
//     queries to the first nameserver of the host's /etc/resolv.conf, even
//     one on the host's loopback such as systemd-resolved's 127.0.0.53 —
//     which the sandbox itself could never reach.
//
// # Lifetime
//
// The stack must live and die with the sandbox, even when the launching
// process is killed with SIGKILL. Pasta as packaged in Debian 12 does not
// quit when the process it was attached to by pid exits, and a watcher
// process could itself be killed. So the helper is started inside the
// sandbox's own user and pid namespaces (through nsenter, since a Go
// process cannot join a user namespace), while staying in the caller's
// network and mount namespaces: when the sandbox's init (pid 1 of that pid
// namespace) dies for any reason, the kernel kills the helper with it.
// After it daemonizes the helper is a child of the sandbox's init, which
// must reap it like any orphan, and which must not wait for it to exit
// before tearing the sandbox down.
//
// The helper is therefore visible inside the sandbox (ps shows "pasta").
// A workload can kill it, which only cuts its own network; it cannot
// ptrace it or read its memory as long as it lacks CAP_SYS_ADMIN and
// CAP_SYS_PTRACE (pasta keeps CAP_SYS_ADMIN in the sandbox's user
// namespace, slirp4netns keeps all its capabilities there, and the kernel
// refuses ptrace to a process whose permitted capabilities are not a
// subset of the tracer's), which is the default capability set of a
// sandbox. This is why slirp4netns runs without --enable-sandbox.
//
// slirp4netns does not daemonize: nsenter stays its parent (and a Pid of
// the Stack) until it exits, and the process that called Attach reaps it.
//
// Attach costs about 100-150 ms with pasta (its own start-up), so a
// launcher should run it while it prepares the sandbox's mounts, and only
// hold the workload back until it returns.
//
// # Requirements
//
// Check tells whether private networking can work here: pasta (or
// slirp4netns) and nsenter in PATH, and /dev/net/tun openable by the user the helper runs as (an
// unprivileged user needs the device to be mode 0666; some distributions
// ship it 0600). When something is missing, Check and Attach fail with an
// error matching ErrUnavailable whose text names the cause and the fix;
// there is never a silent fallback to the host's network.
package netstack
