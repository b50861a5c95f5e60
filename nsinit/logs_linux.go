package nsinit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// logCopiers are the goroutines copying a main command's output into its
// capped log files; exit waits for them (briefly) so that the last output
// is kept.
var logCopiers sync.WaitGroup

// relayCapped gives the workload a pipe instead of the log file fd and
// copies what comes out of it into the file, keeping at most max bytes:
// past max, the newest half is moved to the front and the rest dropped
// (counted in DroppedXattr). It returns the pipe's write end for the
// workload; the init keeps the file.
func relayCapped(logfd int, max int64) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	startRelay(r, NewCappedLog(os.NewFile(uintptr(logfd), "log"), max), false)
	return w, nil
}

// A relay copies one source into one log: a pipe the workload writes
// (relayCapped), or the master of a terminal whose output the init keeps
// (relayTty). Each copy (a read of the source and its write to the log)
// happens under mu, so that a handover (handover_linux.go), which takes
// every relay's mu and keeps it across its exec, finds nothing read and
// not yet written: what the workload writes meanwhile waits in the pipe,
// or in the terminal, for the next init.
type relay struct {
	mu   sync.Mutex
	pipe *os.File // the source, non-blocking (in Go's poller)
	log  *CappedLog
	// tty: pipe is a terminal's master. Its reads end with EIO once
	// every holder of its peer is gone (not EOF), and it can be resized.
	tty bool
}

// relays are the running relays, for a handover.
var relays struct {
	sync.Mutex
	set map[*relay]struct{}
}

// startRelay copies pipe into log until every writer of pipe is gone (a
// terminal: every holder of its peer), then closes both.
func startRelay(pipe *os.File, log *CappedLog, tty bool) *relay {
	rl := &relay{pipe: pipe, log: log, tty: tty}
	relays.Lock()
	if relays.set == nil {
		relays.set = map[*relay]struct{}{}
	}
	relays.set[rl] = struct{}{}
	relays.Unlock()
	logCopiers.Add(1)
	go func() {
		defer logCopiers.Done()
		rl.copy()
		relays.Lock()
		delete(relays.set, rl)
		relays.Unlock()
		_ = pipe.Close() // the relay's source: only read
		// The log was written through f: a failed close goes to the
		// init's own log, as nobody waits for the relay.
		if err := log.f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "lightbox init: close a log:", err)
		}
	}()
	return rl
}

// relayTty copies what the terminal's master reads into the log file f
// (capped at max when max > 0, else appended to) until every holder of
// its peer is gone. It takes master and f, also on failure (both are
// then closed).
func relayTty(master, f *os.File, max int64) (*relay, error) {
	// The master was opened blocking: a copy of it, made non-blocking,
	// is a file Go polls, so that a relay waiting for output holds no
	// thread and no mu.
	fd, err := unix.FcntlInt(uintptr(fileFD(master)), unix.F_DUPFD_CLOEXEC, 0)
	_ = master.Close() // our copy is fd (or there is none: the error says why)
	if err == nil {
		if err = unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		_ = f.Close() // the log: nothing written yet
		return nil, fmt.Errorf("terminal relay: %w", os.NewSyscallError("fcntl", err))
	}
	return startRelay(os.NewFile(uintptr(fd), "ptmx"), NewCappedLog(f, max), true), nil
}

// resize sets the size of a terminal relay's terminal. It fails once the
// relay has ended (the terminal's holders are gone).
func (rl *relay) resize(rows, cols uint16) error {
	if !rl.tty {
		return errors.New("not a terminal")
	}
	rc, err := rl.pipe.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}); err != nil {
		return err // the master is closed: the command and its terminal are gone
	}
	if ierr != nil {
		return &os.PathError{Op: "ioctl TIOCSWINSZ", Path: "ptmx", Err: ierr}
	}
	return nil
}

// copy relays until EOF (every writer is gone) or a read error (EIO for
// a terminal whose holders are gone).
func (rl *relay) copy() {
	rc, err := rl.pipe.SyscallConn()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lightbox init: log relay:", err)
		return
	}
	var buf []byte // made when there is something to read: an idle relay holds none
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			rl.mu.Lock()
			defer rl.mu.Unlock()
			if buf == nil {
				if !readable(int(fd)) {
					return false // wait in the poller, without mu
				}
				buf = make([]byte, 64<<10)
			}
			for {
				n, rerr = unix.Read(int(fd), buf)
				if !errors.Is(rerr, unix.EINTR) {
					break
				}
			}
			if errors.Is(rerr, unix.EAGAIN) {
				return false // wait in the poller, without mu
			}
			if n > 0 {
				_, _ = rl.log.Write(buf[:n]) // never fails: see CappedLog.Write
			}
			return true
		})
		if err != nil || rerr != nil || n <= 0 {
			return
		}
	}
}

// CappedLog writes to a log file and keeps at most max bytes of it: past
// max, the newest half is moved to the front and the rest dropped,
// counted in the file's DroppedXattr. The init relays a main command's
// output, or its terminal's, through one. With max 0 it only appends (a
// log without a cap, opened for appending). Not safe for concurrent use.
type CappedLog struct {
	f                 *os.File
	off, max, dropped int64
}

// NewCappedLog returns a CappedLog appending to f (opened read-write),
// keeping what f holds and the drops it counted already (a restart of
// the relay).
func NewCappedLog(f *os.File, max int64) *CappedLog {
	l := &CappedLog{f: f, max: max}
	if max <= 0 {
		return l
	}
	l.off, _ = f.Seek(0, io.SeekEnd) // an error leaves 0: the file is rewritten from its start
	b := make([]byte, 32)
	if n, err := unix.Fgetxattr(int(f.Fd()), DroppedXattr, b); err == nil {
		l.dropped, _ = strconv.ParseInt(string(b[:n]), 10, 64)
	}
	return l
}

// Write keeps p (or its newest part) in the log. It never fails: a log
// that cannot be written must not stop the command writing to it.
func (l *CappedLog) Write(p []byte) (int, error) {
	n := len(p)
	if n == 0 {
		return 0, nil
	}
	if l.max <= 0 {
		_, _ = l.f.Write(p) // a full disk loses output, as a file the command wrote itself would
		return n, nil
	}
	if l.off+int64(n) > l.max {
		l.off, l.dropped = compact(l.f, l.off, l.max, l.dropped)
	}
	if int64(len(p)) > l.max/2 { // a single write larger than what is kept
		l.dropped += int64(len(p)) - l.max/2
		p = p[len(p)-int(l.max/2):]
	}
	if _, err := l.f.WriteAt(p, l.off); err == nil {
		l.off += int64(len(p))
	}
	return n, nil
}

// compact keeps the newest half of max of the file's first off bytes at
// its front and truncates the rest, returning the new end and the total
// dropped.
func compact(f *os.File, off, max, dropped int64) (int64, int64) {
	// The count of cuts is odd while this one moves bytes (CutsXattr),
	// and even again once the drop count says how far they moved.
	var cuts int64
	b := make([]byte, 32)
	if n, err := unix.Fgetxattr(int(f.Fd()), CutsXattr, b); err == nil {
		cuts, _ = strconv.ParseInt(string(b[:n]), 10, 64)
	}
	cuts += 1 + cuts%2 // odd: a count left odd by a killed relay stays odd only until this cut ends
	_ = unix.Fsetxattr(int(f.Fd()), CutsXattr, []byte(strconv.FormatInt(cuts, 10)), 0)
	defer func() {
		_ = unix.Fsetxattr(int(f.Fd()), CutsXattr, []byte(strconv.FormatInt(cuts+1, 10)), 0)
	}()
	keep := min(off, max/2)
	from := off - keep
	buf := make([]byte, 1<<20)
	var done int64
	for done < keep {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), keep-done)], from+done)
		if n > 0 {
			if _, werr := f.WriteAt(buf[:n], done); werr != nil {
				break
			}
			done += int64(n)
		}
		if err != nil && !errors.Is(err, io.EOF) || n == 0 {
			break
		}
	}
	if err := f.Truncate(done); err != nil {
		// The log keeps its old tail past the cap: said in the init's
		// own log, as nobody waits for the relay.
		fmt.Fprintln(os.Stderr, "lightbox init: cut a capped log:", err)
	}
	dropped += off - done
	// The mark is what tells a reader; a filesystem without user xattrs
	// only loses the mark, not the cap.
	_ = unix.Fsetxattr(int(f.Fd()), DroppedXattr, []byte(strconv.FormatInt(dropped, 10)), 0)
	return done, dropped
}

// readable says whether a read of fd would not block: data or EOF.
func readable(fd int) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(p, 0)
		if !errors.Is(err, unix.EINTR) {
			return n > 0 || err != nil // an error: the read tells what it is
		}
	}
}

// waitLogCopiers waits for the log relays to drain, at most d.
func waitLogCopiers(d time.Duration) {
	done := make(chan struct{})
	go func() { logCopiers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}
