//go:build linux

package runtime

import (
	"errors"
	"net"
	"path/filepath"
	"testing"

	"github.com/beamhop/lightbox/nsinit"
	"golang.org/x/sys/unix"
)

// TestStartInitGone: an exec whose init goes away before it answers (an
// rm -f racing the exec) fails with ErrNotRunning, not with the socket's
// "connection reset by peer" or a bare EOF. A fake init on the exec
// socket takes the request and closes: once after reading it (the client
// reads EOF), once without reading it (the client's read is reset).
func TestStartInitGone(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: filepath.Join(dir, "init.sock"), Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sb := &Sandbox{m: &Manager{}, name: "fake", dir: dir} // a Manager of no store: no id mapping
	for _, read := range []bool{true, false} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			c, err := ln.AcceptUnix()
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			if read {
				var req nsinit.Request
				fds, err := nsinit.ReadMsg(c, make([]byte, nsinit.MaxInline), nsinit.MaxFDsPerMessage, &req)
				for _, fd := range fds {
					unix.Close(fd)
				}
				if err != nil {
					t.Error(err)
				}
				return
			}
			// Wait for the request to arrive, and close with it unread.
			raw, err := c.SyscallConn()
			if err != nil {
				t.Error(err)
				return
			}
			raw.Control(func(fd uintptr) {
				pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
				for {
					if _, err := unix.Poll(pfd, -1); !errors.Is(err, unix.EINTR) {
						return
					}
				}
			})
		}()
		err := sb.Command("/bin/true").Start()
		<-done
		if !errors.Is(err, ErrNotRunning) {
			t.Errorf("start, the init closing (request read: %v): err %v, want ErrNotRunning", read, err)
		}
	}
}
