//go:build linux

package ociruntime

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// filterVM runs a compiled filter in x/net/bpf's interpreter.
func filterVM(t *testing.T, p []unix.SockFilter) *bpf.VM {
	t.Helper()
	raw := make([]bpf.RawInstruction, len(p))
	for i, in := range p {
		raw[i] = bpf.RawInstruction{Op: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	insts, _ := bpf.Disassemble(raw) // what it cannot decode, NewVM refuses
	v, err := bpf.NewVM(insts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// runFilter answers one seccomp_data; the interpreter loads words
// big-endian, so each is laid out so, an argument's low word first.
func runFilter(t *testing.T, v *bpf.VM, nr, auditArch uint32, args [6]uint64) int {
	t.Helper()
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[0:], nr)
	binary.BigEndian.PutUint32(b[4:], auditArch)
	for i, a := range args {
		binary.BigEndian.PutUint32(b[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(b[20+8*i:], uint32(a>>32))
	}
	r, err := v.Run(b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// expectSeccomp is what config c answers a call with, read from the
// config the way runc and libseccomp read it: the first rule naming the
// call whose args all hold (any of them, when an index repeats)
// decides; calls through another ABI get the default action, x32 calls
// ENOSYS.
func expectSeccomp(t *testing.T, c *specs.LinuxSeccomp, name string, native, x32 bool, args [6]uint64) int {
	t.Helper()
	action := func(a specs.LinuxSeccompAction, errno *uint) int {
		e := uint32(unix.EPERM)
		if errno != nil {
			e = uint32(*errno)
		}
		switch a {
		case specs.ActAllow:
			return unix.SECCOMP_RET_ALLOW
		case specs.ActErrno:
			return int(unix.SECCOMP_RET_ERRNO | e)
		case specs.ActKillProcess:
			return unix.SECCOMP_RET_KILL_PROCESS
		case specs.ActTrap:
			return unix.SECCOMP_RET_TRAP
		case specs.ActTrace:
			return int(unix.SECCOMP_RET_TRACE | e)
		case specs.ActLog:
			return unix.SECCOMP_RET_LOG
		}
		t.Fatalf("no expectation for action %q", a)
		return 0
	}
	def := action(c.DefaultAction, c.DefaultErrnoRet)
	switch {
	case !native:
		return def
	case x32:
		return int(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS))
	}
	holds := func(a specs.LinuxSeccompArg) bool {
		v := args[a.Index]
		switch a.Op {
		case specs.OpEqualTo:
			return v == a.Value
		case specs.OpNotEqual:
			return v != a.Value
		case specs.OpLessThan:
			return v < a.Value
		case specs.OpLessEqual:
			return v <= a.Value
		case specs.OpGreaterThan:
			return v > a.Value
		case specs.OpGreaterEqual:
			return v >= a.Value
		case specs.OpMaskedEqual:
			return v&a.Value == a.ValueTwo
		}
		t.Fatalf("no expectation for operator %q", a.Op)
		return false
	}
	for _, sc := range c.Syscalls {
		if !slices.Contains(sc.Names, name) {
			continue
		}
		seen := map[uint]bool{}
		repeated := false
		for _, a := range sc.Args {
			repeated = repeated || seen[a.Index]
			seen[a.Index] = true
		}
		match := true
		if repeated {
			match = slices.ContainsFunc(sc.Args, holds)
		} else {
			for _, a := range sc.Args {
				match = match && holds(a)
			}
		}
		if match {
			return action(sc.Action, sc.ErrnoRet)
		}
	}
	return def
}

// TestSeccompCompiled: configs compile to filters that answer every
// call as expectSeccomp reads the config: a long allow list (docker's
// shape), rules with every operator on 64-bit values, repeated indexes,
// masks, and rules on one call tried in order.
func TestSeccompCompiled(t *testing.T) {
	info, err := arch.GetInfo("")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range info.SyscallNames {
		names = append(names, n)
	}
	slices.Sort(names)
	var allow []string
	for i, n := range names {
		if i%7 != 3 && n != "personality" && n != "socket" && n != "clone" {
			allow = append(allow, n)
		}
	}
	eacces, eperm := uint(unix.EACCES), uint(unix.EPERM)
	big := uint64(1<<32 | 5)
	ops := []specs.LinuxSeccompOperator{specs.OpEqualTo, specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpGreaterThan, specs.OpGreaterEqual}
	var opRules []specs.LinuxSyscall
	for i, op := range ops {
		for _, v := range []uint64{5, big} {
			opRules = append(opRules, specs.LinuxSyscall{Names: []string{names[7*i+3]}, Action: specs.ActErrno, ErrnoRet: &eacces,
				Args: []specs.LinuxSeccompArg{{Index: uint(i % 6), Value: v, Op: op}}})
		}
	}
	configs := []*specs.LinuxSeccomp{
		{DefaultAction: specs.ActErrno, DefaultErrnoRet: &eperm, Syscalls: append([]specs.LinuxSyscall{
			{Names: allow, Action: specs.ActAllow},
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0, Op: specs.OpEqualTo}}},
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0xffffffff, Op: specs.OpEqualTo}}},
			{Names: []string{"clone"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: unix.CLONE_NEWNS | unix.CLONE_NEWUSER, ValueTwo: 0, Op: specs.OpMaskedEqual}}},
			{Names: []string{"socket"}, Action: specs.ActErrno, ErrnoRet: &eacces, Args: []specs.LinuxSeccompArg{{Index: 0, Value: unix.AF_VSOCK, Op: specs.OpEqualTo}}},
			{Names: []string{"socket"}, Action: specs.ActTrace, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0xf0, ValueTwo: 0xf0, Op: specs.OpMaskedEqual}}},
			{Names: []string{"socket"}, Action: specs.ActErrno, ErrnoRet: &eacces, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0xf0, ValueTwo: 0x30, Op: specs.OpMaskedEqual}}},
			{Names: []string{"socket"}, Action: specs.ActLog, Args: []specs.LinuxSeccompArg{{Index: 1, Value: 1, Op: specs.OpEqualTo}, {Index: 1, Value: 2, Op: specs.OpEqualTo}, {Index: 2, Value: 3, Op: specs.OpNotEqual}}},
			{Names: []string{"socket", "nosuchcall"}, Action: specs.ActAllow},
		}, opRules...)},
		{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno, ErrnoRet: &eacces},
			{Names: []string{"chmod"}, Action: specs.ActKillProcess, Args: []specs.LinuxSeccompArg{{Index: 1, Value: 0o751, Op: specs.OpEqualTo}, {Index: 1, Value: 0o750, Op: specs.OpEqualTo}}},
			{Names: []string{"chmod", "fchmod"}, Action: specs.ActTrap},
		}},
	}
	args := []uint64{0, 1, 2, 3, 4, 5, 6, 0o750, 0o751, unix.AF_VSOCK, 0xf0, 0xff, 0x1e8, unix.CLONE_NEWNS, unix.CLONE_NEWUSER, 0xffffffff, 1 << 32, big - 1, big, big + 1, math.MaxUint64}
	byNr := map[uint32]string{}
	for n, nr := range info.SyscallNames {
		byNr[uint32(nr)] = n
	}
	for ci, c := range configs {
		prog, err := compileSeccomp(c)
		if err != nil {
			t.Fatal(err)
		}
		v := filterVM(t, prog)
		bad := 0
		for _, a := range []uint32{uint32(info.ID), unix.AUDIT_ARCH_I386, 0} {
			for nr := uint32(0); nr < 600; nr++ {
				for _, n := range []uint32{nr, nr | uint32(arch.X32.SeccompMask)} {
					for _, x := range args {
						for at := range 6 {
							var in [6]uint64
							in[at] = x
							want := expectSeccomp(t, c, byNr[nr], a == uint32(info.ID), n != nr, in)
							if got := runFilter(t, v, n, a, in); got != want {
								t.Errorf("config %d: call %d (%s) arch %#x args %v: %#x, want %#x", ci, n, byNr[nr], a, in, got, want)
								if bad++; bad > 20 {
									t.FailNow()
								}
							}
						}
					}
				}
			}
		}
	}
}

// TestSeccompMaskedEqual: SCMP_CMP_MASKED_EQ is libseccomp's
// (arg & value) == valueTwo, for every valueTwo.
func TestSeccompMaskedEqual(t *testing.T) {
	info, err := arch.GetInfo("")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mask, want, arg uint64
		match           bool
	}{
		{0xf0, 0xf0, 0xf0, true},
		{0xf0, 0xf0, 0x1f8, true},
		{0xf0, 0xf0, 0xe0, false}, // some bits of the mask, not all
		{0xf0, 0, 0x0f, true},
		{0xf0, 0, 0x10, false},
		{0xf0, 0x30, 0x3f, true},
		{0xf0, 0x30, 0x70, false},
		{1<<32 | 1, 1 << 32, 1 << 32, true},
		{1<<32 | 1, 1 << 32, 1<<32 | 1, false},
	} {
		prog, err := compileSeccomp(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"socket"}, Action: specs.ActLog, Args: []specs.LinuxSeccompArg{{Index: 0, Value: tc.mask, ValueTwo: tc.want, Op: specs.OpMaskedEqual}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		got := runFilter(t, filterVM(t, prog), uint32(info.SyscallNames["socket"]), uint32(info.ID), [6]uint64{tc.arg}) == unix.SECCOMP_RET_LOG
		if got != tc.match {
			t.Errorf("socket(%#x) under (arg & %#x) == %#x: matched %v, want %v", tc.arg, tc.mask, tc.want, got, tc.match)
		}
	}
}
