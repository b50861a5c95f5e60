//go:build linux

package reap

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/rmtree"
)

// aside makes a sandbox directory set aside for removal (the layout
// destroyDetached hands over) and two stand-ins for its cgroups (plain
// directories: rmdir treats them alike).
func aside(t *testing.T) (Spec, string) {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, ".rm-sb-0123456789")
	for _, d := range []string{"upper/etc", "work/work/incompat/volatile", "rootfs", "cg/child"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"lock", "state.json", "upper/etc/hosts", "work/work/incompat/volatile/dirty"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cg := filepath.Join(base, "cgroup")
	if err := os.MkdirAll(filepath.Join(cg, "workload"), 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := idmap.Detect()
	if err != nil {
		t.Fatal(err)
	}
	return Spec{Dir: dir, Mapping: m, Cgroups: []string{filepath.Join(cg, "workload"), cg}, Last: []string{"state.json", "lock"}}, cg
}

func TestRemoveSmall(t *testing.T) {
	s, cg := aside(t)
	if err := RemoveSmall(t.Context(), s, 256); err != nil {
		t.Fatalf("RemoveSmall = %v, want nil", err)
	}
	for _, p := range []string{s.Dir, cg} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: lstat = %v", p, err)
		}
	}
}

// TestRemoveSmallTooLarge: past the limit the cgroups are gone and the
// rest of the tree, its lock and state file included, stays for a reaper.
func TestRemoveSmallTooLarge(t *testing.T) {
	s, cg := aside(t)
	err := RemoveSmall(t.Context(), s, 3)
	if !errors.Is(err, rmtree.ErrTooLarge) {
		t.Fatalf("RemoveSmall(limit 3) = %v, want ErrTooLarge", err)
	}
	if _, err := os.Lstat(cg); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup still there: lstat = %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir, "state.json")); err != nil {
		t.Errorf("state file gone with the tree left: %v", err)
	}
	if err := Remove(t.Context(), s); err != nil {
		t.Fatalf("Remove (the reaper's) = %v", err)
	}
	if _, err := os.Lstat(s.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there: lstat = %v", s.Dir, err)
	}
}

// TestRemoveSmallKeepsStateWhileCgroupsStay: a cgroup that cannot be
// removed (here a directory with something in it) fails the removal, and
// the state file that names it for gc is still there.
func TestRemoveSmallKeepsStateWhileCgroupsStay(t *testing.T) {
	s, cg := aside(t)
	if err := os.WriteFile(filepath.Join(cg, "workload", "busy"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := RemoveSmall(t.Context(), s, 256); err == nil {
		t.Fatal("RemoveSmall with a cgroup it cannot remove = nil, want an error")
	}
	for _, p := range []string{filepath.Join(s.Dir, "state.json"), filepath.Join(s.Dir, "lock"), filepath.Join(cg, "workload")} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s gone: %v", p, err)
		}
	}
}
