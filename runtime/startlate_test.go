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

// TestRunWithoutStarted: Run asks the init for no Started reply (one
// message and one wakeup of each side fewer) and learns the pid from the
// Exit reply; a command that cannot start fails Run with Start's error;
// an init that predates NoStarted and sends Started anyway is understood;
// Start still asks for Started. A fake init on the exec socket plays
// each part, so the test sees exactly what goes over the wire.
func TestRunWithoutStarted(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: filepath.Join(dir, "init.sock"), Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sb := &Sandbox{m: &Manager{}, name: "fake", dir: dir} // a Manager of no store: no id mapping
	// serve answers one connection's request with replies, and returns
	// the request it read.
	serve := func(replies ...nsinit.Reply) <-chan nsinit.Request {
		got := make(chan nsinit.Request, 1)
		go func() {
			defer close(got)
			c, err := ln.AcceptUnix()
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			var req nsinit.Request
			fds, err := nsinit.ReadMsg(c, make([]byte, nsinit.MaxInline), nsinit.MaxFDsPerMessage, &req)
			for _, fd := range fds {
				unix.Close(fd)
			}
			if err != nil {
				t.Error(err)
				return
			}
			got <- req
			for _, r := range replies {
				if err := nsinit.WriteMsg(c, &r, nil); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		return got
	}
	noStarted := func(name string, got <-chan nsinit.Request, want bool) {
		t.Helper()
		req := <-got
		if req.Exec == nil || req.Exec.NoStarted != want {
			t.Errorf("%s: request's exec %+v, want NoStarted %v", name, req.Exec, want)
		}
	}

	got := serve(nsinit.Reply{Type: nsinit.ReplyExit, Pid: 7, Code: 3})
	c := sb.Command("/bin/false")
	err = c.Run()
	noStarted("run", got, true)
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 3 || c.Pid() != 7 || !c.Started() {
		t.Errorf("run: err %v, pid %d, started %v; want exit 3, pid 7, started", err, c.Pid(), c.Started())
	}

	got = serve(nsinit.Reply{Type: nsinit.ReplyError, Code: 127, Error: `exec "nope": executable file not found in $PATH`})
	c = sb.Command("nope")
	err = c.Run()
	noStarted("run of a missing command", got, true)
	if !errors.Is(err, ErrCommandNotFound) || c.Started() || c.ExitCode() != -1 {
		t.Errorf("run of a missing command: err %v, started %v, exit code %d; want ErrCommandNotFound, not started, -1", err, c.Started(), c.ExitCode())
	}

	got = serve(nsinit.Reply{Type: nsinit.ReplyStarted, Pid: 9}, nsinit.Reply{Type: nsinit.ReplyExit})
	c = sb.Command("/bin/true")
	err = c.Run()
	noStarted("run, an older init", got, true)
	if err != nil || c.Pid() != 9 {
		t.Errorf("run, an older init: err %v, pid %d; want nil, 9", err, c.Pid())
	}

	got = serve(nsinit.Reply{Type: nsinit.ReplyStarted, Pid: 5}, nsinit.Reply{Type: nsinit.ReplyExit, Pid: 5})
	c = sb.Command("/bin/true")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if c.Pid() != 5 {
		t.Errorf("start: pid %d before Wait, want 5", c.Pid())
	}
	noStarted("start", got, false)
	if err := c.Wait(); err != nil {
		t.Errorf("start, wait: %v", err)
	}
}
