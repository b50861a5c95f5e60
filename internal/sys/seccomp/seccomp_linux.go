package seccomp

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Profile is the sandbox profile (see the package doc) as a Policy.
func Profile(opts Options) Policy {
	deny := ActErrno(unix.EPERM)
	p := Policy{
		Default:   ActAllow,
		OtherArch: deny,
		X32:       deny,
		Rules: []Rule{
			{Syscalls: append(append([]uint32(nil), denied...), archDenied...), Action: deny},
			// socket(AF_VSOCK, …): the host's VMs, outside any netns.
			{Syscalls: []uint32{unix.SYS_SOCKET}, Action: deny, Any: [][]Cond{{{Arg: 0, Op: OpEq, Value: unix.AF_VSOCK, Int: true}}}},
		},
	}
	if !opts.AllowUserNamespaces {
		p.Rules = append(p.Rules,
			// clone3 passes its flags in memory, out of a filter's reach:
			// ENOSYS makes libcs fall back to clone, whose flags are checked.
			Rule{Syscalls: []uint32{unix.SYS_CLONE3}, Action: ActErrno(unix.ENOSYS)},
			// clone and unshare take their flags first (not on s390).
			Rule{Syscalls: []uint32{unix.SYS_CLONE, unix.SYS_UNSHARE}, Action: deny,
				Any: [][]Cond{{{Arg: 0, Op: OpMaskedEq, Mask: unix.CLONE_NEWUSER, Value: unix.CLONE_NEWUSER, Int: true}}}},
		)
	}
	return p
}

// Program returns the sandbox profile compiled for this architecture.
func Program(opts Options) ([]unix.SockFilter, error) {
	return Profile(opts).Compile()
}

// Load installs the sandbox profile on the calling thread (and so on
// every child it forks from now on). The thread must have no_new_privs
// set, or CAP_SYS_ADMIN.
func Load(opts Options) error {
	p, err := Program(opts)
	if err != nil {
		return err
	}
	if err := LoadProgram(p); err != nil {
		return fmt.Errorf("load seccomp profile: %w", err)
	}
	return nil
}
