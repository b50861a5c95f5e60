//go:build linux

// Package integration tests whole user flows end to end, against the built
// lightbox binary (LIGHTBOX_BIN, else built once per test binary) and the
// Go API, as root and as an ordinary user.
package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/beamhop/lightbox"
	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/rmtree"
	"github.com/beamhop/lightbox/internal/testutil"
)

var binPath string

func TestMain(m *testing.M) {
	lightbox.Init()
	if os.Getenv(attackHelperEnv) != "" {
		os.Exit(attackHelper()) // inside a sandbox: attack_test.go
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	binPath = os.Getenv("LIGHTBOX_BIN")
	if binPath == "" {
		dir, err := os.MkdirTemp("", "lightbox-bin-")
		if err != nil {
			panic(err)
		}
		os.Chmod(dir, 0o755) // other users' runs (the admin test) execute it too
		defer os.RemoveAll(dir)
		binPath = filepath.Join(dir, "lightbox")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/beamhop/lightbox/cmd/lightbox")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			os.Stderr.Write(out)
			panic(err)
		}
	}
	return m.Run()
}

// result of one CLI run.
type cliResult struct {
	stdout, stderr string
	code           int
}

// lb runs the CLI against root with stdin (may be nil).
func lb(t *testing.T, root string, stdin string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, append([]string{"--root", root}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Stdin = strings.NewReader(stdin)
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("lightbox %s: %v", strings.Join(args, " "), err)
	}
	return cliResult{out.String(), errb.String(), code}
}

// lbOK runs the CLI and fails the test unless it exits 0.
func lbOK(t *testing.T, root string, args ...string) string {
	t.Helper()
	r := lb(t, root, "", args...)
	if r.code != 0 {
		t.Fatalf("lightbox %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// newStore makes a store with the busybox rootfs imported as "busybox"
// (through the CLI) and returns its root and an open Runtime.
func newStore(t *testing.T) (string, *lightbox.Runtime) {
	t.Helper()
	rootfs := testutil.BusyboxRootfs(t)
	root := filepath.Join(t.TempDir(), "store")
	t.Cleanup(func() { removeStore(t, root) })
	lbOK(t, root, "snapshot", "import", "busybox", rootfs)
	r, err := lightbox.Open(lightbox.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// What a test left in the store (an exited detached sandbox,
		// say) is removed through lightbox, cgroups and all, before the
		// store's files go: removing the files alone leaks its cgroups.
		if list, err := r.ListSandboxes(context.Background()); err == nil {
			for _, sb := range list {
				if err := r.RemoveSandbox(context.Background(), sb.Name, lightbox.RemoveSandboxOptions{Force: true, Grace: time.Second}); err != nil && !errors.Is(err, lightbox.ErrNotFound) {
					t.Errorf("remove sandbox %s left by the test: %v", sb.Name, err)
				}
			}
		}
		r.Close()
		assertNoMounts(t, root)
	})
	return root, r
}

// assertNoMounts fails when the host holds a mount under root.
func assertNoMounts(t *testing.T, root string) {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, root) && !strings.Contains(line, "/volumes/") {
			t.Errorf("mount left behind: %s", line)
		}
	}
}

// hostMountsUnder counts host mounts whose mount point is under dir.
func hostMountsUnder(t *testing.T, dir string) int {
	t.Helper()
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (bool, bool) {
		return !strings.HasPrefix(m.Mountpoint, dir), false
	})
	if err != nil {
		t.Fatal(err)
	}
	return len(mounts)
}

func testBusybox(t *testing.T) string { return testutil.BusyboxRootfs(t) }

func fmtSscan(s string, v *int) (int, error) { return fmt.Sscan(s, v) }

// removeStore deletes a test's store, including what other ids of a
// rootless range own (layers of multi-owner images), before t.TempDir's
// own cleanup, which could not.
func removeStore(t *testing.T, root string) {
	m, err := idmap.Detect()
	if err == nil {
		err = rmtree.RemoveAll(context.Background(), root, m)
	}
	if err != nil {
		t.Errorf("remove the test store: %v", err)
	}
}
