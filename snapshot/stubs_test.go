//go:build linux

package snapshot

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMountStubs: the paths a launch makes to mount on, found across
// layers as the overlay shows them: through symlinks (a dangling one's
// target is made), not where a layer has the path, and where an upper
// layer's whiteout hides a lower one's directory.
func TestMountStubs(t *testing.T) {
	s := openStore(t)
	low, up := t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"usr/bin", "var", "gone/x", "etc"} {
		must(os.MkdirAll(filepath.Join(low, d), 0o755))
	}
	must(os.Symlink("usr/bin", filepath.Join(low, "bin")))
	must(os.Symlink("/real/dir", filepath.Join(low, "dangling")))
	must(os.WriteFile(filepath.Join(low, "etc/hosts"), nil, 0o644))
	must(unix.Mknod(filepath.Join(up, "gone"), unix.S_IFCHR|0o000, 0)) // a whiteout
	got, err := s.MountStubs([]string{low, up}, []string{"/var/cache/a", "/bin/tool", "/dangling/c", "/gone/x", "/usr/bin", "/etc/hosts", "/etc/resolv.conf", "/var/cache/b"})
	must(err)
	want := []string{"/var/cache/a", "/var/cache", "/usr/bin/tool", "/real/dir/c", "/real/dir", "/real", "/gone/x", "/gone", "/etc/resolv.conf", "/var/cache/b"}
	if !slices.Equal(got, want) {
		t.Errorf("MountStubs = %q, want %q", got, want)
	}
}
