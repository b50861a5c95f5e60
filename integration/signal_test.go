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

// TestCLIRunForwardsSignals: SIGTERM and SIGINT sent to `lightbox run`
// reach the command, whose exit status becomes lightbox's.
func TestCLIRunForwardsSignals(t *testing.T) {
	root, _ := newStore(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd := exec.Command(binPath, "--root", root, "run", "--network", "none", "busybox", "sh", "-c",
			`trap "echo got signal; exit 3" TERM INT; echo ready; while :; do sleep 0.05; done`)
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
			t.Errorf("%v: exit %v, output %q; want the trap's exit 3", sig, err, rest)
		}
	}
	assertNoMounts(t, root)
	if m := ps(t, root); len(m) != 0 {
		t.Errorf("sandboxes left after run: %v", m)
	}
}
