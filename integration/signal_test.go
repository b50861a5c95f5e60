//go:build linux

package integration

import (
	"bufio"
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// forwarded are the signals `lightbox run` and `lightbox exec` pass on
// to their command, as docker's and podman's signal proxies do.
var forwarded = []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// trapScript traps each of forwarded, says it is ready, and exits 3 on
// any of them.
const trapScript = `trap "echo got signal; exit 3" TERM INT HUP QUIT USR1 USR2; echo ready; while :; do sleep 0.05; done`

// forwardsSignals runs args (a lightbox command running trapScript) once
// per signal, sends it the signal once the script is ready, and checks
// that the trap's exit status became lightbox's.
func forwardsSignals(t *testing.T, args ...string) {
	t.Helper()
	for _, sig := range forwarded {
		cmd := exec.Command(binPath, args...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		rd := bufio.NewReader(out)
		if line, _ := rd.ReadString('\n'); line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("first line %q, want ready", line)
		}
		cmd.Process.Signal(sig)
		// A signal lightbox swallows leaves it running: give up on it
		// (and fail) after a while rather than hang the test.
		timer := time.AfterFunc(20*time.Second, func() { cmd.Process.Signal(syscall.SIGTERM) })
		rest, _ := rd.ReadString('\n')
		err = cmd.Wait()
		if !timer.Stop() {
			t.Errorf("%s: %v: lightbox still ran 20s later: the signal never reached the command", args[2], sig)
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(rest, "got signal") {
			t.Errorf("%s: %v: exit %v, output %q, stderr %.200q; want the trap's exit 3", args[2], sig, err, rest, stderr.String())
		}
	}
}

// TestCLIRunForwardsSignals: SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1
// and SIGUSR2 sent to `lightbox run` reach the command, whose exit
// status becomes lightbox's.
func TestCLIRunForwardsSignals(t *testing.T) {
	root, _ := newStore(t)
	forwardsSignals(t, "--root", root, "run", "--network", "none", "busybox", "sh", "-c", trapScript)
	assertNoMounts(t, root)
	if m := ps(t, root); len(m) != 0 {
		t.Errorf("sandboxes left after run: %v", m)
	}
}

// TestCLIExecForwardsSignals: the same for `lightbox exec` (whose
// signals are registered at the process's start: cmd/lightbox/internal/
// earlysig), and the sandbox runs on.
func TestCLIExecForwardsSignals(t *testing.T) {
	root, _ := newStore(t)
	lbOK(t, root, "run", "-d", "--name", "fw", "--network", "none", "busybox", "sleep", "1000")
	forwardsSignals(t, "--root", root, "exec", "fw", "sh", "-c", trapScript)
	if got := strings.TrimSpace(lbOK(t, root, "exec", "fw", "echo", "alive")); got != "alive" {
		t.Errorf("exec after the signals: %q, want alive", got)
	}
	lbOK(t, root, "rm", "-f", "fw")
	assertNoMounts(t, root)
}

// TestCLIInterrupted: Ctrl-C (SIGINT) or SIGTERM ending a command that
// waits (logs -f here) exits 130 or 143, as a process those signals end,
// and says nothing: it used to print "lightbox: context canceled" and
// exit 125, lightbox's own failure.
func TestCLIInterrupted(t *testing.T) {
	root, _ := newStore(t)
	lbOK(t, root, "run", "-d", "--network", "none", "--name", "talker", "busybox", "sh", "-c", "echo ready; sleep 1000")
	defer lb(t, root, "", "rm", "-f", "-t", "0", "talker")
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		cmd := exec.Command(binPath, "--root", root, "logs", "-f", "talker")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("logs -f: first line %q, want ready", line)
		}
		cmd.Process.Signal(sig)
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 128+int(sig) || stderr.Len() != 0 {
			t.Errorf("logs -f, then %v: %v, stderr %q; want exit %d and nothing said", sig, err, stderr.String(), 128+int(sig))
		}
	}
}
