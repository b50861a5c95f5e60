package sys

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/beamhop/lightbox/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestMountOverlayLegacy mounts a root the way kernels before 6.8 get it
// (the parameters runtime sends, through mount(2)): 120 layers with
// digest-long names, over a page as paths, so named by descriptor. Real
// root only, in the host's mount namespace; the VM test in the root
// package launches a sandbox this way on Linux 6.1.
func TestMountOverlayLegacy(t *testing.T) {
	testutil.RootOnly(t)
	dir := t.TempDir()
	const n = 120
	params := []Param{{Key: "userxattr"}, {Key: "redirect_dir", Value: "nofollow"}, {Key: "metacopy", Value: "off"}}
	for i := n - 1; i >= 0; i-- {
		l := filepath.Join(dir, fmt.Sprintf("%064x", i))
		if err := os.MkdirAll(l, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(l, "top"), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		params = append(params, Param{Key: "lowerdir+", Value: l})
	}
	upper, work, target := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	for _, d := range []string{upper, work, target} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	params = append(params, Param{Key: "upperdir", Value: upper}, Param{Key: "workdir", Value: work})
	if d := OverlayData(params, func(_ int, p string) string { return p }); len(d) < OptionsMax {
		t.Fatalf("the test's options fit a page (%d bytes): it would not test short names", len(d))
	}
	wd, _ := os.Getwd()
	if err := MountOverlayLegacy(params, target); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(target, unix.MNT_DETACH)
	if now, _ := os.Getwd(); now != wd {
		t.Errorf("working directory after the mount: %q, want %q", now, wd)
	}
	if b, err := os.ReadFile(filepath.Join(target, "top")); err != nil || string(b) != fmt.Sprint(n-1) {
		t.Errorf("top = %q, %v; want the top layer's %d", b, err, n-1)
	}
	if err := os.WriteFile(filepath.Join(target, "new"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(upper, "new")); err != nil {
		t.Errorf("write did not land in the upper dir: %v", err)
	}
}
