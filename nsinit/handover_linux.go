package nsinit

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/beamhop/lightbox/internal/sys"
	"golang.org/x/sys/unix"
)

// A handover is PID 1 executing its own program again once the sandbox is
// idle (the launch's init at its first idle trim, a later one when idle
// for handoverIdle after serving), so that a fresh Go heap holds only what
// the server needs: setup
// (and every request since) leaves the heap's spans, the runtime's
// metadata and spare threads resident, which no collection gives back
// (bench/NOTES.md, "the idle init's memory"). The process stays the same
// (pid, children, namespaces, cgroups, rlimits, oom_score_adj,
// credentials); what lives in Go's memory travels in a handoverState
// written to a memfd, and the descriptors it names are kept across the
// exec. The program is the file the init runs, by an O_PATH descriptor
// opened before any workload ran (never a path the sandbox could change).
//
// The old process hands over only when nothing is in flight: no
// connection served (every exec, wait or take is one), no destroy, the
// main command's status not yet reaped, every log relay between copies
// (its pipe, or the terminal whose master it reads, keeps what is written
// meanwhile; the new init holds the master, so a detached terminal is
// resized through it). The accept loop does it, so
// no connection is accepted and then lost; one that arrives during the
// exec waits in the listener's queue. A handover that fails leaves the
// init as it was and is not tried again.
//
// The new process is as confined as the old: it is started from a thread
// that is not the spawner's (no seccomp filter, no no_new_privs, the
// init's full capability set, which exec as uid 0 gives again), makes
// itself non-dumpable first (exec resets it; until then a workload still
// cannot reach it: ptrace and /proc/1/mem need the caller's capabilities
// to include the target's, and no workload has the init's), and starts a
// new spawner exactly as setup did (cgroup namespace, workloads' cgroup,
// privileges dropped, seccomp). Between the exec and the new init's
// first lines (the Go runtime's start, ~1 ms) a signal sent to PID 1 is
// lost: before the runtime installs its handlers the kernel drops it (a
// pid namespace's init ignores signals it has no handler for), after that
// the runtime's default ends the init for SIGTERM, SIGINT, SIGHUP,
// SIGQUIT and SIGUSR1/2; resume takes them over first thing, and what
// comes then waits in the channels until the server reads them. Blocking them across the exec would keep them
// pending, but the new runtime would then block them in every workload
// it forks (the mask at its start is every thread's saved mask).

// envHandover names the descriptor of the handover state in the new
// process's environment.
const envHandover = "_LIGHTBOX_INIT_HANDOVER"

// handoverState is what the old init tells the new one. It travels in a
// small binary encoding of its own (appendState, parseState), not JSON:
// encoding/json's first use alone left ~185 kB resident in the new init.
type handoverState struct {
	// Gen counts the handovers since launch (1 for the first new init).
	Gen int
	// The server's part of the launch config, as a take changed it.
	Name, Workdir, User string
	Env, Cgroup         []string
	AllowUserNS         bool
	WorkloadOOMScore    int
	Nproc               int64
	Setgroups           bool
	// The descriptors kept across the exec: the program (O_PATH), the
	// listener, the lock file, the liveness pipe (-1 once at its end),
	// the workloads' cgroup (0 for none) and its other v1 hierarchies',
	// the gone pipe (FDs.Gone, 0 for none), the upper dir's filesystem
	// (FDs.UpperFS, 0 for none), every lease held, the CPU limit's files
	// (FDs.CPUMax).
	Exe, Listener, Lock, Liveness, Workload, Gone, UpperFS int
	WorkloadV1, Leases, CPUMax                             []int
	Detached, Taken                                        bool
	// SyncOnEnd is Config.SyncOnEnd.
	SyncOnEnd bool
	// Main is the main command's pid, 0 for none.
	Main int
	// Deadline is when the sandbox's timeout ends it, on CLOCK_MONOTONIC
	// (the same across the exec), in nanoseconds; 0 for none.
	Deadline int64
	Relays   []relayHandover
	// Etc are the sandbox's etc files on the init's tmpfs: their
	// targets, and the descriptors OpEtc and a take rewrite them through.
	EtcTargets []string
	EtcFDs     []int
}

// relayHandover is a log relay's source (a pipe, or a terminal's master:
// Tty) and its log. MainTty: the terminal is the main command's, which a
// resize request names.
type relayHandover struct {
	Pipe, Log         int
	Max, Off, Dropped int64
	Tty, MainTty      bool
}

// handoverMagic starts the encoding; it changes with the layout.
const handoverMagic = "lbh8"

// appendState encodes st with the config's varint codec (wbuf, rbuf in
// confcodec.go) behind handoverMagic.
func appendState(b []byte, st *handoverState) []byte {
	e := wbuf(append(b, handoverMagic...))
	e.int(int64(st.Gen))
	e.str(st.Name)
	e.str(st.Workdir)
	e.str(st.User)
	e.strs(st.Env)
	e.strs(st.Cgroup)
	for _, v := range []bool{st.AllowUserNS, st.Setgroups, st.Detached, st.Taken, st.SyncOnEnd} {
		e.bool(v)
	}
	for _, v := range []int64{int64(st.WorkloadOOMScore), st.Nproc, int64(st.Exe), int64(st.Listener), int64(st.Lock), int64(st.Liveness), int64(st.Workload), int64(st.Gone), int64(st.UpperFS)} {
		e.int(v)
	}
	e.ints(st.WorkloadV1)
	e.ints(st.Leases)
	e.ints(st.CPUMax)
	e.int(int64(st.Main))
	e.int(st.Deadline)
	e.int(int64(len(st.Relays)))
	for _, r := range st.Relays {
		for _, v := range []int64{int64(r.Pipe), int64(r.Log), r.Max, r.Off, r.Dropped} {
			e.int(v)
		}
		e.bool(r.Tty)
		e.bool(r.MainTty)
	}
	e.strs(st.EtcTargets)
	for i := range st.EtcTargets {
		e.int(int64(st.EtcFDs[i]))
	}
	return e
}

var errBadState = errors.New("malformed handover state")

func parseState(b []byte) (*handoverState, error) {
	if len(b) < len(handoverMagic) || string(b[:len(handoverMagic)]) != handoverMagic {
		return nil, errBadState
	}
	d := &rbuf{b: b[len(handoverMagic):]}
	st := &handoverState{Gen: d.num()}
	st.Name, st.Workdir, st.User = d.str(), d.str(), d.str()
	st.Env, st.Cgroup = d.strs(), d.strs()
	st.AllowUserNS, st.Setgroups, st.Detached, st.Taken, st.SyncOnEnd = d.bool(), d.bool(), d.bool(), d.bool(), d.bool()
	st.WorkloadOOMScore, st.Nproc = d.num(), d.int()
	st.Exe, st.Listener, st.Lock, st.Liveness, st.Workload, st.Gone, st.UpperFS = d.num(), d.num(), d.num(), d.num(), d.num(), d.num(), d.num()
	st.WorkloadV1 = d.ints()
	st.Leases = d.ints()
	st.CPUMax = d.ints()
	st.Main, st.Deadline = d.num(), d.int()
	st.Relays = list(d, func() relayHandover {
		return relayHandover{Pipe: d.num(), Log: d.num(), Max: d.int(), Off: d.int(), Dropped: d.int(), Tty: d.bool(), MainTty: d.bool()}
	})
	st.EtcTargets = d.strs()
	st.EtcFDs = make([]int, len(st.EtcTargets))
	for i := range st.EtcFDs {
		st.EtcFDs[i] = d.num()
	}
	if d.bad || len(d.b) != 0 {
		return nil, errBadState
	}
	return st, nil
}

// monotonic is CLOCK_MONOTONIC in nanoseconds.
func monotonic() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // cannot fail for this clock
	return ts.Nano()
}

// openExe opens the program PID 1 runs, before any workload exists: the
// magic link names the very file, whatever is mounted where since.
func openExe() int {
	fd, err := unix.Open("/proc/self/exe", unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		// No handover then; the init serves as before.
		fmt.Fprintln(os.Stderr, "lightbox init: open /proc/self/exe, no handover when idle:", err)
		return -1
	}
	return fd
}

// wantHandover says whether an idle init should hand over: the launch's
// init at its first trim (a pooled one only once it served a connection:
// Config.Pooled), a later one once idle for handoverIdle (late) when it
// served a connection since it started.
func (s *server) wantHandover(late bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exe < 0 || s.active > 0 || s.destroying {
		return false
	}
	if late {
		return s.gen > 0 && s.served > 0
	}
	return s.gen == 0 && (!s.cfg.Pooled || s.served > 0)
}

// requestHandover makes the accept loop's Accept return, so that it hands
// over (see run).
func (s *server) requestHandover() {
	_ = s.ln.SetDeadline(time.Unix(1, 0)) // fails only on a closed listener: the sandbox is ending
}

// handover execs a new init when nothing is in flight; it returns when it
// did not (busy, or the exec failed).
func (s *server) handover() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exe < 0 || s.active > 0 || s.destroying {
		return
	}
	if s.cfg.Nproc > 0 && tasks()+handoverRoom > s.cfg.Nproc {
		// The new init could not make its threads (RLIMIT_NPROC counts
		// them with the workloads'): not now.
		return
	}
	// Hold the reaper: no status is reaped (and lost) from here to the
	// exec; the new init reaps what ended meanwhile.
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	st := handoverState{
		Gen: s.gen + 1, Detached: s.detached, Taken: s.taken, Setgroups: s.setgr, Deadline: s.deadline, SyncOnEnd: s.cfg.SyncOnEnd,
		Name: s.cfg.Name, Env: s.cfg.Env, Workdir: s.cfg.Workdir, User: s.cfg.User,
		AllowUserNS: s.cfg.AllowUserNamespaces, Cgroup: s.cfg.Cgroup, WorkloadOOMScore: s.cfg.WorkloadOOMScore, Nproc: s.cfg.Nproc,
		Exe: s.exe, Listener: fileFD(s.ln), Lock: s.cfg.FDs.Lock, Liveness: -1, Workload: s.cfg.FDs.Workload, WorkloadV1: s.cfg.FDs.WorkloadV1, CPUMax: s.cfg.FDs.CPUMax, Gone: s.cfg.FDs.Gone, UpperFS: s.cfg.FDs.UpperFS,
		Leases: append(slices.Clone(s.cfg.FDs.Leases), s.leases...),
	}
	if s.liveness != nil {
		st.Liveness = s.cfg.FDs.Liveness
	}
	if s.main != nil {
		if _, ok := s.r.waiters[s.main.pid]; !ok {
			return // reaped: its status is on its way to mainEnded
		}
		st.Main = s.main.pid
	}
	relays.Lock()
	defer relays.Unlock()
	for rl := range relays.set {
		rl.mu.Lock()
		defer rl.mu.Unlock()
		st.Relays = append(st.Relays, relayHandover{Pipe: fileFD(rl.pipe), Log: fileFD(rl.log.f), Max: rl.log.max, Off: rl.log.off, Dropped: rl.log.dropped, Tty: rl.tty, MainTty: rl == s.mainTty})
	}
	for i, f := range s.cfg.etcFiles {
		if i < len(s.cfg.Etc) {
			st.EtcTargets, st.EtcFDs = append(st.EtcTargets, s.cfg.Etc[i].Target), append(st.EtcFDs, fileFD(f))
		}
	}
	err := s.execNew(&st)
	// Still here: the exec failed, and the init goes on as it was.
	unix.Close(s.exe)
	s.exe = -1
	if errors.Is(err, unix.ENOENT) {
		// The program's ELF interpreter is not in the sandbox.
		err = fmt.Errorf("%w (a dynamically linked init cannot run again after pivot_root; build lightbox with CGO_ENABLED=0)", err)
	}
	fmt.Fprintln(os.Stderr, "lightbox init: no handover to a new init, the init stays as it is:", err)
}

// execNew writes st to a memfd and execs the init's program with it; it
// returns only on failure, with every descriptor close-on-exec again.
func (s *server) execNew(st *handoverState) error {
	b := appendState(nil, st)
	mfd, err := unix.MemfdCreate("lightbox-init-handover", 0)
	if err != nil {
		return fmt.Errorf("memfd_create: %w", err)
	}
	defer unix.Close(mfd)
	if err := writeAll(mfd, b); err != nil {
		return fmt.Errorf("write the handover state: %w", err)
	}
	keep := st.fds()
	// No workload can be forked meanwhile (the spawner forks under s.mu,
	// which we hold), so none inherits these.
	for _, fd := range keep {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			cloexecAll(keep)
			return fmt.Errorf("keep descriptor %d: %w", fd, err)
		}
	}
	env := []string{envHandover + "=" + strconv.Itoa(mfd)}
	for _, kv := range os.Environ() {
		// GOGC=off was for setup; the new init collects as usual.
		if !strings.HasPrefix(kv, "GOGC=") && !strings.HasPrefix(kv, envHandover+"=") {
			env = append(env, kv)
		}
	}
	argv := []string{os.Args[0], "handover", strconv.Itoa(st.Gen)}
	err = sys.Fexecve(s.exe, argv, env)
	cloexecAll(keep)
	return err
}

// handoverRoom is how many tasks a new init needs free under RLIMIT_NPROC
// (it makes 5 to 8 threads), with a margin.
const handoverRoom = 16

// tasks counts the threads of every process in the sandbox (its pid
// namespace's /proc, which the init mounted).
func tasks() int64 {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 1 << 62 // unknown: no handover
	}
	var n int64
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		ts, err := os.ReadDir("/proc/" + e.Name() + "/task")
		if err != nil {
			continue // gone meanwhile
		}
		n += int64(len(ts))
	}
	return n
}

// fds lists the descriptors st names (the memfd aside).
func (st *handoverState) fds() []int {
	fds := []int{st.Exe, st.Listener, st.Lock}
	if st.Liveness >= 0 {
		fds = append(fds, st.Liveness)
	}
	if st.Workload > 0 {
		fds = append(fds, st.Workload)
	}
	fds = append(fds, st.WorkloadV1...)
	fds = append(fds, st.CPUMax...)
	if st.Gone > 0 {
		fds = append(fds, st.Gone)
	}
	if st.UpperFS > 0 {
		fds = append(fds, st.UpperFS)
	}
	fds = append(fds, st.Leases...)
	for _, r := range st.Relays {
		fds = append(fds, r.Pipe, r.Log)
	}
	return append(fds, st.EtcFDs...)
}

func cloexecAll(fds []int) {
	for _, fd := range fds {
		unix.CloseOnExec(fd)
	}
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// fileFD is the descriptor number behind f without os.File.Fd, which
// would make a pollable file blocking.
func fileFD(f interface {
	SyscallConn() (syscall.RawConn, error)
}) int {
	fd := -1
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(u uintptr) { fd = int(u) }) // fails only on a closed file: fd stays -1 and the exec's F_SETFD fails
	}
	return fd
}

// resuming reports whether this process is an init a handover started.
func resuming() bool { return os.Getenv(envHandover) != "" }

// resume is Main for an init a handover started: it takes over the
// sandbox from the handover state and serves. It never returns. What it
// allocates stays resident (the point of the handover is a small heap);
// the spawner, which costs little of it, starts at once beside the
// server, so that the first command does not wait for it.
func resume() {
	// First: exec made us dumpable again.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		resumeFailed(fmt.Errorf("prctl(PR_SET_DUMPABLE): %w", err))
	}
	// Next: the signals the runtime's defaults would end us for.
	sigs := notifySignals()
	st, err := readHandover()
	if err != nil {
		resumeFailed(err)
	}
	for _, fd := range st.fds() {
		unix.CloseOnExec(fd)
	}
	cfg := &Config{
		Version: Version, Name: st.Name, Env: st.Env, Workdir: st.Workdir, User: st.User,
		AllowUserNamespaces: st.AllowUserNS, Cgroup: st.Cgroup, WorkloadOOMScore: st.WorkloadOOMScore, Nproc: st.Nproc, SyncOnEnd: st.SyncOnEnd,
		FDs: FDs{Report: -1, Passer: -1, Exe: -1, Listener: st.Listener, Lock: st.Lock, Liveness: st.Liveness, Workload: st.Workload, WorkloadV1: st.WorkloadV1, CPUMax: st.CPUMax, Gone: st.Gone, UpperFS: st.UpperFS, Leases: st.Leases},
	}
	for i, t := range st.EtcTargets {
		cfg.Etc = append(cfg.Etc, File{Target: t})
		cfg.etcFiles = append(cfg.etcFiles, os.NewFile(uintptr(st.EtcFDs[i]), t))
	}
	var keep []int
	if st.Main > 0 {
		keep = []int{st.Main}
	}
	r := newReaper(keep...)
	s, err := newServerExe(cfg, r, nil, st.Exe)
	if err != nil {
		resumeFailed(err)
	}
	s.gen, s.detached, s.taken, s.deadline, s.setgr, s.sigs = st.Gen, st.Detached, st.Taken, st.Deadline, st.Setgroups, sigs
	close(s.reported) // the launch's init wrote the ready report: exit need not wait for it
	if st.Main > 0 {
		p := &proc{pid: st.Main, done: make(chan struct{})}
		s.main = p
		r.mu.Lock()
		done := r.waiters[st.Main]
		r.mu.Unlock()
		go func() {
			p.ws = <-done
			close(p.done)
			s.mainEnded(p)
		}()
	}
	for _, rh := range st.Relays {
		rl := startRelay(os.NewFile(uintptr(rh.Pipe), "relay"), &CappedLog{f: os.NewFile(uintptr(rh.Log), "log"), off: rh.Off, max: rh.Max, dropped: rh.Dropped}, rh.Tty)
		if rh.MainTty {
			s.mainTty = rl
		}
	}
	// The spawner now, not with the first command: that command's client
	// (a warm pool's take, an exec after a quiet spell) waited ~0.4 ms
	// for its setup, and it keeps ~20 kB resident (bench/NOTES.md,
	// 2026-12-01 poolidle). A failure here comes again, and is reported,
	// with the first command (spawn starts it then).
	go func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		_ = s.ensureSpawner() // see above
	}()
	// Give back what the start used once it is over.
	time.AfterFunc(idleTrim, s.trimIfIdle)
	s.run()
}

func readHandover() (*handoverState, error) {
	v := os.Getenv(envHandover)
	_ = os.Unsetenv(envHandover) // fails only on a malformed name: a constant
	fd, err := strconv.Atoi(v)
	if err != nil {
		return nil, fmt.Errorf("handover state fd %q: %w", v, err)
	}
	defer unix.Close(fd) // a memfd, read to its end
	var fst unix.Stat_t
	if err := unix.Fstat(fd, &fst); err != nil {
		return nil, fmt.Errorf("read the handover state: %w", &os.PathError{Op: "fstat", Path: "memfd", Err: err})
	}
	b := make([]byte, fst.Size)
	if err := readFullAt(fd, b); err != nil {
		return nil, fmt.Errorf("read the handover state: %w", &os.PathError{Op: "read", Path: "memfd", Err: err})
	}
	return parseState(b)
}

// resumeFailed ends the sandbox: a new init that cannot take over has no
// way back to the old one.
func resumeFailed(err error) {
	fmt.Fprintln(os.Stderr, "lightbox init: take over from the old init:", err)
	_ = unix.Kill(-1, unix.SIGKILL) // ESRCH when nothing else is left; our exit kills the rest anyway
	os.Exit(1)
}
