package nsinit

import (
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// seqpacketPair returns both ends of a connected SOCK_SEQPACKET pair as
// net.UnixConns (in the poller, non-blocking, as the exec socket's are).
func seqpacketPair(t *testing.T) (a, b *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "seqpacket")
		c, err := net.FileConn(f)
		_ = f.Close() // FileConn made its own copy
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// TestReadMsgLastBeforeClose: a message the peer sends just before it
// closes the connection is read, never an EOF in its place, at whatever
// point of the read the send and the close land. (The kernel's window in
// which an EOF stood in for a queued message, ReadMsg's comment, is a few
// instructions wide: this loop rarely meets it here. It was met in a
// loop of Sandbox.Exec calls, about once in 60 000, before ReadMsg read
// again after an EOF; bench/NOTES.md.)
func TestReadMsgLastBeforeClose(t *testing.T) {
	buf := make([]byte, 4096)
	for i := range 5000 {
		a, b := seqpacketPair(t)
		got := make(chan error, 1)
		reading := make(chan struct{})
		go func() {
			close(reading)
			var r Reply
			_, err := ReadMsg(a, buf, MaxMsgFDs, &r)
			if err == nil && r.Type != ReplyExit {
				err = &net.OpError{Op: "read", Err: os.ErrInvalid}
			}
			got <- err
		}()
		<-reading
		// A few microseconds more or less each round, so that the send
		// and the close meet the read at every point of its way.
		for end := time.Now().Add(time.Duration(i%16) * time.Microsecond); time.Now().Before(end); {
		}
		if err := WriteMsg(b, &Reply{Version: Version, Type: ReplyExit, Code: 3}, nil); err != nil {
			t.Fatal(err)
		}
		_ = b.Close() // the peer goes right after its last message
		if err := <-got; err != nil {
			t.Fatalf("round %d: ReadMsg of the last message before the peer's close: %v", i, err)
		}
		_ = a.Close()
	}
}

// TestReadMsgFDs: a request carries as many descriptors as a take passes
// (mounts and leases, up to MaxFDsPerMessage), every one of them arrives,
// and a message with more than the reader's bound is an error, never a
// message read without some of the descriptors it names (a take of five
// mounts was read with four and failed "no descriptor passed").
func TestReadMsgFDs(t *testing.T) {
	buf := make([]byte, 4096)
	send := func(t *testing.T, n int) (*net.UnixConn, []int) {
		a, b := seqpacketPair(t)
		t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
		var fds []int
		for range n {
			fd, err := unix.Open("/", unix.O_PATH|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = unix.Close(fd) })
			fds = append(fds, fd)
		}
		if err := WriteMsg(b, &Request{Op: OpTake, Take: &Take{Leases: n}}, fds); err != nil {
			t.Fatal(err)
		}
		return a, fds
	}
	for _, n := range []int{1, MaxMsgFDs + 1, 60, MaxFDsPerMessage} {
		a, _ := send(t, n)
		var req Request
		got, err := ReadMsg(a, buf, MaxFDsPerMessage, &req)
		closeAll(got)
		if err != nil || len(got) != n || req.Op != OpTake || req.Take == nil || req.Take.Leases != n {
			t.Errorf("%d descriptors: ReadMsg = %d descriptors, %+v, %v", n, len(got), req, err)
		}
	}
	a, _ := send(t, MaxMsgFDs+1)
	var r Request
	got, err := ReadMsg(a, buf, MaxMsgFDs, &r)
	closeAll(got)
	if err == nil || !strings.Contains(err.Error(), "more than 4 descriptors") {
		t.Errorf("%d descriptors read with room for %d: ReadMsg = %d descriptors, %v; want an error", MaxMsgFDs+1, MaxMsgFDs, len(got), err)
	}
}

// TestWriteMsgLarge: a request larger than a packet can carry (its
// arguments up to what execve takes) arrives whole with its descriptors,
// through a memfd the reader closes; one over MaxRequest is refused before
// it is sent.
func TestWriteMsgLarge(t *testing.T) {
	a, b := seqpacketPair(t)
	defer a.Close()
	defer b.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	var args []string
	for i := range 200000 {
		args = append(args, "arg"+strconv.Itoa(i)) // ~1.7 MB, 2.3 MB encoded
	}
	for _, n := range []int{1, 5000, len(args)} {
		req := &Request{Op: OpExec, Exec: &Exec{Args: args[:n]}}
		if err := WriteMsg(b, req, []int{int(w.Fd())}); err != nil {
			t.Fatalf("%d arguments: WriteMsg: %v", n, err)
		}
		var got Request
		fds, err := ReadMsg(a, make([]byte, MaxInline), MaxMsgFDs, &got)
		if err != nil || got.Exec == nil || !slices.Equal(got.Exec.Args, args[:n]) || len(fds) != 1 {
			t.Fatalf("%d arguments: ReadMsg = %d arguments, %d descriptors, %v", n, len(got.Exec.Args), len(fds), err)
		}
		var st1, st2 unix.Stat_t
		if err := unix.Fstat(fds[0], &st1); err != nil || unix.Fstat(int(w.Fd()), &st2) != nil || st1.Ino != st2.Ino {
			t.Errorf("%d arguments: the descriptor received is not the one sent", n)
		}
		closeAll(fds)
	}
	if got := openMemfds(t); got != 0 {
		t.Errorf("%d memfds left open", got)
	}
	big := &Request{Op: OpExec, Exec: &Exec{Args: []string{strings.Repeat("a", MaxRequest)}}}
	if err := WriteMsg(b, big, nil); err == nil || !strings.Contains(err.Error(), "exceed") {
		t.Errorf("WriteMsg of a request over MaxRequest = %v, want a refusal", err)
	}
}

// openMemfds counts this process's open memfds.
func openMemfds(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "/memfd:lightbox-message") {
			n++
		}
	}
	return n
}
