//go:build linux

package ociruntime

// The compiler of linux.seccomp before internal/sys/seccomp compiled it,
// kept only to show the new one answers every call as it did.

import (
	"errors"
	"fmt"
	"slices"

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
// action, and x32 calls ENOSYS. A rule whose args name one index more
// than once matches when any of them does (as runc reads such rules).
//
// The library compiles each rule on its own, and this function joins
// them: its checks of arguments leave an argument, not the syscall
// number, in the accumulator when they fail, so the number is loaded
// again before the next rule (one syscall per rule with arguments).
func legacyCompileSeccomp(s *specs.LinuxSeccomp) ([]unix.SockFilter, error) {
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
	def, err := legacySeccompAction(s.DefaultAction, defErrno)
	if err != nil {
		return nil, fmt.Errorf("defaultAction: %w", err)
	}
	loadNr := bpf.LoadAbsolute{Off: 0, Size: 4} // seccomp_data.nr
	var body []bpf.Instruction
	for i, sc := range s.Syscalls {
		errno := uint(unix.EPERM)
		if sc.ErrnoRet != nil {
			errno = *sc.ErrnoRet
		}
		act, err := legacySeccompAction(sc.Action, errno)
		if err != nil {
			return nil, fmt.Errorf("syscalls[%d]: %w", i, err)
		}
		conds, err := legacySeccompConditions(sc.Args)
		if err != nil {
			return nil, fmt.Errorf("syscalls[%d]: %w", i, err)
		}
		var groups []seccomp.SyscallGroup
		var plain []string
		for _, n := range sc.Names {
			if _, ok := info.SyscallNames[n]; !ok || slices.Contains(plain, n) {
				continue
			}
			if len(conds) == 0 {
				plain = append(plain, n)
				continue
			}
			g := seccomp.SyscallGroup{Action: act}
			for _, c := range conds {
				g.NamesWithCondtions = append(g.NamesWithCondtions, seccomp.NameWithConditions{Name: n, Conditions: c})
			}
			groups = append(groups, g)
		}
		if len(plain) > 0 {
			groups = append(groups, seccomp.SyscallGroup{Action: act, Names: plain})
		}
		for _, g := range groups {
			insts, err := legacyRuleBody(g)
			if err != nil {
				return nil, fmt.Errorf("syscalls[%d]: %w", i, err)
			}
			body = append(body, insts...)
			body = append(body, loadNr) // where the rule's no-match jumps land
		}
	}
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(info.ID), SkipTrue: 1},
		bpf.Jump{}, // to the default action: Skip set below
		loadNr,
	}
	if info.ID == arch.X86_64.ID {
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: uint32(arch.X32.SeccompMask), SkipFalse: 1},
			bpf.RetConstant{Val: uint32(seccomp.ActionErrno) | uint32(unix.ENOSYS)})
	}
	prog = append(prog, body...)
	prog[2] = bpf.Jump{Skip: uint32(len(prog) - 3)}
	prog = append(prog, bpf.RetConstant{Val: uint32(def)})
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, err
	}
	if len(raw) > 0xffff {
		return nil, errors.New("filter too long")
	}
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out, nil
}

// seccompConditions are the condition sets of a rule's args (any set
// matching matches): one set of all of them, or one per arg when an
// index repeats.
func legacySeccompConditions(args []specs.LinuxSeccompArg) ([]seccomp.ArgumentConditions, error) {
	var all seccomp.ArgumentConditions
	seen := map[uint]bool{}
	repeated := false
	for _, a := range args {
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
				return nil, unsupported(fmt.Sprintf("SCMP_CMP_MASKED_EQ with value %#x and valueTwo %#x", a.Value, a.ValueTwo), "only valueTwo 0 or equal to value")
			}
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
		return []seccomp.ArgumentConditions{all}, nil
	}
	out := make([]seccomp.ArgumentConditions, len(all))
	for i, c := range all {
		out[i] = seccomp.ArgumentConditions{c}
	}
	return out, nil
}

// ruleBody is the library's code for one rule: its policy's program
// without the header (arch check, syscall number load, x32 check) and
// without the final return of the default action, so that a no-match
// jumps just past the body.
func legacyRuleBody(g seccomp.SyscallGroup) ([]bpf.Instruction, error) {
	pol := seccomp.Policy{DefaultAction: seccomp.ActionAllow, Syscalls: []seccomp.SyscallGroup{g}}
	insts, err := pol.Assemble()
	if err != nil {
		return nil, err
	}
	start := -1
	for i, in := range insts {
		if l, ok := in.(bpf.LoadAbsolute); ok && l.Off == 0 && l.Size == 4 {
			start = i + 1
			break
		}
	}
	if start < 0 || len(insts) < start+1 {
		return nil, errors.New("seccomp: unexpected program from the compiler")
	}
	if j, ok := insts[start].(bpf.JumpIf); ok && j.Cond == bpf.JumpGreaterOrEqual && j.Val == uint32(arch.X32.SeccompMask) {
		start += 2
	}
	if _, ok := insts[len(insts)-1].(bpf.RetConstant); !ok {
		return nil, errors.New("seccomp: unexpected program from the compiler")
	}
	return insts[start : len(insts)-1], nil
}

func legacySeccompAction(a specs.LinuxSeccompAction, errno uint) (seccomp.Action, error) {
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
