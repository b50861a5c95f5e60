//go:build linux

package ociruntime

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/beamhop/lightbox/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestDeleteReportsStateLeft: a state directory delete cannot remove (a
// mount inside it) is an error that unwraps to the errno, the directory
// stays for another delete, and that delete succeeds once it can.
func TestDeleteReportsStateLeft(t *testing.T) {
	testutil.RootOnly(t)
	r := &Runtime{Root: t.TempDir()}
	dir, err := r.dir("c1")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := writeRecord(dir, &record{ID: "c1", Bundle: t.TempDir(), Ready: true}); err != nil {
		t.Fatal(err)
	}
	busy := filepath.Join(dir, "busy")
	if err := os.Mkdir(busy, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", busy, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	mounted := true
	unmount := func() {
		if mounted {
			if err := unix.Unmount(busy, unix.MNT_DETACH); err != nil {
				t.Error(err)
			}
			mounted = false
		}
	}
	t.Cleanup(unmount)

	err = r.Delete(t.Context(), "c1", false)
	if !errors.Is(err, unix.EBUSY) {
		t.Fatalf("delete with a mount in the state dir = %v, want EBUSY", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "state.json")); err != nil {
		t.Fatalf("state after a failed delete: %v", err)
	}
	unmount()
	if err := r.Delete(t.Context(), "c1", false); err != nil {
		t.Fatalf("delete again: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state dir after delete: %v", err)
	}
}
