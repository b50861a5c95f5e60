//go:build linux

package integration

import (
	"bufio"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// trapScript traps SIGTERM and SIGINT, says it is ready, and exits 3 on
// either.
const trapScript = `trap "echo got signal; exit 3" TERM INT; echo ready; while :; do sleep 0.05; done`

// forwardsSignals runs args (a lightbox command running trapScript) once
// per signal, sends it the signal once the script is ready, and checks
// that the trap's exit status became lightbox's.
func forwardsSignals(t *testing.T, args ...string) {
	t.Helper()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd := exec.Command(binPath, args...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
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
		rest, _ := rd.ReadString('\n')
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(rest, "got signal") {
			t.Errorf("%s: %v: exit %v, output %q; want the trap's exit 3", args[2], sig, err, rest)
		}
	}
}

// TestCLIRunForwardsSignals: SIGTERM and SIGINT sent to `lightbox run`
// reach the command, whose exit status becomes lightbox's.
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
