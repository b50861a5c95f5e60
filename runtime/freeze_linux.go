package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/beamhop/lightbox/internal/atomicfile"
	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/lockfile"
	"golang.org/x/sys/unix"
)

// Freezing a sandbox while its writable layer is read (a commit).
//
// Where a sandbox has a cgroup of its own, the cgroup v2 freezer is the
// tool (freezeCgroup is the hook; sandboxes get cgroups only with
// resource limits, which are not implemented yet). Otherwise every
// process of the sandbox's pid namespace (and of pid namespaces nested in
// it), except its init, is sent SIGSTOP from the host side: /proc is
// scanned for processes whose pid namespace is the init's or below it,
// each one is pinned with a pidfd (so that a reused pid is never
// signalled), and the scan is repeated until it finds no process that is
// not stopped yet — a stopped process cannot fork, so the set closes.
// Processes that were already stopped (by the user, or traced) are left
// alone and not resumed. The pids stopped are listed in frozen.json
// before they are signalled, so that if the freezing process dies, the
// next Freeze of the sandbox (or GC) resumes them. The init is never
// stopped: it serves exec requests and watches its launcher.

const (
	freezeLockName = "freeze.lock" // held while frozen; serialises freezes
	frozenName     = "frozen.json" // what the freezer holding the lock stopped
)

// frozenProc is a process a freeze stopped: its pid and start time.
type frozenProc struct {
	Pid   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// Freeze stops the processes of the running sandbox (all but its init)
// so that what they write holds still, and returns thaw, which resumes
// them; thaw is safe to call more than once and must be called, also on
// error and panic paths (defer it). Processes that were stopped before
// (SIGSTOP by the user, traced) stay as they are after thaw. A sandbox
// that is not running has nothing to stop: thaw is a no-op. One freeze of
// a sandbox at a time: a second Freeze waits for the first's thaw, or
// for ctx.
func (s *Sandbox) Freeze(ctx context.Context) (thaw func() error, err error) {
	lk, err := lockfile.Exclusive(ctx, filepath.Join(s.dir, freezeLockName))
	if errors.Is(err, os.ErrNotExist) {
		// Its directory is gone: a destroy (through another handle, or
		// racing this one's commit) removed it.
		return nil, fmt.Errorf("freeze sandbox %s: %w (destroyed)", s.name, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("freeze sandbox %s: %w", s.name, err)
	}
	if err := resumeLeftover(s.dir); err != nil {
		s.m.log.Warn("resume processes a dead freeze stopped", "sandbox", s.name, "err", err)
	}
	pfd, err := s.pidfd()
	if err != nil {
		lk.Close()
		return nil, fmt.Errorf("freeze sandbox %s: %w", s.name, err)
	}
	if pfd == nil {
		lk.Close()
		return func() error { return nil }, nil
	}
	defer func() { _ = pfd.Close() }() // a pidfd: close cannot lose anything
	if cthaw, ok, err := s.freezeCgroup(ctx); ok || err != nil {
		if err != nil {
			lk.Close()
			return nil, fmt.Errorf("freeze sandbox %s: %w", s.name, err)
		}
		return onceThaw(func() error { defer lk.Close(); return cthaw() }), nil
	}
	st, err := readState(s.dir)
	if err != nil {
		lk.Close()
		return nil, fmt.Errorf("freeze sandbox %s: %w", s.name, err)
	}
	fz := &freezer{dir: s.dir, initPid: st.Pid, self: os.Getpid(), known: map[frozenProc]bool{}}
	if fz.ns, err = nsOf(st.Pid); err != nil {
		lk.Close()
		return nil, fmt.Errorf("freeze sandbox %s: pid namespace of the init: %w", s.name, err)
	}
	// The namespace read is the init's if the pidfd's process still lives.
	if err := unix.PidfdSendSignal(int(pfd.Fd()), 0, nil, 0); err != nil {
		lk.Close()
		return nil, fmt.Errorf("freeze sandbox %s: %w", s.name, ErrNotRunning)
	}
	thaw = onceThaw(func() error {
		defer lk.Close()
		return fz.resume()
	})
	if err := fz.stopAll(ctx); err != nil {
		if terr := thaw(); terr != nil {
			err = errors.Join(err, terr)
		}
		return nil, fmt.Errorf("freeze sandbox %s: %w", s.name, err)
	}
	if len(fz.slow) > 0 {
		s.m.log.Warn("processes did not stop in time (uninterruptible sleep?); going on", "sandbox", s.name, "pids", fz.slow)
	}
	s.m.log.Debug("sandbox frozen", "sandbox", s.name, "stopped", len(fz.stopped), "already_stopped", fz.userStopped)
	return thaw, nil
}

// freezeCgroup is the hook for the cgroup v2 freezer: when the sandbox
// has a cgroup of its own it writes 1 to its cgroup.freeze, waits for
// cgroup.events to say "frozen 1", and returns a thaw that writes 0; ok
// false means no cgroup, and Freeze falls back to SIGSTOP. Sandboxes have
// no cgroup yet (it comes with Resources), so it always says no.
func (s *Sandbox) freezeCgroup(ctx context.Context) (thaw func() error, ok bool, err error) {
	return nil, false, nil
}

func onceThaw(f func() error) func() error {
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() { err = f() })
		return err
	}
}

type nsID struct{ dev, ino uint64 }

func nsOf(pid int) (nsID, error) {
	var st unix.Stat_t
	p := "/proc/" + strconv.Itoa(pid) + "/ns/pid"
	if err := unix.Stat(p, &st); err != nil {
		return nsID{}, &os.PathError{Op: "stat", Path: p, Err: err}
	}
	return nsID{st.Dev, st.Ino}, nil
}

type stoppedProc struct {
	frozenProc
	fd int // pidfd: signals reach this process, never a reuse of its pid
}

type freezer struct {
	dir         string
	initPid     int
	self        int
	ns          nsID
	known       map[frozenProc]bool // looked at: stopped, outside, or stopped before
	stopped     []stoppedProc
	userStopped []int
	slow        []int
}

// stopAll stops every process of the sandbox but the init, until a scan
// of /proc finds no new one and every one stopped is in the stopped state.
func (fz *freezer) stopAll(ctx context.Context) error {
	deadline := time.Now().Add(10 * time.Second)
	for round := 0; ; round++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		cands, err := fz.scan()
		if err != nil {
			return err
		}
		if len(cands) > 0 {
			// Listed on disk first, so that a dead freezer's stops can
			// be undone.
			list := make([]frozenProc, 0, len(fz.stopped)+len(cands))
			for _, p := range fz.stopped {
				list = append(list, p.frozenProc)
			}
			for _, p := range cands {
				list = append(list, p.frozenProc)
			}
			if err := atomicfile.WriteJSON(filepath.Join(fz.dir, frozenName), list, 0o600); err != nil {
				for _, p := range cands {
					unix.Close(p.fd)
				}
				return err
			}
			for _, p := range cands {
				fz.known[p.frozenProc] = true
				if err := unix.PidfdSendSignal(p.fd, unix.SIGSTOP, nil, 0); err != nil {
					unix.Close(p.fd) // gone (ESRCH): nothing to stop or resume
					continue
				}
				fz.stopped = append(fz.stopped, p)
			}
		}
		// Wait until each one stopped (a signal is acted on when the
		// process next runs); one that was resumed meanwhile (SIGCONT
		// from a process not stopped yet) is stopped again.
		settled := fz.waitStopped(ctx, deadline)
		if len(cands) == 0 && settled {
			return nil
		}
		if time.Now().After(deadline) {
			fz.slow = fz.notStopped()
			return nil
		}
	}
}

// scan returns the sandbox's processes not looked at yet, each pinned by
// a pidfd, skipping (and remembering) those already stopped.
func (fz *freezer) scan() ([]stoppedProc, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	_ = d.Close() // /proc opened read-only
	if err != nil {
		return nil, fmt.Errorf("read /proc: %w", err)
	}
	var out []stoppedProc
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil || pid == fz.initPid || pid == fz.self {
			continue
		}
		start, err := pidStart(pid)
		if err != nil {
			continue // gone
		}
		key := frozenProc{pid, start}
		if fz.known[key] {
			continue
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // gone
		}
		in := fz.inSandbox(pid)
		state := procState(pid)
		// What was read about pid was about the pidfd's process if it
		// still lives and has the same start time.
		if s2, err := pidStart(pid); err != nil || s2 != start || unix.PidfdSendSignal(fd, 0, nil, 0) != nil {
			unix.Close(fd)
			continue
		}
		if !in {
			// A process never changes pid namespace: skip it from now on.
			fz.known[key] = true
			unix.Close(fd)
			continue
		}
		if state == 'T' || state == 't' {
			fz.known[key] = true
			fz.userStopped = append(fz.userStopped, pid)
			unix.Close(fd)
			continue
		}
		out = append(out, stoppedProc{key, fd})
	}
	return out, nil
}

// inSandbox reports whether pid's pid namespace is the sandbox's or one
// nested in it. Processes we may not inspect are not the sandbox's (the
// owner of the sandbox's user namespace may inspect all of them).
func (fz *freezer) inSandbox(pid int) bool {
	p := "/proc/" + strconv.Itoa(pid) + "/ns/pid"
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	for hops := 0; hops < 40; hops++ { // pid namespaces nest 32 deep at most
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			break
		}
		if (nsID{st.Dev, st.Ino}) == fz.ns {
			unix.Close(fd)
			return true
		}
		parent, err := unix.IoctlRetInt(fd, unix.NS_GET_PARENT)
		unix.Close(fd)
		if err != nil {
			return false // the top of what we see (EPERM)
		}
		fd = parent
	}
	unix.Close(fd)
	return false
}

// procState is the state letter of /proc/<pid>/stat (R, S, D, T, t, Z…),
// 0 when it cannot be read.
func procState(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0
	}
	return s[i+2]
}

// waitStopped polls the processes stopped until each is stopped or gone,
// sending SIGSTOP again to one that runs, until deadline; it reports
// whether all settled.
func (fz *freezer) waitStopped(ctx context.Context, deadline time.Time) bool {
	for delay := 100 * time.Microsecond; ; delay = min(2*delay, 20*time.Millisecond) {
		if len(fz.notStopped()) == 0 {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(delay)
	}
}

// notStopped returns the pids of processes stopped by this freezer that
// are neither stopped nor gone now, sending them SIGSTOP again.
func (fz *freezer) notStopped() []int {
	var out []int
	for _, p := range fz.stopped {
		if unix.PidfdSendSignal(p.fd, 0, nil, 0) != nil {
			continue // gone
		}
		switch procState(p.Pid) {
		case 'T', 't', 'Z', 'X', 0:
			continue
		}
		_ = unix.PidfdSendSignal(p.fd, unix.SIGSTOP, nil, 0) // resumed by someone: again
		out = append(out, p.Pid)
	}
	return out
}

// resume sends SIGCONT to every process this freezer stopped and removes
// the list.
func (fz *freezer) resume() error {
	var errs []error
	for _, p := range fz.stopped {
		if err := unix.PidfdSendSignal(p.fd, unix.SIGCONT, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("resume pid %d: %w", p.Pid, err))
		}
		unix.Close(p.fd)
	}
	fz.stopped = nil
	if len(errs) == 0 {
		if err := os.Remove(filepath.Join(fz.dir, frozenName)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// frozenTemps are the temporary files of frozen.json writes a freezer
// was killed in; under the freeze lock none is a live write.
func frozenTemps(dir string) []string {
	return atomicfile.Leftovers(filepath.Join(dir, frozenName))
}

// resumeLeftover resumes what a freezer that died left stopped (its
// frozen.json) and removes the temporary files of its writes; the caller
// holds the freeze lock.
func resumeLeftover(dir string) error {
	for _, t := range frozenTemps(dir) {
		_ = os.Remove(t) // a dead write's: one left is tried again by the next freeze or gc
	}
	p := filepath.Join(dir, frozenName)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var list []frozenProc
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	var errs []error
	for _, fp := range list {
		fd, err := unix.PidfdOpen(fp.Pid, 0)
		if err != nil {
			continue // gone
		}
		if start, err := pidStart(fp.Pid); err == nil && start == fp.Start {
			if err := unix.PidfdSendSignal(fd, unix.SIGCONT, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("resume pid %d: %w", fp.Pid, err))
			}
		}
		unix.Close(fd)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return os.Remove(p)
}

// thawLeftover resumes what a dead freezer of sandbox dir left stopped,
// unless a freeze is under way. With temps (GC), it also removes the
// temporary files of the frozen.json writes such a freezer was killed in,
// which a freezer killed in its first write leaves without a frozen.json.
func thawLeftover(dir string, temps bool) error {
	if _, err := os.Stat(filepath.Join(dir, frozenName)); err != nil && (!temps || len(frozenTemps(dir)) == 0) {
		return nil
	}
	lk, err := lockfile.TryExclusive(filepath.Join(dir, freezeLockName))
	if err != nil {
		if errors.Is(err, lockfile.ErrLocked) {
			return nil // a live freeze; its thaw resumes them
		}
		return err
	}
	defer lk.Close()
	return resumeLeftover(dir)
}
