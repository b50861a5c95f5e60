//go:build linux

package integration

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beamhop/lightbox"
)

// runReady starts a detached sandbox running script (which prints
// "ready" once its traps are set) and waits until its log says so.
func runReady(t *testing.T, root, name string, args []string, script string) {
	t.Helper()
	run := append([]string{"run", "-d", "--name", name, "--network", "none"}, args...)
	lbOK(t, root, append(run, "sh", "-c", script)...)
	waitFor(t, name+" is ready", func() bool {
		return strings.Contains(lbOK(t, root, "logs", name), "ready")
	})
}

// exitOf is a sandbox's status and exit code as ps -a shows them.
func exitOf(t *testing.T, root, name string) (string, int) {
	t.Helper()
	e, ok := ps(t, root)[name]
	if !ok {
		t.Fatalf("sandbox %s is not listed", name)
	}
	if e.ExitCode == nil {
		return e.Status, -1
	}
	return e.Status, *e.ExitCode
}

// TestCLIStopAndKill: `lightbox stop` ends a sandbox's main command as
// `docker stop` does (its stop signal, then SIGKILL after -t) and keeps
// the sandbox, exited, with its status and logs; `lightbox kill` sends
// any signal (SIGKILL by default). Both work from any process, on
// detached and foreground sandboxes alike.
func TestCLIStopAndKill(t *testing.T) {
	root, r := newStore(t)

	// stop: SIGTERM reaches the trap, whose status the sandbox keeps.
	runReady(t, root, "s1", []string{"busybox"}, `trap "echo got TERM; exit 3" TERM; echo ready; while :; do sleep 0.05; done`)
	if out := lbOK(t, root, "stop", "s1"); out != "s1\n" {
		t.Errorf("stop printed %q, want the name", out)
	}
	if st, code := exitOf(t, root, "s1"); st != "exited" || code != 3 {
		t.Errorf("after stop: %s (%d), want exited (3)", st, code)
	}
	if out := lbOK(t, root, "logs", "s1"); !strings.Contains(out, "got TERM") {
		t.Errorf("logs after stop = %q, want the trap's output", out)
	}
	if res := lb(t, root, "", "wait", "s1"); res.stdout != "3\n" || res.code != 3 {
		t.Errorf("wait after stop: %q, exit %d; want 3", res.stdout, res.code)
	}
	// Stopping a stopped sandbox is no error (as docker's); killing it is.
	lbOK(t, root, "stop", "s1")
	if res := lb(t, root, "", "kill", "s1"); res.code == 0 || !strings.Contains(res.stderr, "not running") {
		t.Errorf("kill of an exited sandbox: exit %d, stderr %q; want a failure saying it is not running", res.code, res.stderr)
	}

	// kill -s: any signal, the sandbox runs on; stop of a command that
	// ignores SIGTERM: SIGKILL after the grace period.
	runReady(t, root, "s2", []string{"busybox"}, `trap "" TERM; trap "echo got USR1" USR1; echo ready; while :; do sleep 0.05; done`)
	if out := lbOK(t, root, "kill", "-s", "usr1", "s2"); out != "s2\n" {
		t.Errorf("kill printed %q, want the name", out)
	}
	waitFor(t, "the USR1 trap ran", func() bool { return strings.Contains(lbOK(t, root, "logs", "s2"), "got USR1") })
	if st, _ := exitOf(t, root, "s2"); st != "running" {
		t.Errorf("after kill -s USR1: %s, want running", st)
	}
	start := time.Now()
	lbOK(t, root, "stop", "-t", "1", "s2") // seconds, as docker stop -t 1 (it was refused: no duration)
	if took := time.Since(start); took < time.Second {
		t.Errorf("stop -t 1 of a command ignoring SIGTERM returned after %v, before the grace period", took)
	}
	if st, code := exitOf(t, root, "s2"); st != "exited" || code != 137 {
		t.Errorf("after stop of a command ignoring SIGTERM: %s (%d), want exited (137)", st, code)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"kill", "-s", "SIGFOO", "s2"}, `"SIGFOO": unknown`},
		{[]string{"kill", "nope"}, "nope: not found"},
		{[]string{"stop", "nope"}, "nope: not found"},
		{[]string{"stop", "-t", "soon", "s2"}, `want seconds (10) or a duration (1.5s, 500ms), not "soon"`},
	} {
		if res := lb(t, root, "", tc.args...); res.code == 0 || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want a failure saying %q", strings.Join(tc.args, " "), res.code, res.stderr, tc.want)
		}
	}

	// kill: SIGKILL by default.
	runReady(t, root, "s3", []string{"busybox"}, `trap "" TERM INT HUP; echo ready; while :; do sleep 0.05; done`)
	lbOK(t, root, "kill", "s3")
	if res := lb(t, root, "", "wait", "s3"); res.stdout != "137\n" {
		t.Errorf("wait after kill printed %q, want 137", res.stdout)
	}
	if st, code := exitOf(t, root, "s3"); st != "exited" || code != 137 {
		t.Errorf("after kill: %s (%d), want exited (137)", st, code)
	}

	// A foreground run, stopped from another process: the run exits
	// with the trap's status.
	fg := exec.Command(binPath, "--root", root, "run", "--name", "s4", "--network", "none", "busybox", "sh", "-c",
		`trap "exit 9" TERM; echo ready; while :; do sleep 0.05; done`)
	out, err := fg.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := fg.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf) != "ready\n" {
		fg.Process.Kill()
		fg.Wait()
		t.Fatalf("foreground run: read %q, %v; want ready", buf, err)
	}
	lbOK(t, root, "stop", "s4")
	var ee *exec.ExitError
	if err := fg.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 9 {
		t.Errorf("foreground run stopped from another process: %v, want exit 9", err)
	}

	// The API: a sandbox with no main command has nothing to stop or
	// signal.
	sb, err := r.LaunchSandbox(t.Context(), lightbox.SandboxOptions{Snapshot: "busybox", Network: lightbox.NetworkNone})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(t.Context())
	if err := sb.Stop(t.Context(), time.Second); !errors.Is(err, lightbox.ErrNoCommand) {
		t.Errorf("Stop of a sandbox with no main command: %v, want ErrNoCommand", err)
	}
	if err := sb.Signal(t.Context(), syscall.SIGTERM); !errors.Is(err, lightbox.ErrNoCommand) {
		t.Errorf("Signal of a sandbox with no main command: %v, want ErrNoCommand", err)
	}
	if res, err := sb.Exec(t.Context(), "true"); err != nil || res.ExitCode != 0 {
		t.Errorf("the sandbox after the refused Stop: exec %v, %v; want it running", res, err)
	}
}

// TestCLIStopSignal: the stop signal is run --stop-signal's, else the
// snapshot's STOPSIGNAL (set by a build, inherited by builds FROM it),
// else SIGTERM; rm -f sends it too, as stop does.
func TestCLIStopSignal(t *testing.T) {
	root, _ := newStore(t)
	ctx := buildContextDir(t, "FROM busybox\nSTOPSIGNAL SIGUSR1\n", map[string]string{})
	lbOK(t, root, "snapshot", "build", "-q", "-t", "usr1img", ctx)
	if out := lbOK(t, root, "snapshot", "inspect", "usr1img"); !strings.Contains(out, `"stopSignal": "SIGUSR1"`) {
		t.Errorf("snapshot inspect = %s, want its stopSignal", out)
	}
	child := buildContextDir(t, "FROM usr1img\nENV X=1\n", map[string]string{})
	lbOK(t, root, "snapshot", "build", "-q", "-t", "child", child)

	trap := `trap "exit 10" USR1; trap "exit 12" USR2; trap "exit 15" TERM; echo ready; while :; do sleep 0.05; done`
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"plain", []string{"busybox"}, 15},
		{"image", []string{"usr1img"}, 10},
		{"inherited", []string{"child"}, 10},
		{"flag", []string{"--stop-signal", "USR2", "usr1img"}, 12},
	} {
		runReady(t, root, tc.name, tc.args, trap)
		lbOK(t, root, "stop", tc.name)
		if st, code := exitOf(t, root, tc.name); st != "exited" || code != tc.want {
			t.Errorf("%s: after stop %s (%d), want exited (%d)", tc.name, st, code, tc.want)
		}
	}
	if res := lb(t, root, "", "run", "--stop-signal", "NOPE", "busybox", "true"); res.code != 125 || !strings.Contains(res.stderr, `"NOPE"`) {
		t.Errorf("run --stop-signal NOPE: exit %d, stderr %q; want 125 naming it", res.code, res.stderr)
	}

	// rm -f: the trap of the image's signal writes to a bind mount
	// before the sandbox goes.
	out := t.TempDir()
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}
	runReady(t, root, "rmf", []string{"-v", out + ":/out", "usr1img"}, `trap "echo USR1 > /out/sig; exit 10" USR1; echo ready; while :; do sleep 0.05; done`)
	lbOK(t, root, "rm", "-f", "rmf")
	if b, err := os.ReadFile(filepath.Join(out, "sig")); err != nil || string(b) != "USR1\n" {
		t.Errorf("rm -f of a sandbox whose snapshot stops with SIGUSR1: the trap wrote %q (%v), want USR1", b, err)
	}
}
