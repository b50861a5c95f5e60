//go:build linux

package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/testutil"
	"golang.org/x/sys/unix"
)

// sandboxProcs returns the state letter of every process of sb's pid
// namespace but its init, by host pid.
func sandboxProcs(t *testing.T, sb *Sandbox) map[int]byte {
	t.Helper()
	ns, err := nsOf(sb.Pid())
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]byte{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == sb.Pid() {
			continue
		}
		if got, err := nsOf(pid); err == nil && got == ns {
			if st := procState(pid); st != 0 {
				out[pid] = st
			}
		}
	}
	return out
}

func stoppedSet(procs map[int]byte) map[int]bool {
	out := map[int]bool{}
	for pid, st := range procs {
		if st == 'T' {
			out[pid] = true
		}
	}
	return out
}

// readCounter reads the counter the test's main command keeps writing.
func readCounter(t *testing.T, p string) int {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1 // caught mid-write
	}
	return n
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, what, ok)
}

// counterSpec is a sandbox whose main command counts in /c, with a
// sleeper it stops itself (as a user would) and a child that forks all
// the time.
func counterSpec(e *env, name string) Spec {
	spec := e.spec(name)
	spec.Command = []string{"sh", "-c", `sleep 1000 & kill -STOP $!; echo $! > /stopped
(while :; do sleep 0.01; done) &
i=0; while :; do i=$((i+1)); echo $i > /c.new; mv /c.new /c; done`}
	return spec
}

// TestFreeze stops a sandbox's processes, checks they hold still while
// exec still works, and that thaw resumes them — but not the one that
// was stopped before.
func TestFreeze(t *testing.T) {
	e := newEnv(t)
	sb := e.launch(t, counterSpec(e, "freeze"))
	upper, err := sb.UpperDir(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	counter := filepath.Join(upper, "c")
	waitFor(t, "the counter and the stopped sleeper", func() bool {
		_, err := os.Stat(filepath.Join(upper, "stopped"))
		return err == nil && readCounter(t, counter) > 0 && len(stoppedSet(sandboxProcs(t, sb))) == 1
	})
	before := stoppedSet(sandboxProcs(t, sb))

	thaw, err := sb.Freeze(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer thaw()
	procs := sandboxProcs(t, sb)
	if len(procs) < 3 {
		t.Fatalf("sandbox processes = %v, want the counter, the sleeper and the forker", procs)
	}
	for pid, st := range procs {
		if st != 'T' && st != 'Z' {
			t.Errorf("pid %d is %c while frozen, want T", pid, st)
		}
	}
	if _, err := os.Stat(filepath.Join(sb.dir, frozenName)); err != nil {
		t.Errorf("no list of the stopped processes while frozen: %v", err)
	}
	c1 := readCounter(t, counter)
	// The init still serves exec requests.
	if out := sh(t, sb, "echo served"); out != "served\n" {
		t.Errorf("exec while frozen: %q", out)
	}
	if c2 := readCounter(t, counter); c2 != c1 {
		t.Errorf("counter moved while frozen: %d -> %d", c1, c2)
	}
	if err := thaw(); err != nil {
		t.Fatal(err)
	}
	if err := thaw(); err != nil {
		t.Fatalf("second thaw: %v", err)
	}
	waitFor(t, "the counter to move after thaw", func() bool { return readCounter(t, counter) > c1 })
	after := stoppedSet(sandboxProcs(t, sb))
	for pid := range before {
		if !after[pid] {
			t.Errorf("pid %d, stopped before the freeze, was resumed by thaw", pid)
		}
	}
	if _, err := os.Stat(filepath.Join(sb.dir, frozenName)); err == nil {
		t.Error("frozen.json left after thaw")
	}
}

// TestFreezeLeftover: a freezer that dies leaves its processes stopped;
// GC (and the next Freeze) resumes them.
func TestFreezeLeftover(t *testing.T) {
	e := newEnv(t)
	sb := e.launch(t, counterSpec(e, "leftover"))
	upper, err := sb.UpperDir(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	counter := filepath.Join(upper, "c")
	// The sleeper's own SIGSTOP takes effect when it next runs, which
	// can be after the counter started: wait for both, as TestFreeze does
	// (before was once taken with the sleeper not yet stopped).
	waitFor(t, "the counter and the stopped sleeper", func() bool {
		return readCounter(t, counter) > 0 && len(stoppedSet(sandboxProcs(t, sb))) == 1
	})
	before := stoppedSet(sandboxProcs(t, sb))

	// A freezer that dies: it stops everything and never resumes.
	ns, err := nsOf(sb.Pid())
	if err != nil {
		t.Fatal(err)
	}
	fz := &freezer{dir: sb.dir, initPid: sb.Pid(), self: os.Getpid(), ns: ns, known: map[frozenProc]bool{}}
	if err := fz.stopAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, p := range fz.stopped {
		unix.Close(p.fd)
	}
	c1 := readCounter(t, counter)
	for pid, st := range sandboxProcs(t, sb) {
		if st != 'T' && st != 'Z' {
			t.Fatalf("pid %d is %c after the stop, want T", pid, st)
		}
	}
	if err := e.m.GC(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the counter to move after GC", func() bool { return readCounter(t, counter) > c1 })
	if after := stoppedSet(sandboxProcs(t, sb)); len(after) != len(before) {
		t.Errorf("stopped after GC: %v, want the sleeper only (%v)", after, before)
	}

	// The same through the next Freeze's thaw.
	fz = &freezer{dir: sb.dir, initPid: sb.Pid(), self: os.Getpid(), ns: ns, known: map[frozenProc]bool{}}
	if err := fz.stopAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, p := range fz.stopped {
		unix.Close(p.fd)
	}
	thaw, err := sb.Freeze(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c2 := readCounter(t, counter)
	if err := thaw(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the counter to move after Freeze and thaw", func() bool { return readCounter(t, counter) > c2 })
}

// TestFreezeLeftoverAttach: what a freezer that died (a commit killed
// with -9) left stopped is resumed by the next Attach of the sandbox (an
// exec, logs, wait or rm from any process), not only by a gc the user
// would have to know to run: until then the workload hangs while ps says
// running.
func TestFreezeLeftoverAttach(t *testing.T) {
	e := newEnv(t)
	sb := e.launch(t, counterSpec(e, "leftover-attach"))
	upper, err := sb.UpperDir(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	counter := filepath.Join(upper, "c")
	waitFor(t, "the counter and the stopped sleeper", func() bool {
		return readCounter(t, counter) > 0 && len(stoppedSet(sandboxProcs(t, sb))) == 1
	})
	before := stoppedSet(sandboxProcs(t, sb))

	ns, err := nsOf(sb.Pid())
	if err != nil {
		t.Fatal(err)
	}
	fz := &freezer{dir: sb.dir, initPid: sb.Pid(), self: os.Getpid(), ns: ns, known: map[frozenProc]bool{}}
	if err := fz.stopAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, p := range fz.stopped {
		unix.Close(p.fd)
	}
	c1 := readCounter(t, counter)
	if _, err := e.m.Attach(t.Context(), sb.Name()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the counter to move after Attach", func() bool { return readCounter(t, counter) > c1 })
	if after := stoppedSet(sandboxProcs(t, sb)); len(after) != len(before) {
		t.Errorf("stopped after Attach: %v, want the sleeper only (%v)", after, before)
	}
	if _, err := os.Stat(filepath.Join(sb.dir, frozenName)); err == nil {
		t.Error("frozen.json left after Attach resumed the processes")
	}
}

// TestFreezeKilledWrite: a commit killed while it wrote the list of the
// processes it stopped (frozen.json, written to a temporary file, synced
// and renamed) left the temporary file in the sandbox's directory for the
// sandbox's life, one more per such kill; gc removes them, and so does
// the next freeze.
func TestFreezeKilledWrite(t *testing.T) {
	e := newEnv(t)
	sb := e.launch(t, counterSpec(e, "killed-write"))
	left := func(n string) string {
		p := filepath.Join(sb.dir, ".tmp-"+frozenName+"-"+n)
		if err := os.WriteFile(p, []byte(`[{"pid":`), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gone := func(when, p string) {
		t.Helper()
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %s: %v; want it removed", when, filepath.Base(p), err)
		}
	}
	p := left("303722726")
	if err := e.m.GC(t.Context()); err != nil {
		t.Fatal(err)
	}
	gone("after gc", p)

	p = left("2992293525")
	thaw, err := sb.Freeze(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := thaw(); err != nil {
		t.Fatal(err)
	}
	gone("after a freeze and thaw", p)
}

// TestFreezeDestroyed: freezing a sandbox whose directory a destroy has
// removed (a commit racing a destroy through another handle) says the
// sandbox is not found, not that a freeze.lock is missing.
func TestFreezeDestroyed(t *testing.T) {
	e := newEnv(t)
	sb := e.launch(t, e.spec("freezegone"))
	if err := sb.Destroy(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the destroyed sandbox's directory to be removed", func() bool {
		_, err := os.Stat(sb.dir)
		return errors.Is(err, os.ErrNotExist)
	})
	if _, err := sb.Freeze(t.Context()); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Freeze of a destroyed sandbox: %v, want ErrNotFound", err)
	}
}
