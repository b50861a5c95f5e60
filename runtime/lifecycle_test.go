//go:build linux

package runtime

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/initbin"
	"github.com/beamhop/lightbox/internal/lockfile"
	"github.com/beamhop/lightbox/internal/testutil"
)

// helperMain is a launcher in another process (TestMain runs it when
// LIGHTBOX_RUNTIME_HELPER is set): it launches a sandbox, says "ready" on
// stdout, then detaches and exits ("detach") or waits to be killed
// ("hold").
func helperMain(mode, root, rootfs, name string) {
	mp, err := idmap.Detect()
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	m, err := Open(Options{Root: root, Mapping: mp})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	spec := Spec{Name: name, Layers: []string{rootfs}, Network: NetworkNone}
	if mode == "detach-main" {
		spec.Command = []string{"sh", "-c", "echo to-stdout; echo to-stderr >&2; sleep 1; exit 7"}
	}
	if mode == "detach-sleep" { // TestExecEndsWithSandbox
		spec.Command = []string{"sleep", "1000"}
	}
	if mode == "detach-counter" { // TestInitHandover
		// Ended by a SIGUSR1 (sent to the init, which forwards it), not
		// by an exec: an exec that made it end could still be running
		// when the sandbox ends with it, and be killed.
		spec.Command = []string{"sh", "-c", "trap 'go=1' USR1; i=0; while [ -z \"$go\" ]; do echo $i; i=$((i+1)); sleep 0.02; done; echo end; echo err >&2; exit 7"}
		spec.Limits.LogBytes = 1 << 20
	}
	if mode == "detach-tty" || mode == "detach-tty-capped" { // TestInitHandoverTty
		spec.Tty, spec.TtySize = true, [2]uint16{24, 80}
		// Ended by the resize to 40 120 (for the same reason as
		// detach-counter's signal).
		spec.Command = []string{"sh", "-c", "i=0; while [ \"$(stty size)\" != \"40 120\" ]; do echo $i; i=$((i+1)); sleep 0.02; done; stty size; echo end"}
		if mode == "detach-tty-capped" {
			spec.Limits.LogBytes = 1 << 20
		}
	}
	if mode == "destroy-exit" { // TestDestroyEarlyThenExit
		// The background removal never starts: this process exits
		// right after Destroy returned, without Close.
		removeGoingHook = func() { select {} }
	}
	sb, err := m.Launch(context.Background(), spec)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	if mode == "destroy-exit" {
		if err := sb.Command("sh", "-c", "sleep 1000 >/dev/null 2>&1 &").Run(); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		if err := sb.Destroy(context.Background()); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		if earlyDestroys.Load() != 1 {
			fmt.Println("error: Destroy did not return on the init's word")
			os.Exit(1)
		}
		fmt.Println("ready")
		os.Exit(0)
	}
	fmt.Println("ready")
	if mode == "hold" {
		select {}
	}
	if err := sb.Detach(); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// helper starts helperMain in a new process and waits for "ready".
func (e *env) helper(t *testing.T, mode, name string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "LIGHTBOX_RUNTIME_HELPER="+strings.Join([]string{mode, e.root, e.rootfs, name}, "|"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper launcher: %q", line)
	}
	return cmd
}

func TestDetachAttach(t *testing.T) {
	e := newEnv(t)
	cmd := e.helper(t, "detach", "detached")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	// The launcher is gone; the sandbox runs on.
	sb, err := e.m.Attach(t.Context(), "detached")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(sh(t, sb, "hostname")); got != "detached" {
		t.Errorf("hostname = %q", got)
	}
	list, err := e.m.List(t.Context())
	if err != nil || len(list) != 1 || list[0].Name != "detached" || list[0].Status != StatusRunning || list[0].Pid == 0 {
		t.Errorf("List = %+v, %v; want one running sandbox", list, err)
	}
	if _, err := e.m.Launch(t.Context(), e.spec("detached")); !errors.Is(err, errdefs.ErrExists) {
		t.Errorf("Launch with the detached sandbox's name: %v, want ErrExists", err)
	}
	if _, err := sb.Wait(t.Context()); !errors.Is(err, ErrNoCommand) {
		t.Errorf("Wait on an idle sandbox: %v, want ErrNoCommand", err)
	}
	// Destroy from here: SIGTERM reaches what runs in it.
	bg := sb.Command("sleep", "1000")
	if err := bg.Start(); err != nil {
		t.Fatal(err)
	}
	if err := sb.Destroy(t.Context()); err != nil {
		t.Fatal(err)
	}
	if list, _ := e.m.List(t.Context()); len(list) != 0 {
		t.Errorf("List after Destroy = %+v", list)
	}
	if _, err := os.Stat(filepath.Join(e.root, "detached")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir after Destroy: %v", err)
	}
	if _, err := e.m.Attach(t.Context(), "detached"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Attach after Destroy: %v, want ErrNotFound", err)
	}
	// The name is free again.
	e.launch(t, e.spec("detached"))
}

func TestMainCommandLifetime(t *testing.T) {
	e := newEnv(t)
	cmd := e.helper(t, "detach-main", "worker")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	sb, err := e.m.Attach(t.Context(), "worker")
	if err != nil {
		t.Fatal(err)
	}
	code, err := sb.Wait(t.Context())
	if err != nil || code != 7 {
		t.Fatalf("Wait = %d, %v; want 7", code, err)
	}
	// The sandbox ended with its main command and keeps its name, code
	// and logs until removed.
	info, err := sb.Info(t.Context())
	if err != nil || info.Status != StatusExited || info.ExitCode != 7 {
		t.Errorf("Info = %+v, %v; want exited with 7", info, err)
	}
	if code, err := sb.Wait(t.Context()); err != nil || code != 7 {
		t.Errorf("Wait again = %d, %v; want 7", code, err)
	}
	var out, errb bytes.Buffer
	if err := sb.Logs(t.Context(), false, &out, &errb); err != nil || out.String() != "to-stdout\n" || errb.String() != "to-stderr\n" {
		t.Errorf("Logs = %q, %q, %v", out.String(), errb.String(), err)
	}
	if _, err := e.m.Launch(t.Context(), e.spec("worker")); !errors.Is(err, errdefs.ErrExists) {
		t.Errorf("Launch with an exited sandbox's name: %v, want ErrExists", err)
	}
	if err := e.m.GC(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Attach(t.Context(), "worker"); err != nil {
		t.Errorf("GC removed an exited sandbox: %v", err)
	}
	if err := sb.Destroy(t.Context()); err != nil {
		t.Fatal(err)
	}
	if list, _ := e.m.List(t.Context()); len(list) != 0 {
		t.Errorf("List after Destroy = %+v", list)
	}
}

func TestMainCommandAttached(t *testing.T) {
	e := newEnv(t)
	spec := e.spec("attached")
	spec.Command = []string{"sh", "-c", "read x; echo got $x; echo oops >&2; exit 3"}
	var out, errb bytes.Buffer
	spec.Stdin, spec.Stdout, spec.Stderr = strings.NewReader("line\n"), &out, &errb
	sb := e.launch(t, spec)
	code, err := sb.Wait(t.Context())
	if err != nil || code != 3 {
		t.Fatalf("Wait = %d, %v; want 3", code, err)
	}
	if out.String() != "got line\n" || errb.String() != "oops\n" {
		t.Errorf("main command streams: %q, %q", out.String(), errb.String())
	}
}

func TestDestroyGrace(t *testing.T) {
	e := newEnv(t)
	spec := e.spec("grace")
	// A main command that ignores SIGTERM: Destroy must SIGKILL it after
	// the grace period.
	spec.Command = []string{"sh", "-c", "trap '' TERM; echo armed; while :; do sleep 1; done"}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	spec.Stdout = pw
	sb, err := e.m.Launch(t.Context(), spec)
	pw.Close()
	if err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(pr).ReadString('\n'); line != "armed\n" {
		t.Fatalf("main command: %q, %v", line, err)
	}
	start := time.Now()
	if err := sb.DestroyGrace(t.Context(), 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("Destroy took %v, less than the grace period", d)
	}
	if list, _ := e.m.List(t.Context()); len(list) != 0 {
		t.Errorf("List after Destroy = %+v", list)
	}
	// A main command that honours SIGTERM ends at once.
	spec = e.spec("grace2")
	spec.Command = []string{"sleep", "1000"}
	sb, err = e.m.Launch(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := sb.DestroyGrace(t.Context(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Destroy of a main command that exits on SIGTERM took %v", d)
	}
}

func TestKilledLauncher(t *testing.T) {
	e := newEnv(t)
	cmd := e.helper(t, "hold", "victim")
	sb, err := e.m.Attach(t.Context(), "victim")
	if err != nil {
		t.Fatal(err)
	}
	pid := sb.Pid()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// The init sees its liveness pipe close and takes the sandbox down.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		info, err := sb.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Status == StatusDead {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("sandbox still %s after its launcher was killed", info.Status)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// The init itself is gone too (a zombie at most, until the host's
	// init reaps it: its launcher was its parent).
	for !exited(pid) {
		select {
		case <-ctx.Done():
			t.Fatalf("init %d still running after its launcher was killed", pid)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// The next launch clears what the kill left, cheaply; GC does too.
	after, err := e.m.Launch(t.Context(), e.spec("after"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.root, "victim")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead sandbox's directory after the next launch: %v", err)
	}
	if err := after.Destroy(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := e.m.GC(t.Context()); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(e.root)
	for _, ent := range ents {
		if ent.Name() != ".lock" && ent.Name() != ".targets" && !strings.HasPrefix(ent.Name(), ".init-") { // the lean init and the targets layer stay, for the next launch
			t.Errorf("left after GC: %s", ent.Name())
		}
	}
}

func TestTimeout(t *testing.T) {
	e := newEnv(t)
	spec := e.spec("timeout")
	spec.Command = []string{"sleep", "1000"}
	spec.Timeout = 300 * time.Millisecond
	sb := e.launch(t, spec)
	code, err := sb.Wait(t.Context())
	if err != nil || code != 143 {
		t.Errorf("Wait = %d, %v; want 143 (SIGTERM at the timeout)", code, err)
	}
	info, _ := sb.Info(t.Context())
	if info.Status != StatusExited {
		t.Errorf("status after timeout: %+v", info)
	}
}

// exited reports whether pid is gone or a zombie.
func exited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

func TestLeasesHeld(t *testing.T) {
	e := newEnv(t)
	p := filepath.Join(t.TempDir(), "lease")
	lk, err := lockfile.Shared(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	spec := e.spec("leases")
	spec.Leases = []*os.File{lk.File()}
	sb, err := e.m.Launch(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	lk.Close()
	if held, err := lockfile.IsLocked(p); err != nil || !held {
		t.Errorf("lease while the sandbox runs: held=%v, %v; want held", held, err)
	}
	if got := sh(t, sb, "ls /proc/self/fd | wc -l"); strings.TrimSpace(got) != "4" {
		t.Errorf("a workload has %s fds open, want 4 (stdio and ls's own)", strings.TrimSpace(got))
	}
	if err := sb.Destroy(t.Context()); err != nil {
		t.Fatal(err)
	}
	if held, err := lockfile.IsLocked(p); err != nil || held {
		t.Errorf("lease after Destroy: held=%v, %v; want free", held, err)
	}
}

func TestSignalForwarding(t *testing.T) {
	e := newEnv(t)
	spec := e.spec("sigfwd")
	spec.Command = []string{"sh", "-c", "trap 'echo got TERM; exit 42' TERM; echo armed; while :; do sleep 0.05; done"}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	spec.Stdout = pw
	sb := e.launch(t, spec)
	pw.Close()
	rd := bufio.NewReader(pr)
	if line, err := rd.ReadString('\n'); line != "armed\n" {
		t.Fatalf("main command: %q, %v", line, err)
	}
	// SIGTERM to the init (as `kill PID` on the host does) reaches the
	// main command.
	if err := syscall.Kill(sb.Pid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := sb.Wait(t.Context())
	if err != nil || code != 42 {
		t.Errorf("Wait = %d, %v; want 42", code, err)
	}
	if line, _ := rd.ReadString('\n'); line != "got TERM\n" {
		t.Errorf("main command output after SIGTERM: %q", line)
	}
}

func TestParallelLaunch(t *testing.T) {
	e := newEnv(t)
	errs := make(chan error, 4)
	sbs := make(chan *Sandbox, 4)
	for range 4 {
		go func() {
			sb, err := e.m.Launch(t.Context(), e.spec(""))
			if err == nil {
				sbs <- sb
				err = sb.Command("true").Run()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	close(sbs)
	seen := map[string]bool{}
	for sb := range sbs {
		if seen[sb.Name()] {
			t.Errorf("generated name %s twice", sb.Name())
		}
		seen[sb.Name()] = true
		if err := sb.Destroy(t.Context()); err != nil {
			t.Error(err)
		}
	}
}

func TestRemoveOtherOwners(t *testing.T) {
	e := newEnv(t)
	if e.m.mapping.Single() {
		testutil.Need(t, false, "needs a subordinate id range (uid 1000 inside)")
	}
	spec := e.spec("owners")
	spec.User = "1000"
	sb, err := e.m.Launch(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	sh(t, sb, "mkdir -p /tmp/u/v && touch /tmp/u/v/f && chmod 000 /tmp/u/v /tmp/u")
	if err := sb.Destroy(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.root, "owners")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir after Destroy: %v", err)
	}
}

func TestLogsFollow(t *testing.T) {
	e := newEnv(t)
	spec := e.spec("follow")
	spec.Command = []string{"sh", "-c", "echo a; sleep 0.3; echo b >&2; sleep 0.3; echo c"}
	sb := e.launch(t, spec)
	var out, errb bytes.Buffer
	if err := sb.Logs(t.Context(), true, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if out.String() != "a\nc\n" || errb.String() != "b\n" {
		t.Errorf("followed logs: %q, %q; want \"a\\nc\\n\", \"b\\n\"", out.String(), errb.String())
	}
	if info, _ := sb.Info(t.Context()); info.Status != StatusExited {
		t.Errorf("Logs(follow) returned while the sandbox is %s", info.Status)
	}
}

func TestKilledInit(t *testing.T) {
	e := newEnv(t)
	sb, err := e.m.Launch(t.Context(), e.spec("killed"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Detach(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(sb.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		list, err := e.m.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 1 && list[0].Status == StatusDead {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("List after the init was killed: %+v, want one dead sandbox", list)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// From another handle too, as `lightbox exec` has: the error says why.
	other, err := e.m.Attach(t.Context(), "killed")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []*Sandbox{sb, other} {
		if err := h.Command("true").Run(); !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "its init died") {
			t.Errorf("exec in a dead sandbox: %v, want ErrNotRunning saying its init died", err)
		}
	}
	if err := e.m.GC(t.Context()); err != nil {
		t.Fatal(err)
	}
	if list, _ := e.m.List(t.Context()); len(list) != 0 {
		t.Errorf("List after GC = %+v", list)
	}
	// Destroy of what GC already removed is not an error.
	if err := sb.Destroy(t.Context()); err != nil {
		t.Errorf("Destroy after GC: %v", err)
	}
}

// TestExecExitedSaysWhy: an exec in a sandbox whose main command has
// exited fails with ErrNotRunning saying so, with its status.
func TestExecExitedSaysWhy(t *testing.T) {
	e := newEnv(t)
	spec := e.spec("exited")
	spec.Command = []string{"sh", "-c", "exit 3"}
	sb := e.launch(t, spec)
	if code, err := sb.Wait(t.Context()); code != 3 || err != nil {
		t.Fatalf("Wait = %d, %v; want 3", code, err)
	}
	other, err := e.m.Attach(t.Context(), "exited")
	if err != nil {
		t.Fatal(err)
	}
	const want = "its main command exited (status 3)"
	if err := other.Command("true").Run(); !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), want) {
		t.Errorf("exec in an exited sandbox: %v, want ErrNotRunning saying %q", err, want)
	}
}

func TestLaunchContextEnds(t *testing.T) {
	e := newEnv(t)
	// A long root: the socket path passes sun_path's 108 bytes.
	e.m.root = filepath.Join(e.m.root, strings.Repeat("r", 100))
	if err := os.MkdirAll(e.m.root, 0o700); err != nil {
		t.Fatal(err)
	}
	spec := e.spec("ctxends")
	spec.Command = []string{"sleep", "1000"}
	ctx, cancel := context.WithCancel(t.Context())
	sb := e.launchCtx(t, ctx, spec)
	cancel()
	// The main command (and the sandbox) outlive the launch's context.
	if got := strings.TrimSpace(sh(t, sb, "sleep 0.2; pgrep -c sleep || ps | grep -c 'sleep 1000'")); got == "0" {
		t.Errorf("main command gone after the launch context ended")
	}
	if info, _ := sb.Info(t.Context()); info.Status != StatusRunning {
		t.Errorf("status after the launch context ended: %s", info.Status)
	}
}

func TestTimeoutIdle(t *testing.T) {
	e := newEnv(t)
	spec := e.spec("idle-timeout")
	spec.Timeout = 300 * time.Millisecond
	waitTimedOut(t, e.launch(t, spec), "idle sandbox")
}

// waitTimedOut waits for sb to end by its timeout and checks that it
// shows so: exited, timed out, status 124.
func waitTimedOut(t *testing.T, sb *Sandbox, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		info, err := sb.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Status != StatusRunning {
			if info.Status != StatusExited || !info.TimedOut || info.ExitCode != 124 {
				t.Errorf("%s after its timeout: %+v, want exited, timed out, 124", what, info)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s still running long after its timeout", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestCollectKilledInitInstall: a launch killed while it wrote the lean
// init into the store (the first launch after an upgrade; tens of ms of
// write and fsync) leaves a temporary copy of a few MB, which nothing
// removed: gc now does, and the next launch still runs.
func TestCollectKilledInitInstall(t *testing.T) {
	testutil.Need(t, initbin.Available(), "a build with the lean init (make generate)")
	e := newEnv(t)
	// What the kill leaves: atomicfile's temporary name, part written.
	left := filepath.Join(e.root, ".tmp-.init-"+initbin.Sum()[:32]+"-3828703701")
	if err := os.MkdirAll(e.root, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(left, []byte("\x7fELF half a program"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Collect(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(left); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after gc, %s: %v; want it removed", left, err)
	}
	sb := e.launch(t, e.spec("after-killed-install"))
	if out := sh(t, sb, "echo ok"); out != "ok\n" {
		t.Errorf("a launch after gc: %q", out)
	}
}
