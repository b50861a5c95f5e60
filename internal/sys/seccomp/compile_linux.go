package seccomp

import (
	"fmt"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Action is what a filter answers a call with: a SECCOMP_RET_* value
// with its data (an errno for SECCOMP_RET_ERRNO).
type Action uint32

// The actions a Policy can take.
const (
	ActAllow       Action = unix.SECCOMP_RET_ALLOW
	ActKillThread  Action = unix.SECCOMP_RET_KILL_THREAD
	ActKillProcess Action = unix.SECCOMP_RET_KILL_PROCESS
	ActTrap        Action = unix.SECCOMP_RET_TRAP
	ActLog         Action = unix.SECCOMP_RET_LOG
)

// ActErrno fails the call with errno.
func ActErrno(errno unix.Errno) Action {
	return Action(unix.SECCOMP_RET_ERRNO | uint32(errno)&unix.SECCOMP_RET_DATA)
}

// ActTrace hands the call to a ptrace tracer with data as its message.
func ActTrace(data uint16) Action { return Action(unix.SECCOMP_RET_TRACE | uint32(data)) }

// Op compares a call's argument with a Cond's value.
type Op uint8

// The comparisons; every one is unsigned.
const (
	OpEq       Op = iota + 1 // arg == Value
	OpNe                     // arg != Value
	OpLt                     // arg < Value
	OpLe                     // arg <= Value
	OpGt                     // arg > Value
	OpGe                     // arg >= Value
	OpMaskedEq               // arg & Mask == Value
)

// Cond is one condition on a call's argument.
type Cond struct {
	Arg   uint8 // the argument's index, 0 to 5
	Op    Op
	Value uint64
	Mask  uint64 // OpMaskedEq only
	// Int compares only the low 32 bits: the argument is a C int or
	// the kernel reads only those bits (socket's family, clone's
	// flags), so the high half a caller passes must not decide.
	Int bool
}

// Rule gives Action to the calls it matches.
type Rule struct {
	Syscalls []uint32 // the calls' numbers in this architecture's table
	// Any lists alternative sets of conditions: the rule matches a call
	// whose arguments meet every Cond of at least one set. Empty
	// matches every call to Syscalls.
	Any    [][]Cond
	Action Action
}

// Policy is a whole filter for this architecture's native ABI.
type Policy struct {
	// Rules are tried in order; the first that matches decides.
	Rules   []Rule
	Default Action // calls no rule matches
	// OtherArch answers calls through another ABI's table (i386 on
	// amd64), X32 the x32 ABI's calls on amd64 (ignored elsewhere):
	// rules keyed on native numbers must not be bypassed through them.
	OtherArch, X32 Action
}

// seccomp_data offsets (include/uapi/linux/seccomp.h): int nr; __u32
// arch; __u64 instruction_pointer; __u64 args[6]. Both architectures
// with a table here are little-endian: an argument's low half comes
// first.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// The longest program the kernel loads (BPF_MAXINSNS).
const maxInsns = 4096

// chunk is how many calls one run of conditional jumps tests before
// its action, so that every conditional jump stays within the 255
// instructions its offset can skip.
const chunk = 200

// Compile compiles p for this architecture. It returns ErrUnsupported
// where the package has no syscall table.
func (p Policy) Compile() ([]unix.SockFilter, error) {
	if auditArch == 0 {
		return nil, ErrUnsupported
	}
	var c compiler
	// The other ABIs' answers come first, so that their jumps are short.
	c.emit(bpf.LoadAbsolute{Off: offArch, Size: 4})
	native := c.newLabel()
	c.branch(bpf.JumpEqual, auditArch, native, next)
	c.emit(bpf.RetConstant{Val: uint32(p.OtherArch)})
	c.label(native)
	c.emit(bpf.LoadAbsolute{Off: offNr, Size: 4})
	if x32Bit != 0 {
		native64 := c.newLabel()
		c.branch(bpf.JumpGreaterOrEqual, x32Bit, next, native64)
		c.emit(bpf.RetConstant{Val: uint32(p.X32)})
		c.label(native64)
	}
	for i, r := range p.Rules {
		if err := c.rule(i, r); err != nil {
			return nil, err
		}
	}
	c.emit(bpf.RetConstant{Val: uint32(p.Default)})
	return c.assemble()
}

// compiler lays out instructions whose jumps go to labels; assemble
// resolves them and encodes the program with x/net/bpf's assembler.
type compiler struct {
	prog   []bpf.Instruction
	labels []int          // label → the instruction it marks, -1 until placed
	jumps  map[int]target // instruction index → where its jumps go
}

// label marks a place in the program; next is the next instruction.
type label int

const next label = -1

// target is where a jump goes when its test holds and when not.
type target struct{ yes, no label }

func (c *compiler) emit(in bpf.Instruction) { c.prog = append(c.prog, in) }

func (c *compiler) newLabel() label {
	c.labels = append(c.labels, -1)
	return label(len(c.labels) - 1)
}

// label places l at the next instruction.
func (c *compiler) label(l label) { c.labels[l] = len(c.prog) }

// jumpIf goes to yes when A cond val holds and on to the next
// instruction when it does not.
func (c *compiler) jumpIf(cond bpf.JumpTest, val uint32, yes label) {
	c.branch(cond, val, yes, next)
}

// branch goes to yes or no.
func (c *compiler) branch(cond bpf.JumpTest, val uint32, yes, no label) {
	if c.jumps == nil {
		c.jumps = map[int]target{}
	}
	c.jumps[len(c.prog)] = target{yes, no}
	c.emit(bpf.JumpIf{Cond: cond, Val: val})
}

// jump always goes to l (32-bit offset: no range limit).
func (c *compiler) jump(l label) {
	if c.jumps == nil {
		c.jumps = map[int]target{}
	}
	c.jumps[len(c.prog)] = target{l, next}
	c.emit(bpf.Jump{})
}

// rule emits rule i. On entry and on every way out to the next rule the
// accumulator holds the syscall number.
func (c *compiler) rule(i int, r Rule) error {
	if len(r.Syscalls) == 0 {
		return fmt.Errorf("seccomp rule %d: no syscalls", i)
	}
	after, match := c.newLabel(), c.newLabel()
	for k := 0; k < len(r.Syscalls); k += chunk {
		nrs := r.Syscalls[k:min(k+chunk, len(r.Syscalls))]
		hit, miss := c.newLabel(), c.newLabel()
		for _, nr := range nrs[:len(nrs)-1] {
			c.jumpIf(bpf.JumpEqual, nr, hit)
		}
		c.branch(bpf.JumpEqual, nrs[len(nrs)-1], hit, miss)
		c.label(hit)
		if len(r.Any) == 0 {
			c.emit(bpf.RetConstant{Val: uint32(r.Action)})
		} else {
			c.jump(match)
		}
		c.label(miss)
	}
	if len(r.Any) == 0 {
		return nil
	}
	c.jump(after)
	c.label(match)
	for _, set := range r.Any {
		fail := c.newLabel()
		for _, cd := range set {
			if err := c.cond(cd, fail); err != nil {
				return fmt.Errorf("seccomp rule %d: %w", i, err)
			}
		}
		c.emit(bpf.RetConstant{Val: uint32(r.Action)})
		c.label(fail)
	}
	c.emit(bpf.LoadAbsolute{Off: offNr, Size: 4})
	c.label(after)
	return nil
}

// cond emits a test of cd that goes on to the next instruction when it
// holds and to fail when it does not: the high halves decide unless
// they are equal, then the low halves.
func (c *compiler) cond(cd Cond, fail label) error {
	if cd.Arg > 5 {
		return fmt.Errorf("argument index %d out of range", cd.Arg)
	}
	lo := bpf.LoadAbsolute{Off: offArgs + 8*uint32(cd.Arg), Size: 4}
	hi := bpf.LoadAbsolute{Off: lo.Off + 4, Size: 4}
	vlo, vhi := uint32(cd.Value), uint32(cd.Value>>32)
	mlo, mhi := uint32(cd.Mask), uint32(cd.Mask>>32)
	pass := c.newLabel()
	high := !cd.Int
	switch cd.Op {
	case OpEq, OpMaskedEq:
		test := func(ld bpf.LoadAbsolute, v, m uint32) {
			c.emit(ld)
			if cd.Op == OpMaskedEq {
				c.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: m})
			}
			c.branch(bpf.JumpEqual, v, next, fail)
		}
		if high {
			test(hi, vhi, mhi)
		}
		test(lo, vlo, mlo)
	case OpNe:
		if high {
			c.emit(hi)
			c.branch(bpf.JumpEqual, vhi, next, pass)
		}
		c.emit(lo)
		c.branch(bpf.JumpEqual, vlo, fail, next)
	case OpGt, OpGe, OpLt, OpLe:
		// Above (a greater high half) passes Gt and Ge, fails Lt and Le;
		// below the reverse.
		above, below := pass, fail
		if cd.Op == OpLt || cd.Op == OpLe {
			above, below = fail, pass
		}
		if high {
			c.emit(hi)
			c.jumpIf(bpf.JumpGreaterThan, vhi, above)
			c.branch(bpf.JumpEqual, vhi, next, below)
		}
		c.emit(lo)
		switch cd.Op {
		case OpGt:
			c.branch(bpf.JumpGreaterThan, vlo, next, fail)
		case OpGe:
			c.branch(bpf.JumpGreaterOrEqual, vlo, next, fail)
		case OpLt:
			c.branch(bpf.JumpGreaterOrEqual, vlo, fail, next)
		case OpLe:
			c.branch(bpf.JumpGreaterThan, vlo, fail, next)
		}
	default:
		return fmt.Errorf("unknown comparison %d", cd.Op)
	}
	c.label(pass)
	return nil
}

func (c *compiler) assemble() ([]unix.SockFilter, error) {
	if len(c.prog) > maxInsns {
		return nil, fmt.Errorf("seccomp filter of %d instructions: the kernel loads at most %d", len(c.prog), maxInsns)
	}
	skip := func(at int, l label) (int, error) {
		if l == next {
			return 0, nil
		}
		to := c.labels[l]
		if to <= at {
			return 0, fmt.Errorf("seccomp filter: jump from %d to label %d does not go forward", at, l)
		}
		return to - at - 1, nil
	}
	for at, t := range c.jumps {
		yes, err := skip(at, t.yes)
		if err != nil {
			return nil, err
		}
		no, err := skip(at, t.no)
		if err != nil {
			return nil, err
		}
		switch in := c.prog[at].(type) {
		case bpf.Jump:
			in.Skip = uint32(yes)
			c.prog[at] = in
		case bpf.JumpIf:
			if yes > 255 || no > 255 {
				return nil, fmt.Errorf("seccomp filter: conditional jump from %d skips more than 255 instructions", at)
			}
			in.SkipTrue, in.SkipFalse = uint8(yes), uint8(no)
			c.prog[at] = in
		}
	}
	raw, err := bpf.Assemble(c.prog)
	if err != nil {
		return nil, fmt.Errorf("seccomp filter: %w", err)
	}
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out, nil
}
