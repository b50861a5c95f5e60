//go:build linux

package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/lockfile"
	"golang.org/x/sys/unix"
)

// sandboxPids lists the host pids of the processes in the pid namespace
// of the init pid, the init excepted.
func sandboxPids(t *testing.T, init int) []int {
	t.Helper()
	ns, err := os.Readlink("/proc/" + strconv.Itoa(init) + "/ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == init {
			continue
		}
		if l, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err == nil && l == ns {
			out = append(out, pid)
		}
	}
	return out
}

// checkGone fails t for each of pids that still exists once Destroy
// returned.
func checkGone(t *testing.T, pids []int) {
	t.Helper()
	for _, pid := range pids {
		if err := unix.Kill(pid, 0); !errors.Is(err, unix.ESRCH) {
			t.Errorf("process %d of the sandbox still there once Destroy returned: kill 0 = %v", pid, err)
		}
	}
}

// destroyEarly destroys sb and fails t unless Destroy returned on the
// init's word (earlyDestroys counts it once); why says what a miss means.
func destroyEarly(t *testing.T, sb *Sandbox, why string) {
	t.Helper()
	before := earlyDestroys.Load()
	if err := sb.Destroy(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := earlyDestroys.Load() - before; n != 1 {
		t.Errorf("early destroys: %d, want 1 (%s)", n, why)
	}
}

// TestDestroyDetachedGone: when a detached teardown (lightbox run's)
// returns, a process the main command left behind is gone (its pid no
// longer exists), the lease the init held is free, and nothing of the
// sandbox is left on disk.
func TestDestroyDetachedGone(t *testing.T) {
	e := newEnv(t)
	p := filepath.Join(t.TempDir(), "lease")
	lk, err := lockfile.Shared(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = inW.Close() }() // closed below; here only when the test failed first
	spec := e.spec("gone")
	spec.Leases = []*os.File{lk.File()}
	spec.DetachedTeardown = true
	spec.Command = []string{"sh", "-c", "sleep 1000 & read x; exit 5"}
	spec.Stdin = inR
	sb, err := e.m.Launch(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	lk.Close()
	_ = inR.Close() // the main command has its copy
	var left []int
	deadline := time.Now().Add(10 * time.Second)
	for len(left) < 2 { // sh and sleep
		if time.Now().After(deadline) {
			t.Fatalf("the workloads never showed up: %v", left)
		}
		time.Sleep(5 * time.Millisecond)
		left = sandboxPids(t, sb.Pid())
	}
	if err := inW.Close(); err != nil {
		t.Fatal(err)
	}
	// As lightbox run: the main command's status, then Destroy (a
	// Sandbox.Wait would wait for the init's exit too).
	if err := sb.MainCommand().Wait(); ExitCode(err) != 5 {
		t.Fatalf("the main command's Wait = %v; want exit 5", err)
	}
	if err := sb.Destroy(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkGone(t, left)
	if held, err := lockfile.IsLocked(p); err != nil || held {
		t.Errorf("lease after Destroy: held=%v, %v; want free", held, err)
	}
	m, err := filepath.Glob(filepath.Join(e.root, "*gone*"))
	if err != nil || len(m) != 0 {
		t.Errorf("left on disk once Destroy returned: %v, %v", m, err)
	}
	if err := unix.Kill(sb.Pid(), 0); !errors.Is(err, unix.ESRCH) {
		t.Errorf("the init %d still there once Destroy returned: kill 0 = %v", sb.Pid(), err)
	}
}

// TestDestroyEarly: Destroy by the handle that launched the sandbox
// returns on the init's word (nothing else of the sandbox runs, its
// leases are closed) without waiting for the init's own exit: a process
// a command left behind is gone, the lease is free, the name too; the
// rest goes in the background, which Close waits for.
func TestDestroyEarly(t *testing.T) {
	e := newEnv(t)
	p := filepath.Join(t.TempDir(), "lease")
	lk, err := lockfile.Shared(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	// A Manager of its own, closed here (e's is closed at the end).
	mp, err := idmap.Detect()
	if err != nil {
		t.Fatal(err)
	}
	m, err := Open(Options{Root: e.root, Mapping: mp, StopGrace: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	spec := e.spec("early")
	spec.Leases = []*os.File{lk.File()}
	sb, err := m.Launch(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	lk.Close()
	sh(t, sb, "sleep 1000 >/dev/null 2>&1 &")
	left := sandboxPids(t, sb.Pid())
	if len(left) == 0 {
		t.Fatal("the sleep left behind is not in the sandbox")
	}
	destroyEarly(t, sb, "the init's gone pipe not heard")
	checkGone(t, left)
	if held, err := lockfile.IsLocked(p); err != nil || held {
		t.Errorf("lease after Destroy: held=%v, %v; want free", held, err)
	}
	if _, err := os.Lstat(filepath.Join(e.root, "early")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the name's directory once Destroy returned: %v, want none", err)
	}
	again := e.launch(t, e.spec("early"))
	if got := sh(t, again, "echo ok"); got != "ok\n" {
		t.Errorf("a sandbox of the same name: %q", got)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Kill(sb.Pid(), 0); !errors.Is(err, unix.ESRCH) {
		t.Errorf("the init %d still there once Close returned: kill 0 = %v", sb.Pid(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(e.root, ".rm-early-*")); len(left) != 0 {
		t.Errorf("left once Close returned: %v", left)
	}
}

// TestDestroyEarlyThenExit: a process that exits right after an early
// Destroy, without Close (its background removal never ran), leaves a
// .rm- entry that gc removes, cgroups included, and so does the next
// launch's set-aside.
func TestDestroyEarlyThenExit(t *testing.T) {
	e := newEnv(t)
	for _, by := range []string{"gc", "launch"} {
		cmd := e.helper(t, "destroy-exit", "exited")
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
		asides, err := filepath.Glob(filepath.Join(e.root, ".rm-exited-*"))
		if err != nil || len(asides) != 1 {
			t.Fatalf("%s: entries set aside once the helper exited: %v, %v; want one", by, asides, err)
		}
		st, err := readState(asides[0])
		if err != nil {
			t.Fatal(err)
		}
		var cgs []string
		if st.Cgroup != nil {
			cgs, _ = st.Cgroup.reapDirs()
		}
		// The init may still be exiting (holding the lock, which tells
		// gc the entry is being removed): wait until it let go.
		deadline := time.Now().Add(10 * time.Second)
		for {
			locked, err := held(filepath.Join(asides[0], "lock"))
			if err != nil {
				t.Fatal(err)
			}
			if !locked {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the lock of %s still held", by, asides[0])
			}
			time.Sleep(time.Millisecond)
		}
		switch by {
		case "gc":
			if err := e.m.GC(t.Context()); err != nil {
				t.Fatal(err)
			}
		case "launch":
			e.launch(t, e.spec("next"))
		}
		deadline = time.Now().Add(10 * time.Second)
		for {
			var there []string
			for _, p := range append(cgs, asides[0]) {
				if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
					there = append(there, p)
				}
			}
			if len(there) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: still there: %v", by, there)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// TestDestroyEarlyAfterHandover: the gone pipe survives the init's
// handovers (an idle sandbox's init re-executes itself): Destroy of a
// sandbox that lived past one returns on the init's word too.
func TestDestroyEarlyAfterHandover(t *testing.T) {
	e := newEnv(t)
	sb, err := e.m.Launch(t.Context(), e.spec("handed"))
	if err != nil {
		t.Fatal(err)
	}
	waitGen(t, sb.Pid(), 1)
	sh(t, sb, "sleep 1000 >/dev/null 2>&1 &")
	left := sandboxPids(t, sb.Pid())
	destroyEarly(t, sb, "the gone pipe lost in the handover")
	checkGone(t, left)
}
