//go:build linux

package seccomp

// The hand assembler the sandbox profile was built with before Policy,
// kept here only to show the compiled profile is the same filter.

import (
	"fmt"

	"golang.org/x/sys/unix"
)

const (
	legOffNr   = 0  // struct seccomp_data: int nr
	legOffArch = 4  // __u32 arch
	legOffArg0 = 16 // __u64 args[0]: its low 32 bits (little-endian)

	retAllow  = unix.SECCOMP_RET_ALLOW
	retDeny   = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	retNoSys  = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	afVsock   = unix.AF_VSOCK
	cloneUser = unix.CLONE_NEWUSER
)

// asm builds a classic BPF program whose jumps go to named labels; end
// resolves them (offsets count the instructions skipped, at most 255).
type legacyAsm struct {
	p      []unix.SockFilter
	labels map[string]int
	jumps  []legacyFixup
}

type legacyFixup struct {
	at     int
	jt, jf string // "" = the next instruction
}

func (a *legacyAsm) stmt(code uint16, k uint32) {
	a.p = append(a.p, unix.SockFilter{Code: code, K: k})
}

func (a *legacyAsm) load(off uint32) { a.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, off) }

func (a *legacyAsm) ret(k uint32) { a.stmt(unix.BPF_RET|unix.BPF_K, k) }

// jump is a conditional jump (BPF_JEQ, BPF_JGE, BPF_JSET) against k.
func (a *legacyAsm) jump(op uint16, k uint32, jt, jf string) {
	a.jumps = append(a.jumps, legacyFixup{at: len(a.p), jt: jt, jf: jf})
	a.stmt(unix.BPF_JMP|op|unix.BPF_K, k)
}

func (a *legacyAsm) label(name string) { a.labels[name] = len(a.p) }

func (a *legacyAsm) end() ([]unix.SockFilter, error) {
	off := func(at int, l string) (uint8, error) {
		if l == "" {
			return 0, nil
		}
		to, ok := a.labels[l]
		if !ok || to <= at || to-at-1 > 255 {
			return 0, fmt.Errorf("seccomp profile: jump from %d to %q (%d) out of range", at, l, to)
		}
		return uint8(to - at - 1), nil
	}
	for _, f := range a.jumps {
		jt, err := off(f.at, f.jt)
		if err != nil {
			return nil, err
		}
		jf, err := off(f.at, f.jf)
		if err != nil {
			return nil, err
		}
		a.p[f.at].Jt, a.p[f.at].Jf = jt, jf
	}
	return a.p, nil
}

// legacyProgram returns the profile for this architecture.
func legacyProgram(opts Options) ([]unix.SockFilter, error) {
	if auditArch == 0 {
		return nil, ErrUnsupported
	}
	a := &legacyAsm{labels: map[string]int{}}
	// Another ABI (i386 on amd64): deny everything.
	a.load(legOffArch)
	a.jump(unix.BPF_JEQ, auditArch, "", "deny")
	a.load(legOffNr)
	if x32Bit != 0 {
		// The x32 ABI shares the arch and sets a bit in the number.
		a.jump(unix.BPF_JGE, x32Bit, "deny", "")
	}
	for _, nr := range denied {
		a.jump(unix.BPF_JEQ, nr, "deny", "")
	}
	for _, nr := range archDenied {
		a.jump(unix.BPF_JEQ, nr, "deny", "")
	}
	a.jump(unix.BPF_JEQ, unix.SYS_SOCKET, "socket", "")
	if !opts.AllowUserNamespaces {
		// clone3 passes its flags in memory, out of a filter's reach:
		// ENOSYS makes libcs fall back to clone, whose flags are checked.
		a.jump(unix.BPF_JEQ, unix.SYS_CLONE3, "nosys", "")
		a.jump(unix.BPF_JEQ, unix.SYS_CLONE, "nsflags", "")
		a.jump(unix.BPF_JEQ, unix.SYS_UNSHARE, "nsflags", "")
	}
	a.ret(retAllow)

	a.label("socket") // socket(AF_VSOCK, …): the host's VMs, outside any netns
	a.load(legOffArg0)
	a.jump(unix.BPF_JEQ, afVsock, "deny", "allow")
	if !opts.AllowUserNamespaces {
		a.label("nsflags") // clone and unshare take their flags first (not on s390)
		a.load(legOffArg0)
		a.jump(unix.BPF_JSET, cloneUser, "deny", "allow")
		a.label("nosys")
		a.ret(retNoSys)
	}
	a.label("allow")
	a.ret(retAllow)
	a.label("deny")
	a.ret(retDeny)
	return a.end()
}
