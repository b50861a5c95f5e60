// Package seccomp compiles seccomp filters to classic BPF (no
// libseccomp, no cgo) and holds the default profile of sandbox workloads.
//
// A Policy is a list of Rules tried in order, the first match deciding
// its Action, and a Default; a Rule names calls by number and may test
// their arguments (unsigned 64-bit or C int comparisons, libseccomp's
// operators). Policy.Compile lays the program out with short jumps only
// and encodes it with golang.org/x/net/bpf's assembler (a small pure-Go
// package with no tables or init work, so the lean init can compile its
// profile itself). It serves two callers: Profile, the sandbox profile
// below, which nsinit compiles and loads on its spawner thread (whose
// children, every workload, inherit it; the init's other threads do not
// have it), and ociruntime, which compiles a config.json's linux.seccomp
// on the host side.
//
// # What it refuses
//
// The profile is a deny list: everything else is allowed, and
// capabilities (podman's default set, no CAP_SYS_ADMIN), no_new_privs and
// the sandbox's namespaces confine the rest. Refused, with EPERM unless
// said otherwise:
//
//   - other ABIs: every i386 and x32 call on amd64 (a filter keyed on
//     syscall numbers must not be bypassed through another table);
//   - kernel modules and kexec: init_module, finit_module, delete_module,
//     kexec_load, kexec_file_load, and on amd64 create_module,
//     get_kernel_syms, query_module;
//   - keyrings (not namespaced): add_key, keyctl, request_key;
//   - bpf, perf_event_open, userfaultfd, io_uring_setup, io_uring_enter,
//     io_uring_register (operations on a ring bypass this very filter);
//   - open_by_handle_at and name_to_handle_at (the "shocker" escape);
//   - the clock, accounting, quotas, swap, reboot and the kernel log:
//     clock_settime, clock_adjtime, settimeofday, acct, quotactl,
//     quotactl_fd, swapon, swapoff, reboot, syslog, lookup_dcookie,
//     nfsservctl, and on amd64 ioperm, iopl, sysfs, _sysctl, uselib,
//     ustat;
//   - socket(AF_VSOCK): vsock reaches the host's virtual machines and is
//     not confined by a network namespace;
//   - new user namespaces, unless Options.AllowUserNamespaces: clone and
//     unshare with CLONE_NEWUSER; clone3 fails with ENOSYS, because its
//     flags live in memory a filter cannot read, and glibc's
//     posix_spawn and pthread_create then fall back to clone, whose flags
//     are checked (musl and Go use clone). In a user namespace of its own a process
//     holds every capability, and with them the code behind new mount,
//     network, ipc and other namespaces; a workload that needs one (a
//     rootless container engine inside) asks for it.
//
// # Compared with docker's default profile
//
// Call by call against moby's profiles/seccomp/default.json (read at
// moby/moby 00f3d189e420), for a container with docker's default
// capabilities. That profile is an allow list (anything unlisted is
// EPERM); this one is a deny list. They agree on every call above but
// the ones listed here.
//
// Refused here, allowed by docker:
//
//   - i386 and x32: docker allows them with the same list of names.
//     Nothing a sandbox runs needs them, and every second table is one
//     more place for a filter to miss a number.
//   - io_uring_*: allowed by docker at that commit; refused here because
//     a ring performs operations no filter sees, and it has been a steady
//     source of kernel bugs.
//   - name_to_handle_at: docker allows it; it is useless without
//     open_by_handle_at, which both refuse.
//   - clock_adjtime: docker allows it (the kernel checks CAP_SYS_TIME for
//     changes); refused here with the other clock calls.
//
// Allowed here, refused by docker (unless the container has the
// capability named), each confined by the kernel's own checks:
//
//   - mount, umount, umount2, pivot_root, fsopen, fsconfig, fsmount,
//     fspick, move_mount, open_tree, mount_setattr, sethostname,
//     setdomainname, setns, unshare and clone with namespace flags other
//     than CLONE_NEWUSER (docker: CAP_SYS_ADMIN): every one needs
//     CAP_SYS_ADMIN over the namespace it acts on, which workloads do not
//     have; unshare of CLONE_FILES, CLONE_FS or CLONE_SYSVSEM needs
//     nothing and is harmless. With AllowUserNamespaces, a workload acts
//     only on namespaces it made, where the kernel locks every mount it
//     inherited (the read-only and masked /proc and /sys stay so) and
//     refuses a fresh proc or sysfs.
//   - kcmp, pidfd_getfd, process_madvise (docker: CAP_SYS_PTRACE):
//     ptrace access checks, which confine them to the workload's own,
//     dumpable processes of the same user; PID 1 is not dumpable. ptrace,
//     process_vm_readv and process_vm_writev are allowed by both.
//   - fanotify_init (docker: CAP_SYS_ADMIN): without it the kernel grants
//     only the unprivileged mode (no permission events, no mount marks).
//   - vhangup (docker: CAP_SYS_TTY_CONFIG): the kernel checks that
//     capability itself.
//   - get_mempolicy, mbind, set_mempolicy, set_mempolicy_home_node,
//     migrate_pages, move_pages (docker: CAP_SYS_NICE or unlisted): NUMA
//     placement of the caller's own memory; moving other processes' pages
//     needs CAP_SYS_NICE, which workloads do not have.
//   - personality with any argument (docker: only 0, PER_LINUX32,
//     UNAME26 and the query): the persona applies to the caller only, and
//     no_new_privs rules out a setuid exec that would inherit it.
//   - calls newer than docker's list (docker refuses what it does not
//     name, and names new calls one release at a time): fchmodat2,
//     futex_wait/wake/requeue, cachestat, map_shadow_stack, mseal,
//     statmount, listmount, lsm_*, the *xattrat family and later ones. A
//     deny list lets a workload's libc use them at once; the price is that
//     a new call with kernel-wide reach must be added here when it lands.
//
// Rules by argument: docker refuses socket(AF_VSOCK) and clone with any
// namespace flag; this profile refuses socket(AF_VSOCK) and clone or
// unshare with CLONE_NEWUSER (the other flags need CAP_SYS_ADMIN, see
// above). Both answer clone3 with ENOSYS. Both answer refused calls with
// EPERM.
//
// This package is not a general seccomp library: it names no calls
// (callers bring numbers; ociruntime maps config.json's names), covers
// the native ABI of amd64 and arm64 only, and has no user notification.
package seccomp
