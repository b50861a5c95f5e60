//go:build linux

package runtime

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/reexec"
	"github.com/beamhop/lightbox/internal/rmtree"
	"github.com/beamhop/lightbox/internal/testutil"
)

func TestMain(m *testing.M) {
	if h := os.Getenv("LIGHTBOX_RUNTIME_HELPER"); h != "" && reexec.Role() == "" {
		a := strings.Split(h, "|")
		helperMain(a[0], a[1], a[2], a[3])
	}
	switch role := reexec.Role(); {
	case role == rmtree.Role:
		rmtree.Main()
		os.Exit(0)
	case Roles()[role] != nil:
		Roles()[role]()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// env is a test's sandbox root and rootfs.
type env struct {
	m      *Manager
	root   string
	rootfs string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := newEnvB(t)
	t.Cleanup(func() { checkNoMounts(t, e.root) })
	return e
}

// newRangeEnv is newEnv for a store with a private range (root's default
// in package lightbox, so real root only): the slot fromEnd slots from
// the end of the region, which the registry hands out last.
func newRangeEnv(t *testing.T, fromEnd uint32) *env {
	t.Helper()
	testutil.RootOnly(t)
	root := filepath.Join(t.TempDir(), "sandboxes")
	m, err := Open(Options{Root: root, Mapping: idmap.RangeMapping(idmap.RegionFirst + (idmap.RegionSlots-fromEnd)*idmap.RangeSize), StopGrace: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	t.Cleanup(func() { checkNoMounts(t, root) })
	return &env{m: m, root: root, rootfs: testutil.BusyboxRootfs(t)}
}

func newEnvB(t testing.TB) *env {
	t.Helper()
	mp, err := idmap.Detect()
	if err != nil {
		t.Fatal(err)
	}
	rootfs := testutil.BusyboxRootfs(t)
	root := filepath.Join(t.TempDir(), "sandboxes")
	m, err := Open(Options{Root: root, Mapping: mp, StopGrace: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// Before t.TempDir's removal: Close waits for the removals Destroy
	// left running in the background (a rootless store's files owned by
	// subordinate ids can only be removed inside its user namespace).
	t.Cleanup(func() {
		if t.Failed() {
			// A test that failed midway may leave what a crash leaves
			// (a helper process killed, a .rm- entry): its cgroups would
			// outlive the store's TempDir, on the host. Best effort: the
			// test has failed already.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_ = m.GC(ctx)
			cancel()
		}
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &env{m: m, root: root, rootfs: rootfs}
}

func (e *env) spec(name string) Spec {
	return Spec{Name: name, Layers: []string{e.rootfs}, Network: NetworkNone, Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}}
}

// launch launches spec and destroys the sandbox at the end of the test.
func (e *env) launch(t *testing.T, spec Spec) *Sandbox {
	t.Helper()
	return e.launchCtx(t, t.Context(), spec)
}

func (e *env) launchCtx(t *testing.T, ctx context.Context, spec Spec) *Sandbox {
	t.Helper()
	sb, err := e.m.Launch(ctx, spec)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := sb.Destroy(ctx); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	})
	return sb
}

// run runs a command and returns its stdout, stderr and exit code.
func run(t *testing.T, sb *Sandbox, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	c := sb.CommandContext(t.Context(), args[0], args[1:]...)
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	var ee *ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %q: %v", args, err)
	}
	return out.String(), errb.String(), ExitCode(err)
}

// sh runs a shell script that must succeed and returns its stdout.
func sh(t *testing.T, sb *Sandbox, script string) string {
	t.Helper()
	out, errs, code := run(t, sb, "/bin/sh", "-c", script)
	if code != 0 {
		t.Fatalf("sh -c %q: exit %d: %s", script, code, errs)
	}
	return out
}

// checkNoMounts fails when the host's mount table has a mount under dir.
func checkNoMounts(t testing.TB, dir string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, dir) {
			t.Errorf("host mount left behind: %s", line)
		}
	}
}
