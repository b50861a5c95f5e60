package ociruntime

import (
	"errors"
	"fmt"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// compileSeccomp compiles linux.seccomp for this machine's architecture
// with elastic/go-seccomp-bpf. Rules are tried in the config's order, the
// first match decides. Syscalls this architecture does not have are
// skipped (as libseccomp does); other architectures get the default
// action, and x32 calls ENOSYS.
func compileSeccomp(s *specs.LinuxSeccomp) ([]unix.SockFilter, error) {
	if s.ListenerPath != "" {
		return nil, unsupported("listenerPath", "no seccomp user notification")
	}
	if len(s.Flags) > 0 {
		return nil, unsupported(fmt.Sprintf("flags %v", s.Flags), "")
	}
	info, err := arch.GetInfo("")
	if err != nil {
		return nil, err
	}
	defErrno := uint(unix.EPERM)
	if s.DefaultErrnoRet != nil {
		defErrno = *s.DefaultErrnoRet
	}
	def, err := seccompAction(s.DefaultAction, defErrno)
	if err != nil {
		return nil, fmt.Errorf("defaultAction: %w", err)
	}
	// The library accepts only a bare action as the default (no errno
	// data): assemble with an action no rule uses and patch its returns.
	sentinel := seccomp.Action(0)
	used := map[seccomp.Action]bool{}
	for _, sc := range s.Syscalls {
		a, _ := seccompAction(sc.Action, 0)
		used[a] = true
	}
	for _, a := range []seccomp.Action{seccomp.ActionTrace, seccomp.ActionTrap, seccomp.ActionLog, seccomp.ActionKillProcess, seccomp.ActionKillThread} {
		if !used[a] && a != def {
			sentinel = a
			break
		}
	}
	pol := seccomp.Policy{DefaultAction: sentinel}
	for i, sc := range s.Syscalls {
		errno := uint(unix.EPERM)
		if sc.ErrnoRet != nil {
			errno = *sc.ErrnoRet
		}
		act, err := seccompAction(sc.Action, errno)
		if err != nil {
			return nil, fmt.Errorf("syscalls[%d]: %w", i, err)
		}
		var conds seccomp.ArgumentConditions
		for _, a := range sc.Args {
			c := seccomp.Condition{Argument: uint32(a.Index), Value: a.Value}
			switch a.Op {
			case specs.OpEqualTo:
				c.Operation = seccomp.Equal
			case specs.OpNotEqual:
				c.Operation = seccomp.NotEqual
			case specs.OpLessThan:
				c.Operation = seccomp.LessThan
			case specs.OpLessEqual:
				c.Operation = seccomp.LessOrEqual
			case specs.OpGreaterThan:
				c.Operation = seccomp.GreaterThan
			case specs.OpGreaterEqual:
				c.Operation = seccomp.GreaterOrEqual
			case specs.OpMaskedEqual:
				switch {
				case a.ValueTwo == 0:
					c.Operation = seccomp.BitsNotSet // (arg & mask) == 0
				case a.ValueTwo == a.Value:
					c.Operation = seccomp.BitsSet // (arg & mask) == mask
				default:
					return nil, unsupported(fmt.Sprintf("syscalls[%d]: SCMP_CMP_MASKED_EQ with value %#x and valueTwo %#x", i, a.Value, a.ValueTwo), "only valueTwo 0 or equal to value")
				}
			default:
				return nil, fmt.Errorf("syscalls[%d]: unknown operator %q", i, a.Op)
			}
			conds = append(conds, c)
		}
		g := seccomp.SyscallGroup{Action: act}
		for _, n := range sc.Names {
			if _, ok := info.SyscallNames[n]; !ok {
				continue
			}
			if len(conds) == 0 {
				g.Names = append(g.Names, n)
			} else {
				g.NamesWithCondtions = append(g.NamesWithCondtions, seccomp.NameWithConditions{Name: n, Conditions: conds})
			}
		}
		if len(g.Names)+len(g.NamesWithCondtions) > 0 {
			pol.Syscalls = append(pol.Syscalls, g)
		}
	}
	if len(pol.Syscalls) == 0 {
		// The library wants one rule: one that does what the default does.
		pol.Syscalls = []seccomp.SyscallGroup{{Names: []string{"getpid"}, Action: sentinel}}
	}
	insts, err := pol.Assemble()
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(insts)
	if err != nil {
		return nil, err
	}
	if len(raw) > 0xffff {
		return nil, errors.New("filter too long")
	}
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		if r.Op == unix.BPF_RET|unix.BPF_K && r.K == uint32(sentinel) {
			r.K = uint32(def)
		}
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out, nil
}

func seccompAction(a specs.LinuxSeccompAction, errno uint) (seccomp.Action, error) {
	switch a {
	case specs.ActAllow:
		return seccomp.ActionAllow, nil
	case specs.ActErrno:
		return seccomp.ActionErrno | seccomp.Action(errno&0xffff), nil
	case specs.ActKill, specs.ActKillThread:
		return seccomp.ActionKillThread, nil
	case specs.ActKillProcess:
		return seccomp.ActionKillProcess, nil
	case specs.ActTrap:
		return seccomp.ActionTrap, nil
	case specs.ActTrace:
		return seccomp.ActionTrace | seccomp.Action(errno&0xffff), nil
	case specs.ActLog:
		return seccomp.ActionLog, nil
	case specs.ActNotify:
		return 0, unsupported("action SCMP_ACT_NOTIFY", "no seccomp user notification")
	}
	return 0, fmt.Errorf("unknown action %q", a)
}
