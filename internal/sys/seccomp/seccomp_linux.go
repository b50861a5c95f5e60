package seccomp

import (
	"fmt"

	"golang.org/x/sys/unix"
)

const (
	offNr   = 0 // struct seccomp_data: int nr
	offArch = 4 // __u32 arch
	retDeny = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
)

func stmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }

func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

// Program returns the profile for this architecture.
func Program() ([]unix.SockFilter, error) {
	if auditArch == 0 {
		return nil, ErrUnsupported
	}
	list := append(append([]uint32{}, denied...), archDenied...)
	var p []unix.SockFilter
	// Another ABI (i386 on amd64): deny everything.
	p = append(p,
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offArch),
		jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, auditArch, 1, 0),
		stmt(unix.BPF_RET|unix.BPF_K, retDeny),
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offNr),
	)
	if x32Bit != 0 {
		// The x32 ABI shares the arch and sets a bit in the number.
		p = append(p,
			jump(unix.BPF_JMP|unix.BPF_JGE|unix.BPF_K, x32Bit, 0, 1),
			stmt(unix.BPF_RET|unix.BPF_K, retDeny),
		)
	}
	// One comparison per denied number; a match jumps to the deny at the
	// end (jump offsets count the instructions skipped).
	for i, nr := range list {
		p = append(p, jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, nr, uint8(len(list)-i), 0))
	}
	p = append(p,
		stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_ALLOW),
		stmt(unix.BPF_RET|unix.BPF_K, retDeny),
	)
	return p, nil
}

// Load installs the profile on the calling thread (and so on every child
// it forks from now on). The thread must have no_new_privs set, or
// CAP_SYS_ADMIN.
func Load() error {
	p, err := Program()
	if err != nil {
		return err
	}
	if err := load(p); err != nil {
		return fmt.Errorf("load seccomp profile: %w", err)
	}
	return nil
}
