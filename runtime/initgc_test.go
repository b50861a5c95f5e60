//go:build linux

package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/initbin"
	"github.com/beamhop/lightbox/internal/testutil"
)

// The lean init of each lightbox build is written once per store
// (.init-<sum>); gc removes those of other builds that no live process
// can launch from any more. These tests make "another build's" program
// by renaming this build's after a launcher installed it: the running
// inits and the launcher's hold follow the file, not its name.

// longUnused dates p's use (atime, mtime) back past initbin's grace.
func longUnused(t *testing.T, p string) {
	t.Helper()
	old := time.Now().Add(-8 * 24 * time.Hour)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
}

// ownInit is the path of this build's installed program in e's store.
func ownInit(e *env) string {
	return filepath.Join(e.root, ".init-"+initbin.Sum()[:32])
}

// asOtherBuild renames this build's program in e's store to the name
// another build's would have, unused for long, and returns its new path.
func asOtherBuild(t *testing.T, e *env) string {
	t.Helper()
	other := filepath.Join(e.root, ".init-"+strings.Repeat("5a", 16))
	if err := os.Rename(ownInit(e), other); err != nil {
		t.Fatal(err)
	}
	longUnused(t, other)
	return other
}

// TestCollectOtherBuildsInit: gc removes another build's init program
// that nobody holds, says so, and keeps this build's.
func TestCollectOtherBuildsInit(t *testing.T) {
	testutil.Need(t, initbin.Available(), "a build with the lean init (make generate)")
	e := newEnv(t)
	if err := os.MkdirAll(e.root, 0o700); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(e.root, ".init-"+strings.Repeat("0f", 16))
	if err := os.WriteFile(other, []byte("\x7fELF another build's init"), 0o555); err != nil {
		t.Fatal(err)
	}
	longUnused(t, other)
	own, err := initbin.Install(e.root) // as a launch of this build did
	if err != nil {
		t.Fatal(err)
	}
	longUnused(t, own)
	c, err := e.m.Collect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Base(other)}; !slices.Equal(c.Inits, want) {
		t.Errorf("Collect().Inits = %q, want %q", c.Inits, want)
	}
	if _, err := os.Lstat(other); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after gc, another build's init: %v; want it removed", err)
	}
	if _, err := os.Lstat(own); err != nil {
		t.Errorf("after gc, this build's init: %v; want it kept", err)
	}
	sb := e.launch(t, e.spec("after-init-gc"))
	if out := sh(t, sb, "echo ok"); out != "ok\n" {
		t.Errorf("a launch after gc: %q", out)
	}
}

// TestCollectKeepsHeldInit: a program that another live process installed
// (and so may launch from at any time) survives gc, however long unused;
// once that process is gone, gc removes it.
func TestCollectKeepsHeldInit(t *testing.T) {
	testutil.Need(t, initbin.Available(), "a build with the lean init (make generate)")
	e := newEnv(t)
	cmd := e.helper(t, "hold", "other-build")
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill() // the test failed before it did
			_ = cmd.Wait()
		}
	})
	sb, err := e.m.Attach(t.Context(), "other-build")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // t.Context is done by now
		defer cancel()
		if err := sb.Destroy(ctx); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	})
	other := asOtherBuild(t, e)
	c, err := e.m.Collect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Inits) != 0 {
		t.Errorf("Collect().Inits = %q while the process that installed it runs, want none", c.Inits)
	}
	if _, err := os.Lstat(other); err != nil {
		t.Fatalf("the init of a live launcher after gc: %v; want it kept", err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // killed above
	killed = true
	// Its lock went with it (the sandbox it launched ends too, on its
	// own: nothing here waits for that).
	c, err = e.m.Collect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Base(other)}; !slices.Equal(c.Inits, want) {
		t.Errorf("Collect().Inits after its launcher died = %q, want %q", c.Inits, want)
	}
	if _, err := os.Lstat(other); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after gc, the dead launcher's init: %v; want it removed", err)
	}
}

// TestInitHandoverAfterInitGC is the attack on gc's rule that running
// sandboxes never need their program's file: a sandbox whose program gc
// removed still hands over (re-executes its init) and serves exec.
func TestInitHandoverAfterInitGC(t *testing.T) {
	testutil.Need(t, initbin.Available(), "a build with the lean init (make generate)")
	e := newEnv(t)
	mp, err := idmap.Detect()
	if err != nil {
		t.Fatal(err)
	}
	// The launcher of another build: its own Manager, closed (the
	// process that launched the sandbox stopped launching) while the
	// sandbox runs on.
	m2, err := Open(Options{Root: e.root, Mapping: mp, StopGrace: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sb, err := m2.Launch(t.Context(), e.spec("init-gone"))
	if err != nil {
		_ = m2.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // t.Context is done by now
		defer cancel()
		if err := sb.Destroy(ctx); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	})
	pid := sb.Pid()
	waitGen(t, pid, 1)
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}
	other := asOtherBuild(t, e)
	c, err := e.m.Collect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Base(other)}; !slices.Equal(c.Inits, want) {
		t.Fatalf("Collect().Inits = %q, want %q", c.Inits, want)
	}
	if _, err := os.Lstat(other); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the sandbox's init program after gc: %v; want it removed", err)
	}
	// Served after the removal: the next handover starts after it.
	if got := sh(t, sb, "echo before"); got != "before\n" {
		t.Fatalf("exec after gc: %q", got)
	}
	waitGen(t, pid, 2)
	if got := sh(t, sb, "echo after; hostname"); got != "after\ninit-gone\n" {
		t.Errorf("exec after a handover from a removed program: %q", got)
	}
	if _, _, code := run(t, sb, "/bin/sh", "-c", "exit 3"); code != 3 {
		t.Errorf("exit status after a handover from a removed program: %d, want 3", code)
	}
}
