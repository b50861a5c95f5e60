package ociruntime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/beamhop/lightbox/nsinit"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ExecOptions are exec's flags.
type ExecOptions struct {
	// Detach leaves a relay process standing for the exec'd one (its pid
	// in PidFile, its exit status the process's) and returns at once.
	Detach        bool
	PidFile       string
	ConsoleSocket string
	// Stdin, Stdout, Stderr are the process's stdio (nil = this
	// process's own).
	Stdin, Stdout, Stderr *os.File
}

// RelayArg is the hidden subcommand of lightbox-runc that a detached
// exec's relay runs as (its connection to the init on fd 3).
const RelayArg = "__exec-relay"

// Exec starts p in the running container id. Without Detach it returns
// the process's exit status once it ends.
func (r *Runtime) Exec(ctx context.Context, id string, sp *specs.Process, o ExecOptions) (int, error) {
	dir, err := r.dir(id)
	if err != nil {
		return -1, err
	}
	rec, err := readRecord(dir)
	if err != nil {
		return -1, err
	}
	if s := r.status(dir, rec); s != Running && s != Created {
		return -1, fmt.Errorf("container %s is %s: cannot exec", id, s)
	}
	if sp.Capabilities == nil {
		// The container's, as runc's exec: not the init's, which are
		// every one.
		c := *sp
		c.Capabilities = rec.Capabilities
		sp = &c
	}
	p, err := translateProcess(sp)
	if err != nil {
		return -1, fmt.Errorf("process: %w", err)
	}
	if p.Terminal != (o.ConsoleSocket != "") && o.Detach {
		return -1, errors.New("a detached exec with a terminal needs --console-socket, and --console-socket needs --tty")
	}
	addr, df, err := nsinit.SockAddr(dir)
	if err != nil {
		return -1, err
	}
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: addr, Net: "unixpacket"})
	if df != nil {
		_ = df.Close() // an O_PATH directory: nothing written through it
	}
	if err != nil {
		return -1, fmt.Errorf("connect to the container's init: %w", err)
	}
	defer func() { _ = c.Close() }() // socket/pty: nothing buffered to lose
	var fds []int
	if !p.Terminal {
		for _, f := range []*os.File{orStd(o.Stdin, os.Stdin), orStd(o.Stdout, os.Stdout), orStd(o.Stderr, os.Stderr)} {
			fds = append(fds, int(f.Fd()))
		}
	}
	if err := sendOCI(c, nsinit.OCIRequest{Op: nsinit.OpOCIExec, Process: p}, fds); err != nil {
		return -1, err
	}
	rep, rfds, err := readReply(c)
	if err != nil {
		return -1, err
	}
	if rep.Type == nsinit.ReplyError {
		return -1, fmt.Errorf("exec: %s", rep.Error)
	}
	if rep.Type != nsinit.ReplyStarted {
		return -1, fmt.Errorf("exec: unexpected reply %q", rep.Type)
	}
	if p.Terminal {
		if len(rfds) != 1 {
			return -1, errors.New("exec: no pty master in the reply")
		}
		err := sendConsole(o.ConsoleSocket, rfds[0])
		unix.Close(rfds[0])
		if err != nil {
			return -1, err
		}
	}
	if !o.Detach {
		if o.PidFile != "" {
			if err := writePidFile(o.PidFile, os.Getpid()); err != nil {
				return -1, err
			}
		}
		return relay(c), nil
	}
	cf, err := c.File()
	if err != nil {
		return -1, err
	}
	defer func() { _ = cf.Close() }() // a dup of c, nothing written through it; the relay has its own
	cmd := exec.Command("/proc/self/exe", RelayArg)
	cmd.Args[0] = "lightbox-runc"
	cmd.ExtraFiles = []*os.File{cf}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("start exec relay: %w", err)
	}
	if o.PidFile != "" {
		if err := writePidFile(o.PidFile, cmd.Process.Pid); err != nil {
			_ = cmd.Process.Kill() // our child: fails only when it is gone already
			_ = cmd.Wait()         // reaps the killed child: its status tells nothing
			return -1, err
		}
	}
	_ = cmd.Process.Release() // the engine (a subreaper) reaps it
	return 0, nil
}

// sendConsole sends the pty master over the console socket at path, as
// runc does.
func sendConsole(path string, master int) error {
	if path == "" {
		return errors.New("process.terminal is set: --console-socket is required")
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		return fmt.Errorf("console socket: %w", err)
	}
	defer func() { _ = c.Close() }()                                // socket/pty: nothing buffered to lose
	name, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(master)) // the name is informative: the fd is what counts
	if _, _, err := c.(*net.UnixConn).WriteMsgUnix([]byte(filepath.Base(name)), unix.UnixRights(master), nil); err != nil {
		return fmt.Errorf("console socket: send the pty master: %w", err)
	}
	return nil
}

// RelayMain is the relay of a detached exec: fd 3 is its connection to
// the init. It forwards the signals it gets and exits with the process's
// status.
func RelayMain() int {
	f := os.NewFile(3, "conn")
	fc, err := net.FileConn(f)
	_ = f.Close() // a copy: the conn has its own fd
	if err != nil {
		fmt.Fprintf(os.Stderr, "lightbox-runc: exec relay: %v\n", err)
		return 125
	}
	return relay(fc.(*net.UnixConn))
}

// relay forwards signals to the exec'd process and returns its exit
// status (128+N for a signal N; 137 if the container ended first).
func relay(c *net.UnixConn) int {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs)
	defer signal.Stop(sigs)
	done := make(chan int, 1)
	go func() {
		for {
			rep, fds, err := readReply(c)
			for _, fd := range fds {
				unix.Close(fd)
			}
			if err != nil {
				done <- 137
				return
			}
			if rep.Type == nsinit.ReplyExit {
				done <- rep.Code
				return
			}
		}
	}()
	for {
		select {
		case code := <-done:
			return code
		case s := <-sigs:
			sig := s.(syscall.Signal)
			if sig == unix.SIGCHLD || sig == unix.SIGURG || sig == unix.SIGPIPE {
				continue
			}
			_ = sendOCI(c, nsinit.OCIRequest{Op: nsinit.OpOCISignal, Signal: int(sig)}, nil) // fails when the init is gone: the reader above then returns 137
		}
	}
}

func sendOCI(c *net.UnixConn, req nsinit.OCIRequest, fds []int) error {
	if err := nsinit.WriteMsg(c, &req, fds); err != nil {
		return fmt.Errorf("send request to the container's init: %w", err)
	}
	return nil
}

func readReply(c *net.UnixConn) (nsinit.Reply, []int, error) {
	var rep nsinit.Reply
	fds, err := nsinit.ReadMsg(c, make([]byte, 4096), nsinit.MaxMsgFDs, &rep)
	if errors.Is(err, io.EOF) {
		return rep, fds, errors.New("the container's init closed the connection")
	}
	if err != nil {
		return rep, fds, fmt.Errorf("reply from the container's init: %w", err)
	}
	return rep, fds, nil
}
