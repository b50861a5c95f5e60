package nsinit

import (
	"errors"
	"fmt"
	"github.com/beamhop/lightbox/internal/environ"
	"github.com/beamhop/lightbox/internal/sys"
	"github.com/beamhop/lightbox/internal/sys/seccomp"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// server is PID 1 after setup: it serves the exec socket, watches the
// liveness pipe, forwards signals and ends the sandbox.
type server struct {
	cfg   *Config
	ln    *net.UnixListener
	lock  *os.File
	r     *reaper
	sp    *spawner
	setgr bool // setgroups(2) allowed in our user namespace
	// reported is closed once Main has written the ready report: the
	// init does not end before it (a main command as short as true could
	// end first, and the launcher would read "exited during setup").
	reported chan struct{}

	mu         sync.Mutex
	detached   bool
	destroying bool
	timedOut   bool // the destroy under way is the timeout's
	main       *proc
	mainTty    *relay        // the main command's terminal, when the init holds it (TtyLog)
	mainDone   chan struct{} // closed when the main command ended
	mainStatus Reply
	pending    int           // replies about the main command still to send
	drained    chan struct{} // closed when pending drops to 0 (mainEnded waits)
	// replying holds each exec connection's workload by pid, with a
	// channel closed once its exit reply is sent (or its client is
	// gone): exit lets those whose workload ended send it first.
	replying map[int]chan struct{}
	// endKilled holds, by pid, the workloads still running (not reaped)
	// when exit, the commands that had ended answered, sends SIGKILL to
	// the rest: such a command was running when the sandbox ended, and
	// its client hears the connection close (ErrNotRunning, "the
	// sandbox ended before the command did"), not a status that depends
	// on whether the reaper ran before the init's own exit.
	endKilled map[int]bool

	taken    bool        // a take was applied (at most one)
	leases   []int       // lease files a take passed: held for the sandbox's life
	active   int         // connections being served
	trim     *time.Timer // gives memory back once no connection is served
	late     *time.Timer // hands over again once idle for handoverIdle
	liveness *os.File    // the liveness pipe, nil once at its end
	deadline int64       // CLOCK_MONOTONIC ns when the timeout ends the sandbox; 0 = none

	sigs initSignals // notifySignals' channels, read from run on

	// The handover (handover_linux.go).
	exe    int // O_PATH descriptor of the init's program; -1: no handover
	gen    int // handovers since launch
	served int // connections accepted since this process started
}

// idleTrim is how long the init waits, once it serves no connection, before
// it gives the memory its requests used back to the host: an idle sandbox
// stays at its idle size however many commands ran in it (bench/NOTES.md:
// 1.1 MB anonymous idle, 2.3 MB after 300 execs without this). The first
// trim after the launch is a handover to a new init (handover_linux.go).
const idleTrim = time.Second

// handoverIdle is how long an init that handed over already waits, once
// it serves no connection, before it hands over again (when it served
// any since): each handover costs ~3 ms of CPU, which a sandbox used
// every few seconds should not pay each time.
const handoverIdle = 10 * time.Second

// busy counts a connection in (+1) or out (-1), and arms the trim when the
// last one is done.
func (s *server) busy(d int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active += d
	if d > 0 {
		s.served++
	}
	if s.active > 0 {
		return
	}
	if s.trim == nil {
		s.trim = time.AfterFunc(idleTrim, s.trimIfIdle)
	} else {
		s.trim.Reset(idleTrim)
	}
	if s.gen == 0 {
		return // the trim hands over
	}
	if s.late == nil {
		s.late = time.AfterFunc(handoverIdle, func() {
			if s.wantHandover(true) {
				s.requestHandover()
			}
		})
	} else {
		s.late.Reset(handoverIdle)
	}
}

func (s *server) trimIfIdle() {
	if s.wantHandover(false) {
		s.requestHandover()
		return
	}
	s.mu.Lock()
	idle := s.active == 0
	s.mu.Unlock()
	if idle {
		freeMemory()
	}
}

// launchOver gives back what setup used: by a handover when idle, else
// (a connection is served) by freeing memory, which the trim after the
// last connection completes. A pooled init that has served nothing yet
// does neither: the collection that FreeOSMemory forces is the first of
// its life, and its own structures cost more than it frees (measured:
// 0.80–0.83 MB anonymous idle without it, 1.00–1.14 MB with it), and what
// it gave back the take's first command would fault in again.
func (s *server) launchOver() {
	if s.wantHandover(false) {
		s.requestHandover()
		return
	}
	s.mu.Lock()
	waiting := s.cfg.Pooled && s.served == 0
	s.mu.Unlock()
	if waiting {
		return
	}
	freeMemory()
}

// freeMemory gives the host back what the init does not use. (A second
// collection to empty reqBufs' victim cache measured worse: the buffers'
// untouched pages cost nothing, the collector's own structures do.)
func freeMemory() {
	debug.FreeOSMemory()
}

type proc struct {
	pid  int
	done chan struct{}
	ws   syscall.WaitStatus
}

func newServer(cfg *Config, r *reaper, sp *spawner) (*server, error) {
	return newServerExe(cfg, r, sp, -1)
}

// newServerExe is newServer with the O_PATH descriptor of the init's
// program (-1: open it now).
func newServerExe(cfg *Config, r *reaper, sp *spawner, exe int) (*server, error) {
	lf := os.NewFile(uintptr(cfg.FDs.Listener), "init.sock")
	l, err := net.FileListener(lf)
	_ = lf.Close() // a copy: the listener has its own fd
	if err != nil {
		return nil, fmt.Errorf("exec socket: %w", err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		return nil, fmt.Errorf("exec socket: not a unix socket")
	}
	if exe < 0 {
		exe = openExe()
	}
	s := &server{cfg: cfg, ln: ul, lock: os.NewFile(uintptr(cfg.FDs.Lock), "lock"), reported: make(chan struct{}), mainDone: make(chan struct{}), exe: exe}
	if b, err := os.ReadFile("/proc/self/setgroups"); err == nil {
		s.setgr = string(b) != "deny\n"
	}
	s.r, s.sp = r, sp
	return s, nil
}

// initSignals are PID 1's signal channels: those forwarded to the main
// command (or ending the sandbox), and those swallowed.
type initSignals struct{ forward, swallow chan os.Signal }

// notifySignals takes over PID 1's signals from the Go runtime's
// defaults; what comes before run reads them waits in the channels.
func notifySignals() initSignals {
	sigs := initSignals{forward: make(chan os.Signal, 8), swallow: make(chan os.Signal, 4)}
	signal.Notify(sigs.forward, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
	// Go's default for these is to crash with a stack dump; a workload
	// may send them to PID 1 (the kernel delivers every signal that has a
	// handler, and Go installs one for all): swallow them. Real faults
	// still crash: neither Notify nor Ignore applies to them. Each
	// Notify of a new signal is a round trip to the runtime's signal
	// thread, on the way from pivot_root to the first command; Ignore
	// drops a sent signal with none, but for SIGABRT (a signal os/signal
	// may take) it would set SIG_IGN, which every workload would
	// inherit: that one is notified and drained.
	signal.Ignore(unix.SIGILL, unix.SIGTRAP, unix.SIGSYS, unix.SIGSTKFLT, unix.SIGBUS, unix.SIGFPE, unix.SIGSEGV)
	signal.Notify(sigs.swallow, unix.SIGABRT)
	return sigs
}

func (s *server) run() {
	if s.sigs.forward == nil {
		s.sigs = notifySignals()
	}
	go s.forward(s.sigs.forward)
	go func() {
		for range s.sigs.swallow {
		}
	}()
	if s.cfg.FDs.Liveness >= 0 {
		// Non-blocking, so that the read waits in the poller: a blocking
		// read would hold the only P (GOMAXPROCS=1) until sysmon takes it
		// back, delaying the first requests by milliseconds.
		_ = unix.SetNonblock(s.cfg.FDs.Liveness, true) // fails only on a bad fd: the read that follows then fails
		s.mu.Lock()
		s.liveness = os.NewFile(uintptr(s.cfg.FDs.Liveness), "liveness")
		go s.watch(s.liveness)
		s.mu.Unlock()
	}
	if s.deadline == 0 && s.cfg.Timeout > 0 {
		s.deadline = monotonic() + int64(s.cfg.Timeout)
	}
	if s.deadline != 0 {
		time.AfterFunc(time.Duration(s.deadline-monotonic()), func() {
			s.destroy(2*time.Second, 0, true)
			s.settle()
			s.exit()
		})
	}
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			switch {
			case errors.Is(err, net.ErrClosed):
				select {}
			case errors.Is(err, os.ErrDeadlineExceeded):
				// requestHandover: hand over here, where no connection
				// is accepted meanwhile.
				_ = s.ln.SetDeadline(time.Time{}) // fails only on a closed listener: the next Accept says so
				s.handover()
				continue
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.busy(1)
		go func() {
			defer s.busy(-1)
			s.serve(c)
		}()
	}
}

// watch ends the sandbox when the launcher goes away, unless detached.
func (s *server) watch(f *os.File) {
	_, _ = io.Copy(io.Discard, f) // ends at EOF or an error: either way the launcher is gone
	s.mu.Lock()
	detached := s.detached
	s.liveness = nil // not handed over from now on
	if !detached {
		// The main command that exit's SIGKILL ends records no status:
		// the sandbox reads as dead (gc's, or the next launch's, to
		// remove), not as exited (137) for ps -a until an rm nobody
		// knows to run (a foreground run whose lightbox was killed).
		s.destroying = true
	}
	s.mu.Unlock()
	_ = f.Close() // the liveness pipe's read end: no data
	if !detached {
		s.exit()
	}
}

// forward passes the signals PID 1 receives to the main command; without
// one, SIGTERM and SIGINT end the sandbox.
func (s *server) forward(sigs chan os.Signal) {
	for sig := range sigs {
		s.mu.Lock()
		m := s.main
		s.mu.Unlock()
		switch {
		case m != nil:
			_ = unix.Kill(m.pid, sig.(syscall.Signal)) // our child (reaped only by us): fails only once it has exited
		case sig == unix.SIGTERM || sig == unix.SIGINT:
			go func() {
				if s.destroy(10*time.Second, 0, false) {
					s.exit()
				}
			}()
		}
	}
}

// exit ends the sandbox at once (once the commands that ended have had
// their status sent, replyEnded): PID 1's exit kills every process in
// the pid namespace, and the mounts go with the mount namespace.
func (s *server) exit() {
	<-s.reported // a write to a pipe: it does not wait for the launcher
	s.replyEnded(time.After(2 * time.Second))
	s.mu.Lock()
	s.r.mu.Lock()
	s.endKilled = make(map[int]bool, len(s.r.waiters))
	for pid := range s.r.waiters {
		s.endKilled[pid] = true
	}
	s.r.mu.Unlock()
	s.mu.Unlock()
	liftCPULimit(s.cfg.FDs.CPUMax)
	_ = unix.Kill(-1, unix.SIGKILL) // ESRCH when nothing else is left; our exit kills the rest anyway
	waitLogCopiers(2 * time.Second) // the writers are gone: what is left to copy is in the pipes
	s.sayGone()
	os.Exit(0)
}

// goneWait bounds sayGone's wait for the processes the exit's SIGKILL
// ends: one that does not go at once (asleep in an uninterruptible wait)
// leaves the launcher to wait for our exit, as without the gone pipe.
const goneWait = time.Second

// sayGone tells the launcher, on the gone pipe (FDs.Gone), that no other
// process of the sandbox is left and that the leases are closed: what
// the caller of Destroy waits for. Destroy then returns while the kernel
// tears this process down (its memory, its namespaces, the overlay:
// ~1 ms); the reap, the cgroups and the tree follow in the launcher's
// background.
func (s *server) sayGone() {
	if s.cfg.FDs.Gone <= 0 {
		return // none: a launch without one (the OCI face's)
	}
	t := time.NewTimer(goneWait)
	defer t.Stop()
	select {
	case <-s.r.noChildren():
	case <-t.C:
		return
	}
	for _, fd := range s.cfg.FDs.Leases {
		_ = unix.Close(fd) // a lease file opened read-only: its flock goes with it
	}
	s.mu.Lock()
	for _, fd := range s.leases {
		_ = unix.Close(fd) // as above
	}
	s.leases = nil
	s.mu.Unlock()
	_, _ = unix.Write(s.cfg.FDs.Gone, []byte{'G'}) // EPIPE when the launcher is gone: nobody waits then
}

// replyEnded waits until every exec connection whose workload has ended
// has sent its exit status, or until limit, so that the init's exit does
// not outrun them: a command that ended just before the main command
// (which ends the sandbox; one that made it end, say) is reaped in the
// same wait4 loop, or just before, and its reply, a goroutine away, must
// not be lost with the init (its client would read "lost the init"). A
// workload still running is not waited for: the exit kills it.
func (s *server) replyEnded(limit <-chan time.Time) {
	s.r.reap() // what ended by now: its status goes to its waiter
	var wait []chan struct{}
	s.mu.Lock()
	s.r.mu.Lock()
	for pid, replied := range s.replying {
		if _, running := s.r.waiters[pid]; !running {
			wait = append(wait, replied)
		}
	}
	s.r.mu.Unlock()
	s.mu.Unlock()
	for _, replied := range wait {
		select {
		case <-replied:
		case <-limit:
			return
		}
	}
}

// errMainExited and errNoMain are signalMain's refusals; their text
// reaches the client, which matches it.
var (
	errMainExited = errors.New(MsgMainExited)
	errNoMain     = errors.New(MsgNoMain)
)

// signalMain sends sig to the main command.
func (s *server) signalMain(sig int) error {
	if sig <= 0 || sig > 64 {
		return fmt.Errorf("signal %d: out of range", sig)
	}
	s.mu.Lock()
	m := s.main
	s.mu.Unlock()
	if m == nil {
		return errNoMain
	}
	select {
	case <-m.done:
		return errMainExited
	default:
	}
	// Our child, not reaped before m.done is closed: the pid is its own.
	if err := unix.Kill(m.pid, syscall.Signal(sig)); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errMainExited // reaped since the check above
		}
		return fmt.Errorf("signal the main command: %w", err)
	}
	return nil
}

// destroy stops the main command with sig (SIGTERM when 0), or every
// process with SIGTERM, and waits up to grace; the caller then exits. It
// returns false at once to a caller that lost the race with another
// destroy.
func (s *server) destroy(grace time.Duration, sig syscall.Signal, timedOut bool) bool {
	if sig <= 0 || sig > 64 {
		sig = unix.SIGTERM
	}
	s.mu.Lock()
	if s.destroying {
		s.mu.Unlock()
		return false
	}
	s.destroying, s.timedOut = true, timedOut
	m := s.main
	s.mu.Unlock()
	deadline := time.After(grace)
	if m != nil {
		_ = unix.Kill(m.pid, sig) // our child: fails only once it has exited, which m.done tells
		select {
		case <-m.done:
		case <-deadline:
		}
	} else {
		_ = unix.Kill(-1, unix.SIGTERM) // ESRCH when nothing else is left, which noChildren tells
		select {
		case <-s.r.noChildren():
		case <-deadline:
		}
	}
	if timedOut {
		st := Status{Version: Version, ExitCode: 124, TimedOut: true, FinishedAt: time.Now().UTC()}
		if m != nil {
			<-s.killMain(m)
			st.ExitCode, st.Signal = exitCode(m.ws)
		}
		s.record(st)
	}
	return true
}

func (s *server) killMain(m *proc) chan struct{} {
	liftCPULimit(s.cfg.FDs.CPUMax)     // the sandbox ends: exit kills the rest
	_ = unix.Kill(m.pid, unix.SIGKILL) // our child: fails only once it has exited, which m.done tells
	return m.done
}

// record writes the sandbox's final status into its lock file. Not
// fsynced: readers (Info, wait) read it through the page cache, which
// keeps it after the init is gone; only a host crash in the seconds
// before writeback could lose it, and the sandbox then reads as dead,
// as it would after a crash between the truncate and the write. An
// fsync here cost 0.3–2 ms of every `run` (the launcher waits for the
// init's exit, which waits for the fsync, and the exit reply waited
// for the P the fsync's thread held: bench/NOTES.md, initexec).
//
// With Config.SyncOnEnd (a sandbox that stays once ended, for a later
// commit) the upper dir's filesystem is synced first, so that the status
// never reaches the disk ahead of what the sandbox wrote in its volatile
// upper: after a power cut the sandbox reads exited with its upper whole,
// or dead (gc removes it), never exited with torn files. A syncfs, not a
// walk of the upper fsyncing each file: one call, whatever the upper
// holds (it also writes out other sandboxes' dirty pages, which only a
// kept sandbox's end pays for); two when the upper is on a filesystem of
// its own (FDs.UpperFS: a loop-mounted capped layer, whose dirty pages
// the store's syncfs does not reach), that one first, then the store's,
// which holds its image file; then the status is written and fsynced
// (a kept sandbox whose status is lost reads dead, and the next launch
// sets dead sandboxes aside for removal). Processes the main command left behind
// are killed after this (exit); what they wrote since is as unsure as
// what a kill leaves.
func (s *server) record(st Status) {
	if s.cfg.SyncOnEnd {
		// An error is a writeback that failed (EIO, ENOSPC): what the
		// sandbox wrote may be lost already, so no status says its upper
		// is whole. The sandbox reads as dead, and this line stays in
		// the lock file, which the status would have replaced.
		for _, fd := range []int{s.cfg.FDs.UpperFS, int(s.lock.Fd())} {
			if fd <= 0 {
				continue
			}
			if err := sys.Syncfs(fd); err != nil {
				fmt.Fprintln(os.Stderr, "lightbox init: sync the upper dir's filesystem before recording the status:", err)
				return
			}
		}
	}
	b, err := MarshalStatus(st)
	if err == nil {
		err = s.lock.Truncate(0)
	}
	if err == nil {
		_, err = s.lock.WriteAt(b, 0)
	}
	if err == nil && s.cfg.SyncOnEnd {
		// The status itself on the disk too: a kept sandbox whose status
		// a power cut lost reads dead, and gc would remove it with what
		// it wrote (one fsync of one block, after the syncfs above).
		err = s.lock.Sync()
	}
	if err != nil {
		// Nobody to tell but the log: the sandbox then reads as dead, not
		// exited, and its status is lost.
		fmt.Fprintln(os.Stderr, "lightbox init: record the status:", err)
	}
}

func (s *server) serve(c *net.UnixConn) {
	defer func() { _ = c.Close() }() // a request socket: every reply was sent (or its failure is the client's loss)
	bp := reqBufs.Get().(*[]byte)
	req, fds, err := readRequest(c, *bp)
	reqBufs.Put(bp)
	if err != nil {
		closeAll(fds)
		_ = send(c, Reply{Type: ReplyError, Error: err.Error()}, nil) // the client may be gone: nobody to tell then
		return
	}
	switch req.Op {
	case OpExec:
		s.exec(c, req, fds)
		return
	case OpWait:
		s.mu.Lock()
		hasMain := s.main != nil
		if hasMain {
			s.pending++
		}
		s.mu.Unlock()
		if !hasMain {
			_ = send(c, Reply{Type: ReplyError, Error: MsgNoMain}, nil) // the client may be gone: nobody to tell then
			return
		}
		defer s.done()
		<-s.mainDone
		_ = send(c, s.mainStatus, nil) // the client may be gone: nobody to tell then
	case OpTake:
		err := s.take(req.Take, fds)
		fds = nil // take closed them, or holds the leases
		if err != nil {
			_ = send(c, Reply{Type: ReplyError, Error: err.Error()}, nil) // the client may be gone: nobody to tell then
			return
		}
		_ = send(c, Reply{Type: ReplyOK}, nil) // the client may be gone: nobody to tell then
	case OpEtc:
		s.mu.Lock()
		err := rewriteEtc(s.cfg.Etc, s.cfg.etcFiles, req.Etc)
		s.mu.Unlock()
		if err != nil {
			_ = send(c, Reply{Type: ReplyError, Error: err.Error()}, nil) // the client may be gone: nobody to tell then
			break
		}
		_ = send(c, Reply{Type: ReplyOK}, nil) // the client may be gone: nobody to tell then
	case OpResize:
		// Not a command's own connection: the main command's terminal,
		// which the init holds (TtyLog), as a later client resizes it.
		s.mu.Lock()
		tty := s.mainTty
		s.mu.Unlock()
		err := errors.New("the main command has no terminal the init holds")
		if tty != nil {
			err = tty.resize(req.Rows, req.Cols)
		}
		if err != nil {
			_ = send(c, Reply{Type: ReplyError, Error: fmt.Sprintf("resize: %v", err)}, nil) // the client may be gone: nobody to tell then
			break
		}
		_ = send(c, Reply{Type: ReplyOK}, nil) // the client may be gone: nobody to tell then
	case OpDetach:
		s.mu.Lock()
		s.detached = true
		s.mu.Unlock()
		_ = send(c, Reply{Type: ReplyOK}, nil) // the client may be gone: nobody to tell then
	case OpSignal:
		// Not a command's own connection: the main command, as `lightbox
		// kill` and `stop` signal it from any process.
		if err := s.signalMain(req.Signal); err != nil {
			_ = send(c, Reply{Type: ReplyError, Error: err.Error()}, nil) // the client may be gone: nobody to tell then
			break
		}
		_ = send(c, Reply{Type: ReplyOK}, nil) // the client may be gone: nobody to tell then
	case OpDestroy:
		s.destroy(req.Grace, syscall.Signal(req.Signal), false)
		s.settle()
		_ = send(c, Reply{Type: ReplyOK}, nil) // the client may be gone: nobody to tell then
		s.exit()
	default:
		_ = send(c, Reply{Type: ReplyError, Error: fmt.Sprintf("unknown request %q", req.Op)}, nil) // the client may be gone: nobody to tell then
	}
	closeAll(fds)
}

// reqBufs holds buffers for first requests, so that an idle init does not
// keep one per connection it ever served. A larger request comes in a
// memfd (ReadMsg).
var reqBufs = sync.Pool{New: func() any { b := make([]byte, MaxInline); return &b }}

func readRequest(c *net.UnixConn, buf []byte) (Request, []int, error) {
	var req Request
	fds, err := ReadMsg(c, buf, MaxFDsPerMessage, &req)
	return req, fds, err
}

func send(c *net.UnixConn, r Reply, fds []int) error {
	return WriteMsg(c, &r, fds)
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// exec starts a workload for the connection c and relays its life: signal
// and resize requests in, the exit status out. Closing the connection
// kills a workload that is not the main command.
func (s *server) exec(c *net.UnixConn, req Request, fds []int) {
	e := req.Exec
	fail := func(code int, err error) {
		closeAll(fds)
		_ = send(c, Reply{Type: ReplyError, Code: code, Error: err.Error()}, nil) // the client may be gone: nobody to tell then
	}
	if e == nil || len(e.Args) == 0 {
		fail(0, errors.New("exec: no command"))
		return
	}
	if !e.Tty && len(fds) != 3 {
		fail(0, fmt.Errorf("exec: want 3 stdio fds, got %d", len(fds)))
		return
	}
	if e.Tty && e.TtyLog && len(fds) != 1 {
		fail(0, fmt.Errorf("exec: want the terminal's log fd, got %d fds", len(fds)))
		return
	}
	s.mu.Lock()
	defUser, defEnv, defDir, name := s.cfg.User, s.cfg.Env, s.cfg.Workdir, s.cfg.Name // a take may change them
	s.mu.Unlock()
	u, err := lookupUser(firstNonEmpty(e.User, defUser))
	if err != nil {
		fail(0, err)
		return
	}
	env := environ.Merge(defEnv, e.Env)
	defaults := [][2]string{{"PATH", environ.DefaultPath}, {"HOME", u.home}, {"HOSTNAME", name}}
	if e.Tty {
		// On a terminal, as docker and podman run one: without TERM,
		// clear, top, less and vi refuse to start.
		defaults = append(defaults, [2]string{"TERM", "xterm"})
	}
	for _, kv := range defaults {
		if _, ok := environ.Lookup(env, kv[0]); !ok {
			env = append(env, kv[0]+"="+kv[1])
		}
	}
	dir := firstNonEmpty(e.Dir, defDir, "/")
	if st, err := os.Stat(dir); err != nil {
		fail(0, fmt.Errorf("workdir: %w", err))
		return
	} else if !st.IsDir() {
		fail(0, fmt.Errorf("workdir %s: not a directory", dir))
		return
	}
	argv0, err := lookPath(e.Args[0], dir, env)
	if err != nil {
		var se *startError
		if errors.As(err, &se) {
			fail(se.code, err)
		} else {
			fail(0, err)
		}
		return
	}
	var master, slave *os.File
	var relayW []*os.File // our copies of the log pipes' write ends
	files := make([]uintptr, 3)
	attr := &syscall.SysProcAttr{Setsid: true}
	var ttyLog *os.File
	var tty *relay // the terminal's relay, when the init holds it (TtyLog)
	if e.Tty && e.TtyLog {
		ttyLog, fds = os.NewFile(uintptr(fds[0]), "log"), nil
		defer func() {
			if ttyLog != nil {
				_ = ttyLog.Close() // the exec failed before its relay took it: nothing written
			}
		}()
	}
	if e.Tty {
		m, sl, err := openPty(e.Rows, e.Cols)
		if err != nil {
			fail(0, err)
			return
		}
		// Closed once the workload has its copies (and on every failure:
		// the deferred Close is then a no-op), so that the client sees
		// the pty hang up as soon as the workload's side is gone.
		defer func() { _ = sl.Close() }() // the pty's peer: the workload has its own copies
		master, slave = m, sl
		if u.uid != 0 {
			// A terminal left root's would not be the user's to reopen
			// (tty, ssh-style checks): the exec fails instead.
			if err := unix.Fchown(int(sl.Fd()), int(u.uid), -1); err != nil {
				_ = m.Close() // a pty master never handed out: the exec fails
				fail(0, fmt.Errorf("exec: chown the terminal to %d: %w", u.uid, err))
				return
			}
		}
		if ttyLog != nil {
			// The init holds the terminal and relays its output into
			// the log; the relay ends (and closes both) once every
			// holder of the peer is gone, the exec failing included.
			tty, err = relayTty(m, ttyLog, e.LogMax)
			master, ttyLog = nil, nil // the relay's now (closed on failure)
			if err != nil {
				fail(0, fmt.Errorf("exec: %w", err))
				return
			}
		}
		for i := range files {
			files[i] = sl.Fd()
		}
		attr.Setctty = true
		attr.Ctty = 0
	} else {
		for i := range files {
			files[i] = uintptr(fds[i])
		}
		if e.LogMax > 0 {
			// The output goes to capped log files through the init.
			for i := 1; i <= 2; i++ {
				w, err := relayCapped(fds[i], e.LogMax)
				if err != nil {
					fail(0, fmt.Errorf("exec: log relay: %w", err))
					return
				}
				fds[i] = -1                      // the relay owns the file now
				defer func() { _ = w.Close() }() // the relay's write end: closed below once the workload has its copy; here only on failure
				relayW = append(relayW, w)
				files[i] = w.Fd()
			}
		}
	}
	if u.uid != 0 || u.gid != 0 || len(u.groups) > 1 {
		attr.Credential = &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: u.groups, NoSetGroups: !s.setgr}
	}
	s.mu.Lock()
	if e.Main && s.main != nil {
		s.mu.Unlock()
		if master != nil {
			_ = master.Close() // a pty master never handed out: the exec fails
		}
		fail(0, errors.New("exec: the sandbox already has a main command"))
		return
	}
	if s.destroying {
		s.mu.Unlock()
		fail(0, errors.New("exec: the sandbox is being destroyed"))
		return
	}
	if e.Main {
		s.pending++
		defer s.done()
	}
	pid, done, err := s.spawn(argv0, e.Args, &syscall.ProcAttr{Dir: dir, Env: env, Files: files, Sys: attr})
	for _, w := range relayW {
		_ = w.Close() // the workload has its copy: EOF comes when it is gone
	}
	if slave != nil {
		_ = slave.Close() // the pty's peer: the workload has its own copies
	}
	if err != nil {
		s.mu.Unlock()
		if master != nil {
			_ = master.Close() // a pty master never handed out: the exec fails
		}
		if spec := firstNonEmpty(e.User, defUser); spec != "" && errors.Is(err, unix.EINVAL) {
			// setresuid's or setgroups' EINVAL: say which id.
			if merr := checkMapped(spec, u); merr != nil {
				fail(0, merr)
				return
			}
		}
		if errors.Is(err, unix.EPERM) {
			if hint := fileCapsHint(argv0, dir); hint != "" {
				err = fmt.Errorf("%w: %s", err, hint)
			}
		}
		fail(execErrorCode(err), fmt.Errorf("exec %q: %w", e.Args[0], err))
		return
	}
	if s.cfg.WorkloadOOMScore != 0 {
		setOOMScore(pid, s.cfg.WorkloadOOMScore)
	}
	p := &proc{pid: pid, done: make(chan struct{})}
	if e.Main {
		s.main, s.mainTty = p, tty
	}
	// Closed once this connection's exit reply is sent (or its client is
	// gone): the main command's client (`lightbox run`) hears its status
	// before mainEnded's wait for the log copiers and its write of the
	// status, which it does not need, and exit waits for it once the
	// workload has ended (replyEnded). Bounded, as mainEnded's own waits:
	// a client that does not read must not keep the sandbox alive.
	replied := make(chan struct{})
	if s.replying == nil {
		s.replying = map[int]chan struct{}{}
	}
	s.replying[pid] = replied
	s.mu.Unlock()
	defer func() {
		close(replied)
		s.mu.Lock()
		if s.replying[pid] == replied { // not the pid's next workload
			delete(s.replying, pid)
		}
		s.mu.Unlock()
	}()
	closeAll(fds)
	go func() {
		p.ws = <-done
		close(p.done)
		if e.Main {
			t := time.NewTimer(2 * time.Second)
			select {
			case <-replied:
			case <-t.C:
			}
			t.Stop()
			s.mainEnded(p)
		}
	}()
	var rfds []int
	switch {
	case master != nil:
		rfds = []int{int(master.Fd())}
		// Keep the master until the workload ends: a client that went
		// away must not hang it up early... but not longer, so the
		// client sees EOF.
		go func() {
			<-p.done
			_ = master.Close() // the client has its own copy (sent below); closing ours lets it see EOF
		}()
	}
	if !e.NoStarted || e.Tty {
		_ = send(c, Reply{Type: ReplyStarted, Pid: pid}, rfds) // the client gone: the read below fails, and a non-main workload is killed
	}
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		// What follows (signals, resizes) is small: do not keep the
		// first request's large buffer for the command's whole life.
		buf := make([]byte, 4096)
		for {
			req, fds, err := readRequest(c, buf)
			closeAll(fds)
			if err != nil {
				return
			}
			switch req.Op {
			case OpSignal:
				_ = unix.Kill(pid, syscall.Signal(req.Signal)) // ESRCH once it has exited: the exit reply follows
			case OpResize:
				if tty != nil {
					_ = tty.resize(req.Rows, req.Cols) // fails only once the terminal's holders are gone: the command has ended
				} else if master != nil {
					_ = unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: req.Rows, Col: req.Cols}) // fails only once the master is closed: the command has ended
				}
			}
		}
	}()
	select {
	case <-p.done:
		code, sig := exitCode(p.ws)
		s.mu.Lock()
		// It exited as the timeout, or a destroy, ended the sandbox.
		timedOut, destroyed, endKilled := s.timedOut, s.destroying && !s.timedOut, s.endKilled[pid]
		s.mu.Unlock()
		if endKilled {
			return // ended by the sandbox's end: no status (endKilled)
		}
		_ = send(c, Reply{Type: ReplyExit, Pid: pid, Code: code, Signal: sig, TimedOut: timedOut, Destroyed: destroyed}, nil) // the client may be gone: nobody to tell then
	case <-gone:
		if !e.Main {
			// The client went away: the workload goes with it.
			_ = unix.Kill(-pid, unix.SIGKILL) // its process group: ESRCH when the command made its own, or all are gone
			_ = unix.Kill(pid, unix.SIGKILL)  // our child: fails only once it has exited
			// A client that only shut its side down (its context
			// ended) still reads: it learns the exit once the
			// command is reaped, so that its Wait returns with the
			// command gone, not merely signalled. Bounded: a process
			// stuck in the kernel is not waited for.
			select {
			case <-p.done:
				code, sig := exitCode(p.ws)
				_ = send(c, Reply{Type: ReplyExit, Pid: pid, Code: code, Signal: sig}, nil) // the client may be gone: nobody to tell then
			case <-time.After(5 * time.Second):
			}
		}
	}
}

// spawn forks a workload from the spawner, started first when there is
// none yet (a handover's new init starts it beside its server, and again
// here if that failed). Called with s.mu held.
func (s *server) spawn(argv0 string, argv []string, attr *syscall.ProcAttr) (int, chan syscall.WaitStatus, error) {
	if err := s.ensureSpawner(); err != nil {
		return 0, nil, err
	}
	return s.sp.spawn(argv0, argv, attr)
}

// ensureSpawner starts the spawner when there is none yet. Called with
// s.mu held.
func (s *server) ensureSpawner() error {
	if s.sp != nil {
		return nil
	}
	sp, ready := startSpawner(s.r, seccomp.Options{AllowUserNamespaces: s.cfg.AllowUserNamespaces}, len(s.cfg.Cgroup) > 0, append([]int{s.cfg.FDs.Workload}, s.cfg.FDs.WorkloadV1...)...)
	if err := <-ready; err != nil {
		return err
	}
	s.sp = sp
	return nil
}

// mainEnded records the main command's status, lets the connections that
// wait for it reply, and ends the sandbox (unless a destroy is under way,
// which ends it itself).
func (s *server) mainEnded(p *proc) {
	// Its output first: whoever learns the status (wait, then logs)
	// finds all of it in the logs. Bounded: a process it left behind
	// may hold its output open.
	waitLogCopiers(2 * time.Second)
	code, sig := exitCode(p.ws)
	s.mainStatus = Reply{Type: ReplyExit, Code: code, Signal: sig}
	s.mu.Lock()
	destroying := s.destroying
	s.mu.Unlock()
	if !destroying {
		s.record(Status{Version: Version, ExitCode: code, Signal: sig, FinishedAt: time.Now().UTC()})
	}
	close(s.mainDone)
	if destroying {
		return
	}
	// Let the connections waiting for this status send it (bounded: a
	// client that does not read must not keep the sandbox alive).
	s.drain(time.After(2 * time.Second))
	s.exit()
}

// drain waits until the replies about the main command still to send
// are sent, or until limit.
func (s *server) drain(limit <-chan time.Time) {
	s.mu.Lock()
	var drained chan struct{}
	if s.pending > 0 {
		if s.drained == nil {
			s.drained = make(chan struct{})
		}
		drained = s.drained
	}
	s.mu.Unlock()
	if drained != nil {
		select {
		case <-drained:
		case <-limit:
		}
	}
}

// settle lets the replies about a main command that a destroy ended go
// out before the init exits: its status to the connections waiting for
// it (Wait). Bounded, as in mainEnded: a client that does not read must
// not keep the sandbox alive. A main command still running (the grace
// ran out) is killed by the exit; its waiters then read EOF.
func (s *server) settle() {
	s.mu.Lock()
	m := s.main
	s.mu.Unlock()
	if m == nil {
		return
	}
	select {
	case <-m.done:
	default:
		return
	}
	limit := time.After(4 * time.Second) // mainEnded waits up to 2 s for the log copiers first
	select {
	case <-s.mainDone:
	case <-limit:
		return
	}
	s.drain(limit)
}

// done counts one reply about the main command sent.
func (s *server) done() {
	s.mu.Lock()
	s.pending--
	if s.pending == 0 && s.drained != nil {
		close(s.drained)
		s.drained = nil
	}
	s.mu.Unlock()
}

// takeMount moves the take's mount m, made ready on the host side (one
// of mfds), onto its target inside root.
func takeMount(root int, m Mount, mfds []int) error {
	i := int(m.FD)
	if i < 1 || i > len(mfds) {
		return fmt.Errorf("mount %s: no descriptor passed", m.Target)
	}
	var st unix.Stat_t
	if err := unix.Fstat(mfds[i-1], &st); err != nil {
		return fmt.Errorf("mount %s: %w", m.Target, &os.PathError{Op: "stat", Path: m.Source, Err: err})
	}
	if err := moveOnto(root, mfds[i-1], m.Target, st.Mode&unix.S_IFMT == unix.S_IFDIR); err != nil {
		return fmt.Errorf("mount %s: %w", m.Target, err)
	}
	return nil
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// take applies a take from a warm pool (OpTake): the caller's bind mounts,
// passed as detached mounts made ready on the host side and moved onto
// their targets resolved inside the root (as at launch), the workdir
// (made when missing), the hostname, and the defaults of every later
// command. It runs at most once, before any workload started, and closes
// every descriptor but the leases, which it holds.
func (s *server) take(t *Take, fds []int) (err error) {
	defer func() { closeAll(fds) }()
	if t == nil {
		return errors.New("take: no parameters")
	}
	s.mu.Lock()
	taken := s.taken
	s.taken = true
	s.mu.Unlock()
	if taken {
		return errors.New("take: the sandbox was already taken")
	}
	if t.Leases < 0 || t.Leases > len(fds) {
		return fmt.Errorf("take: %d leases, %d descriptors", t.Leases, len(fds))
	}
	leases := fds[len(fds)-t.Leases:]
	mfds := fds[:len(fds)-t.Leases]
	fds = mfds
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("take: %w", &os.PathError{Op: "open", Path: "/", Err: err})
	}
	defer unix.Close(root)
	mounts := parentsFirst(t.Mounts)
	// As at launch (setup), the etc files' binds go on the mounts above
	// them (-v vol:/etc), and a mount exactly at one covers it: each bind
	// is cloned from its target before those mounts hide it, then placed
	// on them (nothing of the sandbox's ran yet to move it).
	under, rest := splitAbove(mounts, s.cfg.Etc)
	var binds []int
	defer func() { closeAll(binds) }()
	if len(under) > 0 {
		for _, f := range s.cfg.Etc {
			b, err := sys.OpenTree(root, f.Target, unix.OPEN_TREE_CLONE)
			if err != nil {
				return fmt.Errorf("take: mount %s: %w", f.Target, err)
			}
			binds = append(binds, b)
		}
	}
	for _, m := range under {
		if err := takeMount(root, m, mfds); err != nil {
			return err
		}
	}
	for i := range binds {
		b := binds[i]
		binds[i] = -1 // placeEtc closes it
		if err := placeEtc(root, b, s.cfg.Etc[i].Target, under); err != nil {
			return fmt.Errorf("take: mount %s: %w", s.cfg.Etc[i].Target, err)
		}
	}
	for _, m := range rest {
		if err := takeMount(root, m, mfds); err != nil {
			return err
		}
	}
	if t.Workdir != "" {
		fd, err := ensure(root, t.Workdir, true)
		if err != nil {
			return fmt.Errorf("workdir %s: %w", t.Workdir, err)
		}
		unix.Close(fd)
	}
	if t.Hostname != "" {
		if err := unix.Sethostname([]byte(t.Hostname)); err != nil {
			return fmt.Errorf("sethostname: %w", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := rewriteEtc(s.cfg.Etc, s.cfg.etcFiles, t.Etc); err != nil {
		return fmt.Errorf("take: %w", err)
	}
	if t.Hostname != "" {
		s.cfg.Name = t.Hostname
	}
	s.cfg.Env = environ.Merge(s.cfg.Env, t.Env)
	if t.Workdir != "" {
		s.cfg.Workdir = t.Workdir
	}
	if t.User != "" {
		s.cfg.User = t.User
	}
	s.leases = append(s.leases, leases...)
	for _, fd := range leases {
		unix.CloseOnExec(fd)
	}
	return nil
}
