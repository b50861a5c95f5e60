//go:build linux

package runtime

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The init hands over to a new copy of itself once the sandbox is idle
// (nsinit/handover_linux.go); /proc/PID/cmdline then reads
// "lightbox-init handover N" for the Nth. These tests wait for it (the
// first comes one second after the last connection or two after the
// launch, the next ones ten seconds after the last connection) and check
// that the sandbox works the same across it.

// handoverGen is the init's handover count (0 before the first).
func handoverGen(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatalf("init %d: %v", pid, err)
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	if len(args) != 3 || args[1] != "handover" {
		return 0
	}
	n, err := strconv.Atoi(args[2])
	if err != nil {
		t.Fatalf("init %d: cmdline %q", pid, args)
	}
	return n
}

// waitGen waits until the init has handed over at least gen times.
func waitGen(t *testing.T, pid, gen int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for handoverGen(t, pid) < gen {
		if time.Now().After(deadline) {
			t.Fatalf("init %d: handover %d did not come (at %d after 30s)", pid, gen, handoverGen(t, pid))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// confinement is what /proc says of how confined an init is: capability
// sets, no_new_privs, seccomp, its rlimits, oom_score_adj and cgroups.
func confinement(t *testing.T, pid int) string {
	t.Helper()
	// Credentials, capabilities, no_new_privs and seccomp are per thread:
	// the spawner's thread is confined before it forks workloads, the
	// others are the init's own. Which thread is the spawner's varies, so
	// what is compared is the set of distinct per-thread states.
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]bool{}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()))
		if err != nil {
			continue // the thread ended meanwhile
		}
		var st []string
		for _, l := range strings.Split(string(b), "\n") {
			for _, k := range []string{"Uid:", "Gid:", "Cap", "NoNewPrivs:", "Seccomp", "Groups:"} {
				if strings.HasPrefix(l, k) {
					st = append(st, strings.Join(strings.Fields(l), " "))
				}
			}
		}
		states[strings.Join(st, "\n")] = true
	}
	out := slices.Sorted(maps.Keys(states))
	for _, f := range []string{"limits", "oom_score_adj"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return strings.Join(out, "\n--\n")
}

func TestInitHandover(t *testing.T) {
	e := newEnv(t)
	// A reference: an init with a connection open (its main command's,
	// held by this process) never hands over.
	refSpec := e.spec("handover-ref")
	refSpec.Command = []string{"sleep", "1000"}
	ref := e.launch(t, refSpec)
	// The sandbox under test: its main command writes a numbered line
	// every few milliseconds into its capped log (relayed by the init)
	// until it gets a SIGUSR1; its launcher detaches and exits.
	cmd := e.helper(t, "detach-counter", "handover")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	sb, err := e.m.Attach(t.Context(), "handover")
	if err != nil {
		t.Fatal(err)
	}
	pid := sb.Pid()
	waitGen(t, pid, 1)
	if g := handoverGen(t, ref.Pid()); g != 0 {
		t.Fatalf("the reference init handed over (%d) with a connection open", g)
	}
	// Exactly as confined as an init that never handed over, each with
	// its spawner started (a new init starts it with its first command).
	sh(t, sb, "true")
	sh(t, ref, "true")
	if got, want := confinement(t, pid), confinement(t, ref.Pid()); got != want {
		t.Errorf("init after a handover:\n%s\nwant (an init before any):\n%s", got, want)
	}
	// Both named lightbox-init in ps and pgrep, not after the
	// /proc/self/fd/N each was started from.
	for _, p := range []int{ref.Pid(), pid} {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p)); err != nil || string(b) != "lightbox-init\n" {
			t.Errorf("init %d's name %q (%v), want lightbox-init", p, b, err)
		}
	}
	// A workload still cannot reach PID 1's memory map, fds, binary or
	// environment (the reference shows the same attacks fail before any
	// handover).
	for _, script := range []string{"cat /proc/1/environ", "cat /proc/1/maps", "readlink /proc/1/exe", "readlink /proc/1/fd/0"} {
		for _, box := range []*Sandbox{ref, sb} {
			if out, _, code := run(t, box, "/bin/sh", "-c", script); code == 0 || out != "" {
				t.Errorf("%s: a workload ran %q against the init: exit %d, %q", box.Name(), script, code, out)
			}
		}
	}
	// Exec, with and without a terminal, and its exit status.
	if got := sh(t, sb, "echo hi; hostname"); got != "hi\nhandover\n" {
		t.Errorf("exec after a handover: %q", got)
	}
	if _, _, code := run(t, sb, "/bin/sh", "-c", "exit 5"); code != 5 {
		t.Errorf("exit status after a handover: %d, want 5", code)
	}
	c := sb.Command("tty")
	c.Tty = true
	var tty bytes.Buffer
	c.Stdout = &tty
	if err := c.Run(); err != nil || !strings.HasPrefix(tty.String(), "/dev/pts/") {
		t.Errorf("tty exec after a handover: %q, %v", tty.String(), err)
	}
	// Every workload is born in the workloads' cgroup, as before.
	if got, want := sh(t, sb, "cat /proc/self/cgroup"), sh(t, ref, "cat /proc/self/cgroup"); got != want {
		t.Errorf("a workload's cgroups after a handover:\n%s\nwant\n%s", got, want)
	}
	// The connections above were served: another handover follows.
	waitGen(t, pid, 2)
	if got := sh(t, sb, "echo again"); got != "again\n" {
		t.Errorf("exec after a second handover: %q", got)
	}
	// The main command ends after the handovers (the signal, sent to the
	// init, reaches it: the new init served above, so its handlers are
	// in place): its status is recorded and every line it wrote reached
	// the log, in order.
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	code, err := sb.Wait(t.Context())
	if err != nil || code != 7 {
		t.Fatalf("Wait = %d, %v; want 7", code, err)
	}
	if info, err := sb.Info(t.Context()); err != nil || info.Status != StatusExited || info.ExitCode != 7 {
		t.Errorf("Info = %+v, %v; want exited with 7", info, err)
	}
	var stdout, stderr bytes.Buffer
	if err := sb.Logs(t.Context(), false, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) < 2 || lines[len(lines)-1] != "end" {
		t.Fatalf("log: %q, want numbered lines then end", stdout.String())
	}
	for i, l := range lines[:len(lines)-1] {
		if l != strconv.Itoa(i) {
			t.Fatalf("log line %d is %q (lost or repeated across a handover); log: %q", i, l, stdout.String())
		}
	}
	if stderr.String() != "err\n" {
		t.Errorf("stderr log: %q, want \"err\\n\"", stderr.String())
	}
	if err := sb.Destroy(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestInitHandoverLiveness: a new init still ends the sandbox when its
// launcher dies.
func TestInitHandoverLiveness(t *testing.T) {
	e := newEnv(t)
	cmd := e.helper(t, "hold", "held")
	sb, err := e.m.Attach(t.Context(), "held")
	if err != nil {
		t.Fatal(err)
	}
	pid := sb.Pid()
	waitGen(t, pid, 1)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // killed above
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for !exited(pid) {
		select {
		case <-ctx.Done():
			t.Fatalf("init %d still running after its launcher was killed (after a handover)", pid)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := sb.Destroy(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestInitHandoverTimeoutDestroy: the timeout set at launch holds across
// a handover, and Destroy and signals reach a new init.
func TestInitHandoverTimeoutDestroy(t *testing.T) {
	e := newEnv(t)
	spec := e.spec("handover-timeout")
	spec.Timeout = 6 * time.Second
	start := time.Now()
	sb := e.launch(t, spec)
	waitGen(t, sb.Pid(), 1)
	waitTimedOut(t, sb, "sandbox (across a handover)")
	if d := time.Since(start); d < spec.Timeout {
		t.Errorf("timed out after %v, before its timeout of %v", d, spec.Timeout)
	}

	// Destroy: SIGTERM reaches what runs in the sandbox, through the new init.
	sb = e.launch(t, e.spec("handover-destroy"))
	waitGen(t, sb.Pid(), 1)
	bg := sb.Command("sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done")
	if err := bg.Start(); err != nil {
		t.Fatal(err)
	}
	if err := sb.Destroy(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Destroy returns on the init's word that nothing else of the
	// sandbox runs (TestDestroyEarlyAfterHandover checks that part); the
	// init's own exit follows it.
	deadline := time.Now().Add(10 * time.Second)
	for !exited(sb.Pid()) {
		if time.Now().After(deadline) {
			t.Fatalf("init %d still running 10 s after Destroy", sb.Pid())
		}
		time.Sleep(5 * time.Millisecond)
	}

	// SIGTERM to a new init (as `kill PID` on the host) ends an idle sandbox.
	sb = e.launch(t, e.spec("handover-term"))
	pid := sb.Pid()
	waitGen(t, pid, 1)
	// The new init's cmdline changes at its exec, before its signal
	// handlers exist (nsinit/handover_linux.go): once it serves, they do.
	sh(t, sb, "true")
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for !exited(pid) {
		select {
		case <-ctx.Done():
			t.Fatalf("init %d still running after SIGTERM (after a handover)", pid)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestInitHandoverRace: a command sent around the moment an init hands
// over (one idle second after the last) runs: a connection that comes
// during the exec waits in the listener's queue.
func TestInitHandoverRace(t *testing.T) {
	e := newEnv(t)
	handed := 0
	for i, d := 0, 960*time.Millisecond; d <= 1040*time.Millisecond; i, d = i+1, d+8*time.Millisecond {
		sb, err := e.m.Launch(t.Context(), e.spec(fmt.Sprintf("handover-race-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		sh(t, sb, "true") // the init hands over one idle second after this
		time.Sleep(d)
		if got := sh(t, sb, "echo ok"); got != "ok\n" {
			t.Errorf("exec %v after the last: %q", d, got)
		}
		if handoverGen(t, sb.Pid()) > 0 {
			handed++
		}
		if err := sb.Destroy(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if handed == 0 {
		t.Errorf("no init had handed over after its second command")
	}
}

// TestInitHandoverTty: a detached main command on a terminal whose output
// goes to the logs (run -d -t) no longer keeps its init from handing
// over. The new init holds the terminal: the command's output reaches the
// log across the handover, none lost or repeated, whether the log is
// capped or not, and a resize sent after the handover is the size the
// command sees.
func TestInitHandoverTty(t *testing.T) {
	e := newEnv(t)
	idle := e.launch(t, e.spec("handover-tty-idle"))
	if err := idle.resizeMain(t.Context(), 40, 120); err == nil {
		t.Error("resize of the main terminal of a sandbox with no main command succeeded")
	}
	var boxes []*Sandbox
	for _, mode := range []string{"detach-tty", "detach-tty-capped"} {
		name := "handover-" + mode
		cmd := e.helper(t, mode, name)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
		sb, err := e.m.Attach(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		boxes = append(boxes, sb)
	}
	for _, sb := range boxes {
		waitGen(t, sb.Pid(), 1)
		// The resize also ends the command (lifecycle_test.go, helperMain).
		if err := sb.resizeMain(t.Context(), 40, 120); err != nil {
			t.Fatalf("%s: resize after a handover: %v", sb.Name(), err)
		}
	}
	for _, sb := range boxes {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		code, err := sb.Wait(ctx)
		cancel()
		if err != nil || code != 0 {
			t.Fatalf("%s: Wait = %d, %v", sb.Name(), code, err)
		}
		var stdout bytes.Buffer
		if err := sb.Logs(t.Context(), false, &stdout, io.Discard); err != nil {
			t.Fatal(err)
		}
		out := strings.ReplaceAll(stdout.String(), "\r\n", "\n")
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) < 3 || lines[len(lines)-2] != "40 120" || lines[len(lines)-1] != "end" {
			t.Fatalf("%s: log: %q, want numbered lines, the size after the resize (40 120), then end", sb.Name(), out)
		}
		for i, l := range lines[:len(lines)-2] {
			if l != strconv.Itoa(i) {
				t.Fatalf("%s: log line %d is %q (lost or repeated across a handover); log: %q", sb.Name(), i, l, out)
			}
		}
		if err := sb.Destroy(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}
