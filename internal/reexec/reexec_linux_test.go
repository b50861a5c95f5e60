//go:build linux

package reexec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/beamhop/lightbox/internal/idmap"
)

// The role "waitmap" waits for its id map, as every role does first.
func TestMain(m *testing.M) {
	if Role() == "waitmap" {
		if err := WaitMapped(); err != nil {
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A child mapped late whose newuidmap or newgidmap fails is killed and
// reaped by Start, which returns the helper's error: nothing is left
// behind, whichever of the two (which run at once) fails.
func TestMapLateFailureReaps(t *testing.T) {
	m := idmap.Mapping{
		UIDs:        []idmap.Range{{ContainerID: 0, HostID: uint32(os.Getuid()), Size: 1}},
		GIDs:        []idmap.Range{{ContainerID: 0, HostID: uint32(os.Getgid()), Size: 1}},
		Subordinate: true,
	}
	for _, failing := range []string{"newuidmap", "newgidmap"} {
		t.Run(failing, func(t *testing.T) {
			dir := t.TempDir()
			for _, tool := range []string{"newuidmap", "newgidmap"} {
				script := "#!/bin/sh\nexit 0\n"
				if tool == failing {
					script = "#!/bin/sh\necho refused by the test >&2\nexit 1\n"
				}
				if err := os.WriteFile(filepath.Join(dir, tool), []byte(script), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv("PATH", dir)
			c := Command("", "waitmap", m, 0)
			err := c.StartFork()
			if err == nil {
				_ = c.Wait() // released without a map: it exits on its own
				t.Fatalf("Start with a failing %s succeeded", failing)
			}
			if !strings.Contains(err.Error(), failing) || !strings.Contains(err.Error(), "refused by the test") {
				t.Errorf("Start: %v, want %s's error", err, failing)
			}
			if c.Process == nil {
				t.Fatal("no child was started: the helpers never ran")
			}
			// Reaped: no longer a child of ours (a zombie or a live
			// child would be waited for here).
			var ws unix.WaitStatus
			if pid, err := unix.Wait4(c.Process.Pid, &ws, unix.WNOHANG, nil); !errors.Is(err, unix.ECHILD) {
				t.Errorf("child %d after the failed start: wait4 = %d, %v; want ECHILD (reaped)", c.Process.Pid, pid, err)
			}
		})
	}
}
