package snapshot

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/testutil"
	"golang.org/x/sys/unix"
)

// isWhiteout reports whether p is an overlayfs whiteout in either form.
func isWhiteout(p string) bool {
	fi, err := os.Lstat(p)
	if err != nil {
		return false
	}
	if fi.Mode()&os.ModeCharDevice != 0 && fi.Sys().(*syscall.Stat_t).Rdev == 0 {
		return true
	}
	_, err = unix.Lgetxattr(p, "user.overlay.whiteout", nil)
	return fi.Mode().IsRegular() && err == nil
}

func TestCommit(t *testing.T) {
	ctx := t.Context()
	s := openStore(t)
	rootfs := testutil.BusyboxRootfs(t)
	os.MkdirAll(filepath.Join(rootfs, "opt/d"), 0o755)
	os.WriteFile(filepath.Join(rootfs, "opt/d/old"), []byte("old"), 0o644)
	if _, err := s.Import(ctx, "base", rootfs, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	// An upper directory as overlayfs (userxattr) leaves it: a new file,
	// a whiteout (the xattr form, which needs no mknod) and an opaque
	// directory.
	upper := t.TempDir()
	os.WriteFile(filepath.Join(upper, "new"), []byte("new"), 0o600)
	os.MkdirAll(filepath.Join(upper, "etc"), 0o755)
	wo := filepath.Join(upper, "etc/hostname")
	os.WriteFile(wo, nil, 0o644)
	if err := unix.Lsetxattr(wo, "user.overlay.whiteout", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(upper, "opt"), 0o755)
	if err := unix.Lsetxattr(filepath.Join(upper, "opt"), "user.overlay.opaque", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(upper, "opt/only"), []byte("only"), 0o644)

	cfg := &Config{Env: []string{"PATH=/bin"}, Cmd: []string{"/bin/true"}}
	sn, err := s.Commit(ctx, "child", "base", upper, CommitOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	base, err := s.Get(ctx, "base")
	if err != nil {
		t.Fatal(err)
	}
	if len(sn.Layers) != 2 || sn.Layers[0] != base.Layers[0] {
		t.Fatalf("layers = %v, want base's %v plus one", sn.Layers, base.Layers)
	}
	top := sn.Layers[1]
	if data, err := os.ReadFile(filepath.Join(top, "new")); err != nil || string(data) != "new" {
		t.Fatalf("new = %q, %v", data, err)
	}
	if !isWhiteout(filepath.Join(top, "etc/hostname")) {
		t.Fatal("etc/hostname is not a whiteout in the committed layer")
	}
	if v := make([]byte, 4); true {
		n, err := unix.Lgetxattr(filepath.Join(top, "opt"), "user.overlay.opaque", v)
		if err != nil || string(v[:n]) != "y" {
			t.Fatalf("opt opaque = %q, %v", v[:max(n, 0)], err)
		}
	}
	if sn.Config.Cmd[0] != "/bin/true" {
		t.Fatalf("config = %+v", sn.Config)
	}
	if _, err := s.Commit(ctx, "child", "base", upper, CommitOptions{}); !errors.Is(err, errdefs.ErrExists) {
		t.Fatalf("second Commit = %v, want ErrExists", err)
	}
	if _, err := s.Commit(ctx, "other", "nope", upper, CommitOptions{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Commit from a missing parent = %v, want ErrNotFound", err)
	}
	// The parent can go; the child keeps the shared layer.
	if err := s.Remove(ctx, "base"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(sn.Layers[0], "bin/busybox")); err != nil {
		t.Fatal(err)
	}
}
