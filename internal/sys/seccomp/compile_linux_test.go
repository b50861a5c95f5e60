package seccomp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/beamhop/lightbox/internal/testutil"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// data is the struct seccomp_data a filter reads.
type data struct {
	nr, arch uint32
	args     [6]uint64
}

// vm runs filters in x/net/bpf's interpreter.
type vm struct{ *bpf.VM }

func newVM(t *testing.T, p []unix.SockFilter) vm {
	t.Helper()
	raw := make([]bpf.RawInstruction, len(p))
	for i, in := range p {
		raw[i] = bpf.RawInstruction{Op: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	insts, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("filter has instructions x/net/bpf cannot decode: %v", insts)
	}
	v, err := bpf.NewVM(insts)
	if err != nil {
		t.Fatal(err)
	}
	return vm{v}
}

// run returns what the filter answers d with. The interpreter loads
// words big-endian (network order), so each word the kernel would load
// natively is laid out big-endian here; an argument's low word comes
// first, as on the little-endian architectures Compile supports.
func (v vm) run(t *testing.T, d data) Action {
	t.Helper()
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[0:], d.nr)
	binary.BigEndian.PutUint32(b[4:], d.arch)
	for i, a := range d.args {
		binary.BigEndian.PutUint32(b[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(b[20+8*i:], uint32(a>>32))
	}
	r, err := v.Run(b)
	if err != nil {
		t.Fatalf("run %+v: %v", d, err)
	}
	return Action(r)
}

func compile(t *testing.T, p Policy) []unix.SockFilter {
	t.Helper()
	prog, err := p.Compile()
	testutil.Need(t, !errors.Is(err, ErrUnsupported), fmt.Sprintf("needs a syscall table for this architecture: %v", err))
	if err != nil {
		t.Fatal(err)
	}
	return prog
}

// edge values: the high and low halves each below, at and above the
// values compared with.
var edge = []uint64{0, 1, 2, 0x7fffffff, 0x80000000, 0xffffffff, 1 << 32, 1<<32 | 1, 1<<32 | 0xffffffff, 2 << 32, 2<<32 | 1, math.MaxInt64, math.MaxUint64, math.MaxUint64 - 1}

func TestCompileConditions(t *testing.T) {
	const nr = unix.SYS_GETPID
	hit, miss := ActErrno(unix.EACCES), ActErrno(unix.ENOENT)
	cmp := map[Op]func(a, v, m uint64) bool{
		OpEq:       func(a, v, _ uint64) bool { return a == v },
		OpNe:       func(a, v, _ uint64) bool { return a != v },
		OpLt:       func(a, v, _ uint64) bool { return a < v },
		OpLe:       func(a, v, _ uint64) bool { return a <= v },
		OpGt:       func(a, v, _ uint64) bool { return a > v },
		OpGe:       func(a, v, _ uint64) bool { return a >= v },
		OpMaskedEq: func(a, v, m uint64) bool { return a&m == v },
	}
	for op, f := range cmp {
		for _, int32 := range []bool{false, true} {
			for _, val := range edge {
				masks := []uint64{0}
				if op == OpMaskedEq {
					masks = edge
				}
				for _, mask := range masks {
					for arg := range uint8(6) {
						c := Cond{Arg: arg, Op: op, Value: val, Mask: mask, Int: int32}
						v := newVM(t, compile(t, Policy{Default: miss, Rules: []Rule{{Syscalls: []uint32{nr}, Action: hit, Any: [][]Cond{{c}}}}}))
						for _, a := range edge {
							want := f(a, val, mask)
							if int32 {
								want = f(a&math.MaxUint32, val&math.MaxUint32, mask&math.MaxUint32)
							}
							var d data
							d.nr, d.arch = nr, auditArch
							d.args[arg] = a
							// A wrong word must not decide: the other
							// arguments hold the value compared with.
							for i := range d.args {
								if i != int(arg) {
									d.args[i] = val
								}
							}
							if got := v.run(t, d) == hit; got != want {
								t.Fatalf("%+v on argument %#x: matched %v, want %v", c, a, got, want)
							}
						}
					}
				}
			}
		}
	}
}

// TestCompileOrder: the first rule that matches decides; a rule whose
// conditions fail passes the call on to the next with the syscall
// number still in the accumulator; alternative sets match when any does.
func TestCompileOrder(t *testing.T) {
	a, b, c := ActErrno(unix.EACCES), ActErrno(unix.EPERM), ActErrno(unix.EINVAL)
	p := Policy{Default: ActAllow, OtherArch: ActKillProcess, X32: ActErrno(unix.ENOSYS), Rules: []Rule{
		{Syscalls: []uint32{unix.SYS_FCHMODAT}, Action: a, Any: [][]Cond{{{Arg: 1, Op: OpEq, Value: 0o700}}}},
		{Syscalls: []uint32{unix.SYS_FCHMODAT, unix.SYS_FCHMOD}, Action: b, Any: [][]Cond{{{Arg: 1, Op: OpEq, Value: 0o751}}, {{Arg: 1, Op: OpEq, Value: 0o750}}}},
		{Syscalls: []uint32{unix.SYS_SOCKET}, Action: c, Any: [][]Cond{{{Arg: 0, Op: OpEq, Value: unix.AF_NETLINK}, {Arg: 2, Op: OpEq, Value: unix.NETLINK_AUDIT}}}},
		{Syscalls: []uint32{unix.SYS_SOCKET, unix.SYS_FCHMODAT}, Action: ActLog},
	}}
	v := newVM(t, compile(t, p))
	for _, tc := range []struct {
		d    data
		want Action
	}{
		{data{nr: unix.SYS_FCHMODAT, args: [6]uint64{0, 0o700}}, a},
		{data{nr: unix.SYS_FCHMODAT, args: [6]uint64{0, 0o750}}, b},
		{data{nr: unix.SYS_FCHMODAT, args: [6]uint64{0, 0o751}}, b},
		{data{nr: unix.SYS_FCHMOD, args: [6]uint64{0, 0o751}}, b},
		{data{nr: unix.SYS_FCHMOD, args: [6]uint64{0, 0o700}}, ActAllow},
		{data{nr: unix.SYS_FCHMODAT, args: [6]uint64{0, 0o755}}, ActLog},
		{data{nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_NETLINK, 0, unix.NETLINK_AUDIT}}, c},
		{data{nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_NETLINK, 0, 0}}, ActLog},
		{data{nr: unix.SYS_SOCKET, args: [6]uint64{unix.AF_INET, 0, unix.NETLINK_AUDIT}}, ActLog},
		{data{nr: unix.SYS_GETPID}, ActAllow},
		{data{nr: unix.SYS_GETPID, arch: unix.AUDIT_ARCH_I386}, ActKillProcess},
	} {
		if tc.d.arch == 0 {
			tc.d.arch = auditArch
		}
		if got := v.run(t, tc.d); got != tc.want {
			t.Errorf("run(%+v) = %#x, want %#x", tc.d, got, tc.want)
		}
	}
	if x32Bit != 0 {
		if got := v.run(t, data{nr: x32Bit | unix.SYS_GETPID, arch: auditArch}); got != p.X32 {
			t.Errorf("x32 getpid = %#x, want %#x", got, p.X32)
		}
	}
}

// TestCompileLong: rules longer than a conditional jump reaches (one
// of 600 calls, as an allow list like docker's is), with and without
// conditions.
func TestCompileLong(t *testing.T) {
	var nrs []uint32
	for nr := uint32(1000); nr < 1600; nr++ {
		nrs = append(nrs, nr)
	}
	p := Policy{Default: ActErrno(unix.EPERM), Rules: []Rule{
		{Syscalls: nrs[:300], Action: ActAllow},
		{Syscalls: nrs[300:], Action: ActLog, Any: [][]Cond{{{Arg: 0, Op: OpNe, Value: 7}}}},
	}}
	v := newVM(t, compile(t, p))
	for nr := uint32(990); nr < 1610; nr++ {
		for _, arg := range []uint64{0, 7} {
			want := p.Default
			switch {
			case nr >= 1000 && nr < 1300:
				want = ActAllow
			case nr >= 1300 && nr < 1600 && arg != 7:
				want = ActLog
			}
			if got := v.run(t, data{nr: nr, arch: auditArch, args: [6]uint64{arg}}); got != want {
				t.Fatalf("call %d with %d = %#x, want %#x", nr, arg, got, want)
			}
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for _, p := range []Policy{
		{Rules: []Rule{{Action: ActAllow}}},
		{Rules: []Rule{{Syscalls: []uint32{1}, Any: [][]Cond{{{Arg: 6, Op: OpEq}}}}}},
		{Rules: []Rule{{Syscalls: []uint32{1}, Any: [][]Cond{{{Arg: 0}}}}}},
		{Rules: []Rule{{Syscalls: make([]uint32, 5000)}}},
	} {
		if _, err := p.Compile(); err == nil {
			t.Errorf("Compile(%+v) = nil error", p)
		}
	}
}

// profileInputs are the calls the profiles are compared on: every
// number of the native table and past it, x32's and another ABI's, with
// the arguments the rules look at set to what they refuse, to that
// with bits added above the low 32, and to other values.
func profileInputs() []data {
	args := []uint64{0, unix.AF_VSOCK, 1<<32 | unix.AF_VSOCK, unix.AF_INET, unix.CLONE_NEWUSER,
		unix.CLONE_NEWUSER | unix.CLONE_NEWNS | uint64(unix.SIGCHLD), 1<<32 | unix.CLONE_NEWUSER, 1 << 32, unix.CLONE_NEWNS, math.MaxUint64}
	var out []data
	for _, arch := range []uint32{auditArch, unix.AUDIT_ARCH_I386, unix.AUDIT_ARCH_X86_64, unix.AUDIT_ARCH_AARCH64, 0} {
		for nr := uint32(0); nr < 1100; nr++ {
			nrs := []uint32{nr}
			if x32Bit != 0 {
				nrs = append(nrs, nr|x32Bit)
			}
			for _, n := range nrs {
				for _, a := range args {
					out = append(out, data{nr: n, arch: arch, args: [6]uint64{a, a}})
				}
			}
		}
	}
	return out
}

// goldenPath is the file holding the program the sandbox profile was
// before Policy: hand-assembled BPF, recorded for amd64 when the
// assembler was replaced (one instruction a line: code jt jf k).
func goldenPath(opts Options, arch string) string {
	v := "default"
	if opts.AllowUserNamespaces {
		v = "userns"
	}
	return filepath.Join("testdata", "profile-"+v+"-"+arch+".bpf")
}

func readGolden(t *testing.T, path string) []unix.SockFilter {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p []unix.SockFilter
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var in unix.SockFilter
		if _, err := fmt.Sscanf(l, "%v %d %d %v", &in.Code, &in.Jt, &in.Jf, &in.K); err != nil {
			t.Fatalf("%s: %q: %v", path, l, err)
		}
		p = append(p, in)
	}
	return p
}

// TestProfileSameAsLegacy: the profile compiled from its Policy answers
// every input as the hand-assembled program did.
func TestProfileSameAsLegacy(t *testing.T) {
	testutil.Need(t, runtime.GOARCH == "amd64", "needs amd64: the hand-assembled program is recorded for amd64 only")
	for _, opts := range []Options{{}, {AllowUserNamespaces: true}} {
		old := readGolden(t, goldenPath(opts, runtime.GOARCH))
		ov, nv := newVM(t, old), newVM(t, compile(t, Profile(opts)))
		n := 0
		for _, d := range profileInputs() {
			o, g := ov.run(t, d), nv.run(t, d)
			if o != g {
				t.Errorf("%+v: %+v: compiled profile answers %#x, the hand-assembled one %#x", opts, d, g, o)
				if n++; n > 20 {
					t.FailNow()
				}
			}
		}
	}
}

// BenchmarkProgram is what the init spends compiling the profile.
func BenchmarkProgram(b *testing.B) {
	for b.Loop() {
		if _, err := Program(Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
