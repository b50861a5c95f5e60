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
	f := os.NewFile(uintptr(logfd), "log")
	logCopiers.Add(1)
	go func() {
		defer logCopiers.Done()
		defer func() { _ = r.Close() }() // the relay pipe's read end: only read
		copyCapped(f, r, max)
		// The log was written through f: a failed close goes to the
		// init's own log, as nobody waits for the relay.
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "lightbox init: close a capped log:", err)
		}
	}()
	return w, nil
}

// copyPtyLog copies what a terminal's master reads into the log file f
// (capped at max when max > 0) until every holder of its peer is gone
// (EIO), then closes both.
func copyPtyLog(master, f *os.File, max int64) {
	logCopiers.Add(1)
	go func() {
		defer logCopiers.Done()
		defer func() { _ = master.Close() }() // read to its end: nothing written through it
		var w io.Writer = f
		if max > 0 {
			w = newCappedLog(f, max)
		}
		_, _ = io.CopyBuffer(w, readerOnly{master}, make([]byte, 16<<10)) // ends with EIO once the terminal's last holder is gone
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "lightbox init: close a terminal's log:", err)
		}
	}()
}

func copyCapped(f *os.File, r io.Reader, max int64) {
	buf := make([]byte, 64<<10)
	_, _ = io.CopyBuffer(newCappedLog(f, max), readerOnly{r}, buf) // ends at EOF: every writer is gone
}

// readerOnly hides r's WriterTo, so that io.CopyBuffer uses the buffer.
type readerOnly struct{ io.Reader }

// cappedLog writes to a log file and keeps at most max bytes of it: past
// max, the newest half is moved to the front and the rest dropped,
// counted in the file's DroppedXattr. The init relays a main command's
// output, or copies its terminal, through one. Not safe for concurrent
// use.
type cappedLog struct {
	f                 *os.File
	off, max, dropped int64
}

// newCappedLog returns a cappedLog appending to f (opened read-write),
// keeping what f holds and the drops it counted already (a restart of
// the relay).
func newCappedLog(f *os.File, max int64) *cappedLog {
	l := &cappedLog{f: f, max: max}
	l.off, _ = f.Seek(0, io.SeekEnd) // an error leaves 0: the file is rewritten from its start
	b := make([]byte, 32)
	if n, err := unix.Fgetxattr(int(f.Fd()), DroppedXattr, b); err == nil {
		l.dropped, _ = strconv.ParseInt(string(b[:n]), 10, 64)
	}
	return l
}

// Write keeps p (or its newest part) in the log. It never fails: a log
// that cannot be written must not stop the command writing to it.
func (l *cappedLog) Write(p []byte) (int, error) {
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

// waitLogCopiers waits for the log relays to drain, at most d.
func waitLogCopiers(d time.Duration) {
	done := make(chan struct{})
	go func() { logCopiers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}
