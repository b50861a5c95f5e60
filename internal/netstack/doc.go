// Package netstack gives a sandbox's private network namespace a way out:
// a user-mode network stack (slirp4netns, or pasta from Debian's passt
// package when slirp4netns is not installed or when asked for) attached
// from outside to the sandbox's user and network namespaces, as rootless
// podman does. The stack owns a tap interface inside the namespace and
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
//   - UDP through a published port: datagrams reach the sandbox, but its
//     replies to a sender on the host's loopback are lost with both
//     stacks as Debian 12 ships them (libslirp does not map a reply to
//     the gateway back to 127.0.0.1 under --disable-host-loopback; this
//     pasta loses the spliced reply). slirp4netns replies to senders on
//     other addresses; pasta under --no-map-gw not even to the host's own.
//   - DNS: the sandbox's resolv.conf names the stack's forwarder
//     (DNSForwarder for pasta, 10.0.2.3 for slirp4netns), which relays
//     queries to the first nameserver of the host's /etc/resolv.conf, even
//     one on the host's loopback such as systemd-resolved's 127.0.0.53 —
//     which the sandbox itself could never reach. The search domains and
//     options of the host's resolv.conf are kept (as docker and podman
//     keep them): a short name the host resolves resolves inside too.
//
// # Lifetime, and who the helper runs as
//
// The stack must live and die with the sandbox, even when the launching
// process is killed with SIGKILL, and the workload must not be able to
// see or signal it. Both stacks are started the same way: nsenter joins
// the sandbox's user namespace (only that: the helper needs
// CAP_SYS_ADMIN there to enter the sandbox's network namespace) and the
// helper stays in the caller's pid, network and mount namespaces. Neither
// it nor anything that keeps it is in the sandbox's pid namespace, so the
// workload can name none of them: no pid to signal, ptrace or open in its
// /proc. Killing a helper from the host only cuts the sandbox's network.
//
// slirp4netns (the default: bench/NOTES.md, "The network stacks") needs
// no keeper: nsenter execs it, a child of the caller that does not
// daemonize, and it exits when its --exit-fd hangs up (POLLHUP, the only
// event it waits for): Options.Exit, a pipe whose only write end the
// sandbox's init holds, hangs up at the init's exit. A pidfd of the init,
// the fallback without one, hangs up only once the init is reaped, which
// an orphaned init (a detached sandbox's) waits for from the host's pid 1
// or a subreaper: it held the published ports meanwhile, for ever under
// one that does not reap. Its published ports are added through its API socket, in a 0700
// directory of its own that is removed once they are.
//
// Pasta as packaged in Debian 12 does not quit when the process it was
// attached to exits, and it daemonizes, so it is started under a keeper:
// nsenter runs this binary in KeeperRole, which starts itself again as
// pid 1 of a new pid namespace (a child of the caller's): the keeper. The
// keeper turns off IPv6 duplicate address detection in the sandbox's
// network namespace (so that pasta learns the sandbox's link-local address
// from its first frame: see noDAD), starts pasta, waits until pasta's
// parent exits (pasta has then
// bound the published ports and configured the interface, the readiness
// Attach waits for), drops its own ids and capabilities, and stays until
// the sandbox's init exits (it polls a pidfd of it) or pasta does. When
// the keeper exits for any reason, the kernel kills pasta with its pid
// namespace.
//
// The helper runs as the sandbox's root as the host maps it (the caller's
// user rootless, the store's range id as root), except when that is the
// host's root (a store that maps ids to themselves): then as the ids that
// map to the host's nobody (65534), with the capabilities it needs in the
// sandbox's user namespace only (ambient capabilities set by pasta's
// keeper, or by setpriv for slirp4netns), so that no process of the
// stack runs as uid 0 on the host. Attach refuses such a sandbox when
// nobody is not mapped in it. As the sandbox's root, slirp4netns also
// confines itself before it reads a packet (--enable-sandbox: an empty
// root and no capability; --enable-seccomp); as nobody it cannot (its
// sandbox needs to become root of the namespace first) and owns nothing
// on the host. Pasta confines itself and makes itself undumpable.
//
// Attach costs about 100-150 ms with pasta (its own start-up), so a
// launcher should run it while it prepares the sandbox's mounts, and only
// hold the workload back until it returns.
//
// # Requirements
//
// Check tells whether private networking can work here: slirp4netns (or
// pasta) and nsenter in PATH (and setpriv, from the same util-linux, for a
// store that maps ids to themselves), and /dev/net/tun openable by the user the helper runs as (an
// unprivileged user needs the device to be mode 0666; some distributions
// ship it 0600). When something is missing, Check and Attach fail with an
// error matching ErrUnavailable whose text names the cause and the fix;
// there is never a silent fallback to the host's network.
package netstack
