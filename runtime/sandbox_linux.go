package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/lockfile"
	"github.com/beamhop/lightbox/internal/names"
	"github.com/beamhop/lightbox/nsinit"
	"golang.org/x/sys/unix"
)

// Sandbox is a handle on a sandbox: the one Launch returned (which owns
// the sandbox's life until Detach) or one found by Attach. It is safe for
// concurrent use.
type Sandbox struct {
	m    *Manager
	name string
	dir  string
	pid  int

	mu       sync.Mutex
	live     *os.File      // liveness pipe; nil when attached or detached
	initDone chan struct{} // closed once we reaped the init (launcher only)
	main     *Cmd          // the main command, when this handle started it
	net      NetworkAttachment
	held     *lockfile.Lock // our hold of the name lock (Spec.DetachedTeardown)
	// goneP is the read end of the init's gone pipe (nsinit.FDs.Gone),
	// launcher only: "G" once nothing of the sandbox runs but the init,
	// whose leases are closed.
	goneP *gonePipe
	// writable is Spec.WritableDir, known without reading the state
	// when this handle launched the sandbox (initDone != nil).
	writable string
	// stopSig is Spec.StopSignal, when stopKnown (this handle launched
	// the sandbox); otherwise read from the state when needed.
	stopSig   syscall.Signal
	stopKnown bool

	cgOnce sync.Once
	cg     *cgroupState

	oomOnce sync.Once
	oomF    *os.File // the cgroup's OOM-kill counter, opened once (nil: none)
}

// oomKills reads the sandbox's OOM-kill count, around every command it
// starts: through a descriptor opened once per handle (reading it again
// from its start costs a tenth of opening the file each time). ok is
// false when the sandbox has no such counter.
func (s *Sandbox) oomKills() (n uint64, ok bool) {
	cg := s.cgroup()
	if cg == nil {
		return 0, false
	}
	s.oomOnce.Do(func() {
		if f, err := cg.openOOM(); err == nil && f != nil {
			s.oomF = f // closed by Destroy, or with the handle (the finalizer of *os.File)
		}
	})
	if s.oomF == nil {
		return 0, false
	}
	n, err := readOOMKills(s.oomF)
	return n, err == nil
}

// cgroup returns the sandbox's cgroup, nil when it has none.
func (s *Sandbox) cgroup() *cgroupState {
	s.cgOnce.Do(func() {
		if st, err := readState(s.dir); err == nil {
			s.cg = st.Cgroup
		}
	})
	return s.cg
}

// launched holds the liveness pipes of the sandboxes this process
// launched and did not detach, so that dropping a Sandbox handle does not
// let a finalizer close the pipe and end the sandbox at some random GC:
// such a sandbox ends with the process, or with Destroy.
var launched sync.Map // *os.File -> struct{}

func closeLive(f *os.File) {
	launched.Delete(f)
	_ = f.Close() // our end of the liveness pipe: no data; closing it is the signal
}

// Name returns the sandbox's name.
func (s *Sandbox) Name() string { return s.name }

// Pid returns the host pid of the sandbox's init (0 if unknown).
func (s *Sandbox) Pid() int { return s.pid }

// InitExited reports whether this handle, the launcher's, has reaped the
// sandbox's init: the sandbox ended (destroyed through another handle or
// process, or crashed). Free of syscalls, for a warm pool's check before
// it hands a sandbox out. False for a handle that attached, which cannot
// know without reading the state.
func (s *Sandbox) InitExited() bool {
	if s.initDone == nil {
		return false
	}
	select {
	case <-s.initDone:
		return true
	default:
		return false
	}
}

// Attach finds a sandbox by name, running or not (ErrNotFound when there
// is none): a handle that can run commands in a running sandbox, wait for
// its main command, read its logs, and destroy it. Attaching does not tie
// the sandbox's life to the caller.
func (m *Manager) Attach(ctx context.Context, name string) (*Sandbox, error) {
	if err := names.Check("sandbox", name); err != nil {
		return nil, err
	}
	info, st, err := m.statusState(name, false)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("sandbox %s: %w", name, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("attach sandbox %s: %w", name, err)
	}
	if _, err := os.Stat(m.dir(name)); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", name, errdefs.ErrNotFound)
	}
	s := &Sandbox{m: m, name: name, dir: m.dir(name), pid: info.Pid}
	if info.Status == StatusRunning {
		// A commit killed while the sandbox was frozen left its
		// processes stopped: the next command on the sandbox (exec,
		// logs, wait, rm) resumes them, as GC does, so that nobody
		// needs to know to run gc for a workload that hangs.
		if err := thawLeftover(s.dir, false); err != nil {
			m.log.Warn("resume processes a dead freeze stopped", "sandbox", name, "err", err)
		}
	}
	if st.Version != 0 {
		// The cgroup was read with the status: a command's start
		// need not read state.json again.
		s.cgOnce.Do(func() { s.cg = st.Cgroup })
	}
	return s, nil
}

// MainCommand returns the main command when this handle launched it (to
// Signal it, or Resize its pty), nil otherwise.
func (s *Sandbox) MainCommand() *Cmd {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.main
}

// Info describes the sandbox now.
func (s *Sandbox) Info(ctx context.Context) (Info, error) {
	info, err := s.m.status(s.name)
	if err != nil {
		return info, s.statusErr(err)
	}
	return info, nil
}

// statusErr is the error of a handle's status read: ErrNotFound once the
// sandbox was removed (destroyed through this handle or another).
func (s *Sandbox) statusErr(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sandbox %s: %w", s.name, errdefs.ErrNotFound)
	}
	return fmt.Errorf("sandbox %s: %w", s.name, err)
}

// Status is Info without the cgroup's usage (Usage and OOMKilled unset):
// it reads the state and the lock only, no cgroup file.
func (s *Sandbox) Status(ctx context.Context) (Info, error) {
	info, err := s.m.statusOf(s.name, false)
	if err != nil {
		return info, s.statusErr(err)
	}
	return info, nil
}

// UpperDir returns the overlay's upper directory: what the sandbox has
// written over its snapshot (for a commit).
func (s *Sandbox) UpperDir(ctx context.Context) (string, error) {
	info, err := s.Info(ctx)
	if err != nil {
		return "", err
	}
	if info.WritableDir != "" {
		return filepath.Join(info.WritableDir, "upper"), nil
	}
	return filepath.Join(s.dir, "upper"), nil
}

// WritableDir returns the directory of the sandbox's capped writable
// layer (Spec.WritableDir), "" when it has none. Unlike Info it reads the
// state only, not the cgroup's counters: Destroy's path needs no more.
func (s *Sandbox) WritableDir() (string, error) {
	if s.initDone != nil {
		return s.writable, nil // we launched it: no state to read
	}
	st, err := readState(s.dir)
	if err != nil {
		return "", fmt.Errorf("sandbox %s: %w", s.name, err)
	}
	return st.WritableDir, nil
}

// dial connects to the init's exec socket.
func (s *Sandbox) dial(ctx context.Context) (*net.UnixConn, error) {
	addr, dirf, err := nsinit.SockAddr(s.dir)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unixpacket", addr)
	if dirf != nil {
		_ = dirf.Close() // a directory fd for the socket's path, only read
	}
	if err != nil {
		if errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ENOENT) {
			return nil, s.notRunning()
		}
		return nil, fmt.Errorf("sandbox %s: connect to init: %w", s.name, err)
	}
	return c.(*net.UnixConn), nil
}

// notRunning is the error of a request to a sandbox whose init no longer
// listens: ErrNotRunning and, read from its status (on this error path
// only), why: its main command exited (and with what), or its init died.
func (s *Sandbox) notRunning() error {
	if info, err := s.m.status(s.name); err == nil {
		switch info.Status {
		case StatusExited:
			return fmt.Errorf("sandbox %s: %w: its main command exited (status %d)", s.name, ErrNotRunning, info.ExitCode)
		case StatusDead:
			return fmt.Errorf("sandbox %s: %w: %s", s.name, ErrNotRunning, initDied)
		}
	}
	return fmt.Errorf("sandbox %s: %w", s.name, ErrNotRunning)
}

// initDied says why a sandbox is dead (StatusDead): its init ended
// without recording an exit.
const initDied = "its init died (killed, or its launcher was killed before it detached the sandbox)"

// call sends one request and reads one reply.
func (s *Sandbox) call(ctx context.Context, req nsinit.Request) (nsinit.Reply, error) {
	return s.callFDs(ctx, req, nil)
}

// callFDs is call with descriptors sent along (SCM_RIGHTS).
func (s *Sandbox) callFDs(ctx context.Context, req nsinit.Request, fds []int) (nsinit.Reply, error) {
	c, err := s.dial(ctx)
	if err != nil {
		return nsinit.Reply{}, err
	}
	defer func() { _ = c.Close() }()                                              // the request was sent and its reply read (or their error returned)
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) }) // fails only on a closed conn: its I/O then fails
	defer stop()
	if err := sendRequest(c, req, fds); err != nil {
		return nsinit.Reply{}, ctxErr(ctx, s.gone(err))
	}
	r, _, err := readReply(c)
	if err != nil {
		return r, ctxErr(ctx, s.gone(err))
	}
	if r.Type == nsinit.ReplyError {
		return r, errors.New(r.Error)
	}
	return r, nil
}

// gone wraps ErrNotRunning around the error of a request the init did
// not answer because it exited meanwhile (a main command that ended just
// then takes the sandbox with it).
func (s *Sandbox) gone(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE) {
		return fmt.Errorf("sandbox %s: %w (%w)", s.name, ErrNotRunning, err)
	}
	return err
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// Detach leaves the sandbox running when this process exits or drops the
// handle.
func (s *Sandbox) Detach() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held != nil {
		s.held.Close() // the init holds it alone from now on
		s.held = nil
	}
	s.goneP.release() // a Destroy through this handle waits for the init's exit
	if s.live == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.call(ctx, nsinit.Request{Op: nsinit.OpDetach}); err != nil {
		if errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE) || errors.Is(err, io.EOF) {
			// The init dropped the connection unanswered: it is going
			// away (its main command ended as we asked).
			return fmt.Errorf("detach sandbox %s: %w: %w", s.name, ErrNotRunning, err)
		}
		return fmt.Errorf("detach sandbox %s: %w", s.name, err)
	}
	closeLive(s.live)
	s.live = nil
	// Said for List (and ps): the init alone knows it otherwise.
	if err := os.WriteFile(filepath.Join(s.dir, detachedFile), nil, 0o600); err != nil {
		s.m.log.Warn("record that the sandbox is detached", "sandbox", s.name, "err", err)
	}
	return nil
}

// detachedFile, in a sandbox's directory, says that its launcher detached
// it.
const detachedFile = "detached"

// destroyedFile, in a sandbox's directory, says that a Destroy of it
// (rm, RemoveSandbox, a launcher's Destroy) has begun: a Wait that the
// init's end cuts short says the sandbox was destroyed, not that its init
// died.
const destroyedFile = "destroyed"

// destroyedErr is the error of a Wait, or of a command, that the init's
// end cut short when the sandbox was destroyed under it (destroyedFile),
// nil otherwise; what names what did not end ("its main command"). With
// gone, a directory already removed counts too: only for what was under
// way when the init ended (a command), never for a Wait, which may come
// long after (ErrNotFound then).
func (s *Sandbox) destroyedErr(what string, gone bool) error {
	_, err := os.Lstat(filepath.Join(s.dir, destroyedFile))
	if err == nil {
		return &destroyedError{fmt.Errorf("sandbox %s: %w: it was destroyed (removed) before %s ended", s.name, ErrNotRunning, what)}
	}
	if !gone {
		return nil
	}
	if _, err := os.Lstat(s.dir); errors.Is(err, os.ErrNotExist) {
		return &destroyedError{fmt.Errorf("sandbox %s: %w: it was removed before %s ended", s.name, ErrNotRunning, what)}
	}
	return nil
}

// destroyedError is destroyedErr's verdict, which a Wait finds in its
// main command's error: the command saw the mark that the removal may
// have taken away (with the directory) by the time the Wait looks.
type destroyedError struct{ err error }

func (e *destroyedError) Error() string { return e.err.Error() }
func (e *destroyedError) Unwrap() error { return e.err }

// pooledFile, in a sandbox's directory, says that a warm pool holds it
// (Spec.Takeable) and has not handed it out yet.
const pooledFile = "pooled"

// Unpool says that the warm pool that launched the sandbox (Spec.Takeable)
// has handed it out: List no longer calls it pooled.
func (s *Sandbox) Unpool() error {
	if err := os.Remove(filepath.Join(s.dir, pooledFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sandbox %s: %w", s.name, err)
	}
	return nil
}

// Wait waits for the sandbox's main command and returns its exit code
// (128+N when a signal N killed it). A sandbox that exited earlier
// returns its recorded code; one with no main command returns
// ErrNoCommand; one whose init died returns ErrNotRunning.
func (s *Sandbox) Wait(ctx context.Context) (int, error) {
	s.mu.Lock()
	main := s.main
	s.mu.Unlock()
	if main != nil {
		// Wait for the output to be copied too, not only for the exit.
		waited := make(chan error, 1)
		go func() { waited <- main.Wait() }()
		select {
		case err := <-waited:
			var ee *ExitError
			if err != nil && !errors.As(err, &ee) {
				var de *destroyedError
				if errors.As(err, &de) {
					return -1, fmt.Errorf("sandbox %s: %w: it was destroyed (removed) before its main command ended", s.name, ErrNotRunning)
				}
				if derr := s.destroyedErr("its main command", false); derr != nil {
					return -1, derr
				}
				return -1, err
			}
			return main.exitCode, s.waitGone(ctx)
		case <-ctx.Done():
			return -1, ctx.Err()
		}
	}
	r, err := s.call(ctx, nsinit.Request{Op: nsinit.OpWait})
	if err == nil {
		return r.Code, s.waitGone(ctx)
	}
	if ctx.Err() != nil {
		return -1, ctx.Err()
	}
	if r.Type == nsinit.ReplyError {
		return -1, fmt.Errorf("sandbox %s: %w", s.name, ErrNoCommand)
	}
	if errors.Is(err, ErrNotRunning) {
		// The init dropped the request unanswered: it is on its way out
		// (its main command ended just before). Its exit closes its
		// descriptors one by one, the listener (which resets a queued
		// connection) perhaps before the lock file, which says it runs
		// while held: read its status once it is gone.
		if err := s.waitGone(ctx); err != nil {
			return -1, err
		}
	}
	// The init is gone (or went while we waited): read what it recorded.
	info, ierr := s.m.status(s.name)
	if ierr != nil {
		if derr := s.destroyedErr("its main command", false); derr != nil {
			return -1, derr
		}
		return -1, s.statusErr(ierr)
	}
	switch info.Status {
	case StatusExited:
		return info.ExitCode, nil
	case StatusDead:
		if derr := s.destroyedErr("its main command", false); derr != nil {
			return -1, derr
		}
		return -1, fmt.Errorf("sandbox %s: %w: %s", s.name, ErrNotRunning, initDied)
	}
	return -1, fmt.Errorf("sandbox %s: wait: %w", s.name, err)
}

// waitGone waits until the init has exited after its main command did,
// so that the sandbox reads as exited once Wait returns.
func (s *Sandbox) waitGone(ctx context.Context) error {
	exited, cleanup, err := s.initExited(ctx)
	if err != nil {
		return nil // not knowable; the status was read all the same
	}
	defer cleanup()
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Destroy stops the sandbox — SIGTERM to its main command (or to every
// process when it has none), SIGKILL after Options.StopGrace — and removes
// it and everything it left on disk. Destroying a sandbox that already
// ended just removes it.
//
// It returns once every process of the sandbox is gone, its name is free
// for a new sandbox and what its init held (volume and snapshot leases)
// is released. The init itself may then still be exiting (the kernel
// tears down its memory and namespaces): a handle that launched the
// sandbox hears from the init, on its gone pipe, once the rest is gone
// and the leases are closed, and does not wait for that. Its cgroup and
// directory are removed after that, in the background: Manager.Close
// waits for those removals and returns what they failed to do; after a
// crash, GC removes what is left.
func (s *Sandbox) Destroy(ctx context.Context) error {
	return s.destroy(ctx, s.m.opts.StopGrace)
}

// DestroyGrace is Destroy with its own grace period between SIGTERM and
// SIGKILL (0 = SIGKILL at once).
func (s *Sandbox) DestroyGrace(ctx context.Context, grace time.Duration) error {
	return s.destroy(ctx, grace)
}

func (s *Sandbox) destroy(ctx context.Context, grace time.Duration) error {
	s.mu.Lock()
	held, main := s.held, s.main
	s.held = nil
	s.mu.Unlock()
	if held != nil {
		if main != nil && main.exited() && s.initDone != nil {
			return s.destroyDetached(ctx, held)
		}
		held.Close() // the init's exit frees the name for the removal below
	}
	s.mu.Lock()
	net := s.net
	s.mu.Unlock()
	// Without a network helper to wait for, a launching handle hears
	// from the init when nothing of the sandbox runs any more: Destroy
	// returns then, and the init's reap goes to the background with the
	// removal.
	// Said before the stop, for a Wait it ends (best effort: only that
	// message depends on it; the directory goes with the sandbox). Not
	// by the handle that launched the sandbox without a main command
	// (RunInSandbox's Destroy): nothing waits for one.
	mark := ""
	if main != nil || s.initDone == nil {
		mark = filepath.Join(s.dir, destroyedFile)
		_ = os.WriteFile(mark, nil, 0o600)
	}
	early, err := s.stop(ctx, grace, net == nil && s.initDone != nil)
	if err != nil {
		if mark != "" {
			_ = os.Remove(mark) // not destroyed after all
		}
		return fmt.Errorf("destroy sandbox %s: %w", s.name, err)
	}
	if net != nil || s.initDone == nil {
		// A handle that launched the sandbox without a network helper
		// knows there is none to wait for: no state to read.
		s.waitNetwork(ctx)
	}
	s.oomOnce.Do(func() {}) // no counter opened from here on
	if s.oomF != nil {
		_ = s.oomF.Close() // read-only; the sandbox is gone, and its commands with it
	}
	s.mu.Lock()
	if s.net != nil {
		// The sandbox goes regardless; a helper left running is logged
		// (its pids are in the state until the directory goes).
		if err := s.net.Close(); err != nil {
			s.m.log.Warn("stop the network of a destroyed sandbox", "sandbox", s.name, "err", err)
		}
		s.net = nil
	}
	if s.live != nil {
		closeLive(s.live)
		s.live = nil
	}
	s.mu.Unlock()
	if early {
		err = s.m.removeGoing(ctx, s.name, s.initDone)
	} else {
		err = s.m.remove(ctx, s.name)
	}
	if err != nil {
		return fmt.Errorf("destroy sandbox %s: %w", s.name, err)
	}
	return nil
}

// waitNetwork waits, up to 5 s, until the network helper's processes
// recorded in the state have exited: they die with the init, but a moment
// after it (their keeper notices the init's exit), and a published port is
// only free once they are gone. A helper still there after that is left
// to its keeper: the sandbox is gone either way.
func (s *Sandbox) waitNetwork(ctx context.Context) {
	st, err := readState(s.dir)
	if err != nil {
		return // no state, no helper to wait for
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range st.NetPids {
		f, err := openPidfd(p.Pid)
		if err != nil {
			continue // gone
		}
		if start, err := pidStart(p.Pid); err == nil && start == p.Start {
			waitPidfd(ctx, f, deadline)
		}
		_ = f.Close() // a pidfd: close cannot lose anything
	}
}

// openPidfd opens a pidfd on pid that Go's poller waits on (non-blocking).
func openPidfd(pid int) (*os.File, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	return os.NewFile(uintptr(fd), "pidfd "+strconv.Itoa(pid)), nil
}

// waitPidfd waits until the process of the pidfd f has exited (true), or
// ctx ends or deadline (zero: none) passes (false). The wait is an event
// (a pidfd is readable once its process exits), not a poll loop.
func waitPidfd(ctx context.Context, f *os.File, deadline time.Time) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	if err := f.SetReadDeadline(deadline); err != nil {
		return false // not pollable: cannot happen for a pidfd of Linux 5.3+
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Unix(1, 0)) }) // wakes the wait; the file is ours
	defer stop()
	exited := false
	err = rc.Read(func(fd uintptr) bool {
		n, perr := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		exited = n > 0 || (perr != nil && !errors.Is(perr, unix.EINTR))
		return exited
	})
	return exited && err == nil
}

// stop ends the init, if it runs, and waits until every process of the
// sandbox is gone: with hear, until the init said so on its gone pipe
// (early: the init's own exit may still be under way) or was reaped.
func (s *Sandbox) stop(ctx context.Context, grace time.Duration, hear bool) (early bool, err error) {
	exited, cleanup, err := s.initExited(ctx)
	if err != nil {
		return false, err
	}
	defer cleanup()
	select {
	case <-exited:
		return false, nil
	default:
	}
	var said <-chan bool
	if hear {
		said = s.heardGone()
	}
	_, err = s.call(ctx, nsinit.Request{Op: nsinit.OpDestroy, Grace: grace, Signal: int(s.stopSignal())})
	if err != nil && ctx.Err() != nil {
		return false, ctx.Err()
	}
	// Whatever the reply (the init may die before it answers), wait for
	// the init to be gone; kill it if it does not go within the grace
	// period plus a margin.
	limit := time.NewTimer(grace + 5*time.Second)
	defer limit.Stop()
wait:
	for {
		select {
		case <-exited:
			// Reaped before we read its word: the word, if it was
			// said, is in the pipe, and the read ends at once.
			return said != nil && <-said, nil
		case ok := <-said:
			if ok {
				return true, nil
			}
			said = nil // not said: wait for the exit
		case <-limit.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	if err := s.kill(); err != nil {
		return false, err
	}
	select {
	case <-exited:
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// initExited returns a channel closed once the sandbox's init (and so
// every process of it) is gone, or ctx ended; the returned function stops
// watching.
func (s *Sandbox) initExited(ctx context.Context) (<-chan struct{}, func(), error) {
	if s.initDone != nil {
		return s.initDone, func() {}, nil
	}
	done := make(chan struct{})
	f, err := s.pidfd()
	if err != nil {
		return nil, nil, err
	}
	if f == nil {
		close(done)
		return done, func() {}, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	exited := make(chan struct{})
	go func() {
		defer close(done)
		// Not cancelled yet not exited: the pidfd failed; take it as gone,
		// rather than wait forever.
		if waitPidfd(ctx, f, time.Time{}) || ctx.Err() == nil {
			close(exited)
		}
	}()
	return exited, func() { cancel(); <-done; _ = f.Close() }, nil
}

// pidfd opens a pidfd on the running init, nil when it is not running.
// The lock tells it runs; the recorded start time guards against pid
// reuse.
func (s *Sandbox) pidfd() (*os.File, error) {
	info, err := s.m.statusOf(s.name, false)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	if info.Status != StatusRunning {
		return nil, nil
	}
	st, err := readState(s.dir)
	if err != nil || st.Pid == 0 {
		return nil, fmt.Errorf("sandbox %s is starting: %w", s.name, errdefs.ErrInUse)
	}
	f, err := openPidfd(st.Pid)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil, nil
		}
		return nil, err
	}
	if start, err := pidStart(st.Pid); err != nil || start != st.PidStart {
		_ = f.Close() // a pidfd of a recycled pid: close cannot lose anything
		return nil, nil
	}
	return f, nil
}

// kill SIGKILLs the init (and with it the sandbox). An init that is gone
// already (no state, no such pid) is no error; a kill that fails
// otherwise is, since the caller would wait for it in vain.
func (s *Sandbox) kill() error {
	st, err := readState(s.dir)
	if err != nil || st.Pid == 0 {
		return nil
	}
	fd, err := unix.PidfdOpen(st.Pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kill init %d: pidfd_open: %w", st.Pid, err)
	}
	defer unix.Close(fd)
	if start, err := pidStart(st.Pid); err == nil && start == st.PidStart {
		if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("kill init %d: %w", st.Pid, err)
		}
	}
	return nil
}

// droppedBytes reads how much older output the init dropped from a
// capped log file (nsinit.DroppedXattr), 0 when none.
func droppedBytes(f *os.File) int64 { return xattrCount(f, nsinit.DroppedXattr) }

// xattrCount reads a count kept in the extended attribute name of f, 0
// when it has none.
func xattrCount(f *os.File, name string) int64 {
	b := make([]byte, 32)
	n, err := unix.Fgetxattr(int(f.Fd()), name, b)
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseInt(string(b[:n]), 10, 64)
	return v
}

// Logs copies the main command's output kept on disk to stdout and
// stderr; with follow it keeps copying until the sandbox ends or ctx does.
func (s *Sandbox) Logs(ctx context.Context, follow bool, stdout, stderr io.Writer) error {
	var streams []*logStream
	for _, x := range []struct {
		n string
		w io.Writer
	}{{"stdout.log", stdout}, {"stderr.log", stderr}} {
		f, err := os.Open(filepath.Join(s.dir, x.n))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("logs of %s: %w", s.name, err)
		}
		defer func() { _ = f.Close() }() // opened read-only
		st := &logStream{f: f, w: x.w, name: strings.TrimSuffix(x.n, ".log"), note: stderr, dropped: droppedBytes(f)}
		if st.dropped > 0 && stderr != nil {
			fmt.Fprintf(stderr, "[lightbox: %d bytes of older %s were dropped: the sandbox's logs keep the newest output]\n", st.dropped, st.name)
		}
		if st.w == nil {
			st.w = io.Discard
		}
		streams = append(streams, st)
	}
	for {
		for _, st := range streams {
			if err := st.copy(follow); err != nil {
				return fmt.Errorf("logs of %s: %w", s.name, err)
			}
		}
		if !follow {
			return nil
		}
		info, err := s.m.status(s.name)
		if err != nil || info.Status != StatusRunning {
			for _, st := range streams {
				_ = st.copy(false) // the sandbox is gone: a failed last read (a removed log) has nothing more to give
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// logStream is one log file that Logs reads, from where it read last.
//
// A capped log (nsinit.CappedLog) is cut as it fills: its newest half
// moves to the file's front, the rest is dropped and counted in its
// DroppedXattr. A follower's offset then lies past the new end: read on
// from it, it would see nothing until the file grew past it (never, at
// the cap) and miss what came meanwhile. The count's growth is how far
// the kept bytes moved, so the offset moves back by as much; what it
// would move back past (output dropped before it was read) is said on
// the note writer, as for a log read whole. What is read while a cut
// moves bytes (nsinit.CutsXattr odd, or changed during the read) is read
// again from where it moved.
type logStream struct {
	f       *os.File
	w       io.Writer
	name    string    // "stdout" or "stderr"
	note    io.Writer // where drops are said (the stderr writer); nil: not said
	pos     int64     // the offset read up to
	dropped int64     // DroppedXattr as of pos
	cut     int       // turns that found the file shorter than pos with no new count
	busy    int       // turns that found a cut under way
	buf     []byte
}

// copy writes what the log gained since the last read. With next, a
// later turn comes (a follow of a running sandbox): a cut under way is
// left to it, for a few turns. Without, or past those (a relay killed
// mid-cut leaves its count odd), the log is read as it is.
func (st *logStream) copy(next bool) error {
	for retry := 0; ; retry++ {
		cuts := xattrCount(st.f, nsinit.CutsXattr)
		if cuts%2 == 1 && next && st.busy < 3 {
			st.busy++
			return nil // a cut under way: read at the next turn
		}
		st.busy = 0
		if d := droppedBytes(st.f); d > st.dropped {
			pos := st.pos - (d - st.dropped)
			if pos < 0 {
				if st.note != nil {
					fmt.Fprintf(st.note, "[lightbox: %d bytes of %s were dropped before they were read: the sandbox's logs keep the newest output]\n", -pos, st.name)
				}
				pos = 0
			}
			st.pos, st.dropped, st.cut = pos, d, 0
		} else if fi, err := st.f.Stat(); err == nil && fi.Size() < st.pos {
			// Cut, with no count to say how far (a count that could
			// not be set, or an init that keeps none): the place is
			// unknown once that lasts: go on from the end, and say so.
			if st.cut++; next && st.cut < 3 {
				return nil
			}
			if st.note != nil {
				fmt.Fprintf(st.note, "[lightbox: older %s was dropped (how much is unknown): the sandbox's logs keep the newest output]\n", st.name)
			}
			st.pos, st.cut = fi.Size(), 0
		}
		if st.buf == nil {
			st.buf = make([]byte, 256<<10)
		}
		n, err := st.f.ReadAt(st.buf, st.pos)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if xattrCount(st.f, nsinit.CutsXattr) != cuts && retry < 10 {
			continue // a cut moved bytes meanwhile: read them where they are now
		}
		if n == 0 {
			return nil
		}
		if _, err := st.w.Write(st.buf[:n]); err != nil {
			return err
		}
		st.pos += int64(n)
	}
}
