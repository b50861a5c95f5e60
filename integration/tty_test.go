//go:build linux

package integration

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// TestCLITty: -t gives the command a terminal allocated inside the
// sandbox (never the caller's), with the caller's window size; the
// caller's terminal modes are restored afterwards.
func TestCLITty(t *testing.T) {
	root, _ := newStore(t)
	lbOK(t, root, "run", "-d", "--network", "none", "--name", "ttybox", "busybox")
	defer lb(t, root, "", "rm", "-f", "ttybox")
	for _, args := range [][]string{
		{"run", "-t", "--network", "none", "busybox"},
		{"exec", "-t", "ttybox"},
	} {
		ptmx, tty, err := pty.Open()
		if err != nil {
			t.Fatal(err)
		}
		pty.Setsize(ptmx, &pty.Winsize{Rows: 33, Cols: 111})
		before, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(binPath, append(append([]string{"--root", root}, args...),
			"sh", "-c", "tty; stty size; readlink /proc/self/fd/0")...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		done := make(chan struct{})
		go func() { io.Copy(&out, ptmx); close(done) }()
		werr := cmd.Wait()
		after, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		tty.Close()
		<-done // EIO once the last slave fd is closed
		ptmx.Close()
		got := strings.ReplaceAll(out.String(), "\r", "")
		if werr != nil {
			t.Errorf("%v: %v, output %q", args, werr, got)
		}
		if !strings.Contains(got, "/dev/pts/") || !strings.Contains(got, "33 111") {
			t.Errorf("%v: output %q, want a /dev/pts terminal of size 33 111", args, got)
		}
		if *before != *after {
			t.Errorf("%v: terminal modes not restored:\n%+v\nthen\n%+v", args, before, after)
		}
	}
}

// TestCLIDetachedTty: run -d -t gives the main command a terminal inside
// the sandbox (as docker run -dt does) and its output goes to the logs;
// without a terminal of the caller's it is 24×80. A snapshot with no
// command to put on the terminal is refused, leaving no sandbox.
func TestCLIDetachedTty(t *testing.T) {
	root, _ := newStore(t)
	lbOK(t, root, "run", "-d", "-t", "--network", "none", "--name", "dtty", "busybox",
		"sh", "-c", "tty; stty size; [ -t 1 ] && echo on-a-terminal")
	defer lb(t, root, "", "rm", "-f", "dtty")
	if r := lb(t, root, "", "wait", "dtty"); r.code != 0 {
		t.Fatalf("wait dtty: code %d stderr %q", r.code, r.stderr)
	}
	r := lb(t, root, "", "logs", "dtty")
	got := strings.ReplaceAll(r.stdout, "\r", "")
	if !strings.Contains(got, "/dev/pts/") || !strings.Contains(got, "24 80\n") || !strings.Contains(got, "on-a-terminal") {
		t.Errorf("logs of run -d -t: %q (stderr %q), want a /dev/pts terminal of 24 80", got, r.stderr)
	}
	// Past the init's first idle trim (2 s after the launch), when an
	// idle init hands over to a fresh copy of itself: the new init holds
	// the terminal, and the command keeps it.
	lbOK(t, root, "run", "-d", "-t", "--network", "none", "--name", "dtty3", "busybox",
		"sh", "-c", "sleep 3; tty; echo still here")
	defer lb(t, root, "", "rm", "-f", "dtty3")
	if r := lb(t, root, "", "wait", "dtty3"); r.code != 0 {
		t.Errorf("wait dtty3: code %d stderr %q, want 0 (the command lost its terminal?)", r.code, r.stderr)
	}
	if r := lb(t, root, "", "logs", "dtty3"); !strings.Contains(r.stdout, "/dev/pts/") || !strings.Contains(r.stdout, "still here") {
		t.Errorf("logs of a terminal command that outlived the first idle trim: %q (stderr %q)", r.stdout, r.stderr)
	}
	if r := lb(t, root, "", "run", "-d", "-t", "--network", "none", "--name", "dtty2", "busybox"); r.code == 0 || !strings.Contains(r.stderr, "names none") {
		t.Errorf("run -d -t of a snapshot without a command: code %d stderr %q, want a refusal", r.code, r.stderr)
	}
	if _, ok := ps(t, root)["dtty2"]; ok {
		t.Errorf("a refused run -d -t left sandbox dtty2 behind")
	}
}

// TestCLITtyClosedStdout: with -t, lightbox copies the command's output
// itself; when its stdout's reader goes away (`run -t … yes | head -2`)
// the command ends as it would without -t (SIGPIPE: exit 141), lightbox
// restores the terminal's modes, and nothing is left. lightbox used to die
// of SIGPIPE itself, leaving the terminal raw (and a dead sandbox).
func TestCLITtyClosedStdout(t *testing.T) {
	root, _ := newStore(t)
	lbOK(t, root, "run", "-d", "--network", "none", "--name", "ttyexec", "busybox")
	defer lb(t, root, "", "rm", "-f", "ttyexec")
	for _, args := range [][]string{
		{"run", "-t", "--network", "none", "busybox"},
		{"exec", "-t", "ttyexec"},
	} {
		ptmx, tty, err := pty.Open()
		if err != nil {
			t.Fatal(err)
		}
		before, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(binPath, append(append([]string{"--root", root}, args...), "yes")...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, pw, tty
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pw.Close()
		var stderr bytes.Buffer
		done := make(chan struct{})
		go func() { io.Copy(&stderr, ptmx); close(done) }()
		// Two lines read, as head -2 would, then the reader goes.
		rd := bufio.NewReader(pr)
		for range 2 {
			if line, err := rd.ReadString('\n'); err != nil {
				t.Errorf("%v: read %q: %v", args, line, err)
			}
		}
		pr.Close()
		timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
		werr := cmd.Wait()
		if !timer.Stop() {
			t.Errorf("%v: lightbox still ran 30s after its stdout's reader went away", args)
		}
		after, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		tty.Close()
		<-done
		ptmx.Close()
		if *before != *after {
			t.Errorf("%v: terminal modes not restored after the stdout's reader went away", args)
		}
		var ee *exec.ExitError
		if !errors.As(werr, &ee) || ee.ExitCode() != 128+int(syscall.SIGPIPE) {
			t.Errorf("%v: %v, stderr %q; want exit status 141 (the command's SIGPIPE)", args, werr, stderr.String())
		}
	}
	if m := ps(t, root); len(m) != 1 {
		t.Errorf("sandboxes after the runs: %v, want ttyexec only", m)
	}
	if got := strings.TrimSpace(lbOK(t, root, "exec", "ttyexec", "echo", "alive")); got != "alive" {
		t.Errorf("exec after the exec -t: %q, want alive", got)
	}
}

// TestCLIRunInBackground: `lightbox run … &` from an interactive shell
// (job control on, the terminal as stdin) runs to its end, as docker run
// does. lightbox copied a terminal's input to the command, and reading it
// from a background process group stopped lightbox with SIGTTIN
// ("Stopped (tty input)") before the command could end.
func TestCLIRunInBackground(t *testing.T) {
	root, _ := newStore(t)
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	// set -m: the job gets its own process group, which is not the
	// terminal's foreground one, and keeps the terminal as its stdin.
	script := `set -m; "$0" --root "$1" run --network none busybox sh -c 'echo done in the background' & echo "pid $!"; wait $!; echo "status $?"`
	cmd := exec.Command("/bin/sh", "-c", script, binPath, root)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	var out bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&out, ptmx); close(done) }()
	timer := time.AfterFunc(30*time.Second, func() {
		// The job is stopped: end it, and the shell waiting for it.
		var pid int
		for _, line := range strings.Split(out.String(), "\n") {
			if _, err := fmtSscan(strings.TrimPrefix(strings.TrimSpace(line), "pid "), &pid); err == nil && strings.HasPrefix(strings.TrimSpace(line), "pid ") {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		cmd.Process.Kill()
	})
	cmd.Wait()
	<-done
	if !timer.Stop() {
		t.Errorf("lightbox run in the background did not end within 30s: output %q", out.String())
	}
	got := strings.ReplaceAll(out.String(), "\r", "")
	if !strings.Contains(got, "done in the background\n") || !strings.Contains(got, "status 0\n") {
		t.Errorf("output %q, want the command's line and status 0", got)
	}
}
