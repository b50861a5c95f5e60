package nsinit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
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
	startRelay(r, NewCappedLog(os.NewFile(uintptr(logfd), "log"), max))
	return w, nil
}

// A relay copies one pipe into one capped log. Each copy (a read of the
// pipe and its write to the log) happens under mu, so that a handover
// (handover_linux.go), which takes every relay's mu and keeps it across
// its exec, finds nothing read and not yet written: what the workload
// writes meanwhile waits in the pipe for the next init.
type relay struct {
	mu   sync.Mutex
	pipe *os.File
	log  *CappedLog
}

// relays are the running relays, for a handover.
var relays struct {
	sync.Mutex
	set map[*relay]struct{}
}

// startRelay copies pipe into log until every writer of pipe is gone,
// then closes both.
func startRelay(pipe *os.File, log *CappedLog) {
	rl := &relay{pipe: pipe, log: log}
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
		_ = pipe.Close() // the relay pipe's read end: only read
		// The log was written through f: a failed close goes to the
		// init's own log, as nobody waits for the relay.
		if err := log.f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "lightbox init: close a capped log:", err)
		}
	}()
}

// copy relays until EOF (every writer is gone) or a read error.
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

// ptyCopies counts the terminals copyPtyLog is copying: the init does not
// hand over while one is (handover_linux.go), since the new init would
// not hold the terminal's master and the command would lose its terminal.
var ptyCopies atomic.Int32

// copyPtyLog copies what a terminal's master reads into the log file f
// (capped at max when max > 0) until every holder of its peer is gone
// (EIO), then closes both.
func copyPtyLog(master, f *os.File, max int64) {
	logCopiers.Add(1)
	ptyCopies.Add(1)
	go func() {
		defer logCopiers.Done()
		defer ptyCopies.Add(-1)
		defer func() { _ = master.Close() }() // read to its end: nothing written through it
		var w io.Writer = f
		if max > 0 {
			w = NewCappedLog(f, max)
		}
		_, _ = io.CopyBuffer(w, readerOnly{master}, make([]byte, 16<<10)) // ends with EIO once the terminal's last holder is gone
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "lightbox init: close a terminal's log:", err)
		}
	}()
}

// readerOnly hides r's WriterTo, so that io.CopyBuffer uses the buffer.
type readerOnly struct{ io.Reader }

// CappedLog writes to a log file and keeps at most max bytes of it: past
// max, the newest half is moved to the front and the rest dropped,
// counted in the file's DroppedXattr. The init relays a main command's
// output, or copies its terminal, through one. Not safe for concurrent
// use.
type CappedLog struct {
	f                 *os.File
	off, max, dropped int64
}

// NewCappedLog returns a CappedLog appending to f (opened read-write),
// keeping what f holds and the drops it counted already (a restart of
// the relay).
func NewCappedLog(f *os.File, max int64) *CappedLog {
	l := &CappedLog{f: f, max: max}
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
