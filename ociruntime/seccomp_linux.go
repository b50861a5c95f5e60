package ociruntime

import (
	"fmt"
	"slices"

	"github.com/beamhop/lightbox/internal/sys/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// compileSeccomp compiles linux.seccomp for this machine's architecture
// with internal/sys/seccomp, the compiler of the sandbox profile too.
// Rules are tried in the config's order, the first match decides.
// Syscalls this architecture does not have are skipped (as libseccomp
// does; the names are internal/sys/seccomp's tables, generated from
// elastic/go-seccomp-bpf's); other architectures get the default
// action, and x32 calls ENOSYS. A rule
// whose args name one index more than once matches when any of them
// does (as runc reads such rules).
func compileSeccomp(s *specs.LinuxSeccomp) ([]unix.SockFilter, error) {
	if s.ListenerPath != "" {
		return nil, unsupported("listenerPath", "no seccomp user notification")
	}
	if len(s.Flags) > 0 {
		return nil, unsupported(fmt.Sprintf("flags %v", s.Flags), "")
	}
	defErrno := uint(unix.EPERM)
	if s.DefaultErrnoRet != nil {
		defErrno = *s.DefaultErrnoRet
	}
	def, err := seccompAction(s.DefaultAction, defErrno)
	if err != nil {
		return nil, fmt.Errorf("defaultAction: %w", err)
	}
	p := seccomp.Policy{Default: def, OtherArch: def, X32: seccomp.ActErrno(unix.ENOSYS)}
	for i, sc := range s.Syscalls {
		errno := uint(unix.EPERM)
		if sc.ErrnoRet != nil {
			errno = *sc.ErrnoRet
		}
		act, err := seccompAction(sc.Action, errno)
		if err != nil {
			return nil, fmt.Errorf("syscalls[%d]: %w", i, err)
		}
		conds, err := seccompConditions(sc.Args)
		if err != nil {
			return nil, fmt.Errorf("syscalls[%d]: %w", i, err)
		}
		r := seccomp.Rule{Action: act, Any: conds}
		for _, n := range sc.Names {
			if nr, ok := seccomp.SyscallNumber(n); ok && !slices.Contains(r.Syscalls, nr) {
				r.Syscalls = append(r.Syscalls, nr)
			}
		}
		if len(r.Syscalls) > 0 {
			p.Rules = append(p.Rules, r)
		}
	}
	return p.Compile()
}

// seccompConditions are the condition sets of a rule's args (any set
// matching matches): one set of all of them, or one per arg when an
// index repeats.
func seccompConditions(args []specs.LinuxSeccompArg) ([][]seccomp.Cond, error) {
	var all []seccomp.Cond
	seen := map[uint]bool{}
	repeated := false
	for _, a := range args {
		if a.Index > 5 {
			return nil, fmt.Errorf("argument index %d out of range", a.Index)
		}
		c := seccomp.Cond{Arg: uint8(a.Index), Value: a.Value}
		switch a.Op {
		case specs.OpEqualTo:
			c.Op = seccomp.OpEq
		case specs.OpNotEqual:
			c.Op = seccomp.OpNe
		case specs.OpLessThan:
			c.Op = seccomp.OpLt
		case specs.OpLessEqual:
			c.Op = seccomp.OpLe
		case specs.OpGreaterThan:
			c.Op = seccomp.OpGt
		case specs.OpGreaterEqual:
			c.Op = seccomp.OpGe
		case specs.OpMaskedEqual:
			// libseccomp's SCMP_CMP_MASKED_EQ: (arg & value) == valueTwo.
			c.Op, c.Mask, c.Value = seccomp.OpMaskedEq, a.Value, a.ValueTwo
		default:
			return nil, fmt.Errorf("unknown operator %q", a.Op)
		}
		repeated = repeated || seen[a.Index]
		seen[a.Index] = true
		all = append(all, c)
	}
	if len(all) == 0 {
		return nil, nil
	}
	if !repeated {
		return [][]seccomp.Cond{all}, nil
	}
	out := make([][]seccomp.Cond, len(all))
	for i, c := range all {
		out[i] = []seccomp.Cond{c}
	}
	return out, nil
}

func seccompAction(a specs.LinuxSeccompAction, errno uint) (seccomp.Action, error) {
	switch a {
	case specs.ActAllow:
		return seccomp.ActAllow, nil
	case specs.ActErrno:
		return seccomp.ActErrno(unix.Errno(errno & 0xffff)), nil
	case specs.ActKill, specs.ActKillThread:
		return seccomp.ActKillThread, nil
	case specs.ActKillProcess:
		return seccomp.ActKillProcess, nil
	case specs.ActTrap:
		return seccomp.ActTrap, nil
	case specs.ActTrace:
		return seccomp.ActTrace(uint16(errno)), nil
	case specs.ActLog:
		return seccomp.ActLog, nil
	case specs.ActNotify:
		return 0, unsupported("action SCMP_ACT_NOTIFY", "no seccomp user notification")
	}
	return 0, fmt.Errorf("unknown action %q", a)
}
