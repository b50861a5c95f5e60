// Package backendtest is the conformance suite every volstore.Backend
// passes (dir, loop, xfs): limits hold with ENOSPC at the limit (within
// the filesystem's own overhead), statfs on the data directory shows the
// limit, usage is reported, Remove frees everything, volumes are
// independent of one another, and Activate is idempotent.
package backendtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/moby/sys/mountinfo"

	"golang.org/x/sys/unix"

	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/volstore"
)

// Limit is the size limit the suite asks for (16 MiB, as the check).
const Limit = 16 << 20

// Overhead is how much less than the limit a backend may let a writer
// store (its filesystem's own metadata), at most.
const Overhead = Limit / 8

// Run runs the suite against the backends newBackend returns; parent is a
// directory on the filesystem the backend needs, under which the suite
// makes its volumes (parent/<n>/data). A backend whose Create refuses a
// limit with errdefs.ErrQuotaUnsupported runs only the parts that need
// none; any other backend must enforce limits.
func Run(t *testing.T, newBackend func(t *testing.T) (volstore.Backend, string)) {
	limited := probeLimited(t, newBackend)
	t.Run("OwnerAndMode", func(t *testing.T) { testOwnerAndMode(t, newBackend, limited) })
	t.Run("ActivateIdempotent", func(t *testing.T) { testActivate(t, newBackend, limited) })
	t.Run("RemoveFreesEverything", func(t *testing.T) { testRemove(t, newBackend, limited) })
	t.Run("RemoveMissing", func(t *testing.T) {
		b, parent := newBackend(t)
		if err := b.Remove(t.Context(), filepath.Join(parent, "never", "data")); err != nil {
			t.Fatalf("Remove(never created) = %v, want nil", err)
		}
	})
	t.Run("Usage", func(t *testing.T) { testUsage(t, newBackend, limited) })
	if !limited {
		t.Run("Unlimited", func(t *testing.T) { testUnlimited(t, newBackend) })
		return
	}
	t.Run("LimitHolds", func(t *testing.T) { testLimit(t, newBackend) })
	t.Run("Independent", func(t *testing.T) { testIndependent(t, newBackend) })
	t.Run("BelowOwnLimitRefused", func(t *testing.T) {
		b, parent := newBackend(t)
		dir := newDataDir(t, parent, "tiny")
		err := b.Create(t.Context(), dir, 4096, os.Getuid(), os.Getgid(), 0o755)
		if err == nil {
			_ = b.Remove(t.Context(), dir) // the test fails on the Create that should not have worked
			t.Fatalf("Create with a 4 KiB limit = nil, want an error (below the filesystem's own overhead)")
		}
	})
}

// probeLimited reports whether the backend enforces limits.
func probeLimited(t *testing.T, newBackend func(t *testing.T) (volstore.Backend, string)) bool {
	t.Helper()
	b, parent := newBackend(t)
	dir := newDataDir(t, parent, "probe")
	err := b.Create(t.Context(), dir, Limit, os.Getuid(), os.Getgid(), 0o755)
	if errors.Is(err, errdefs.ErrQuotaUnsupported) {
		if _, serr := os.Lstat(dir); !errors.Is(serr, os.ErrNotExist) {
			t.Fatalf("Create refused the limit (%v) but left %s behind (lstat: %v)", err, dir, serr)
		}
		return false
	}
	if err != nil {
		t.Fatalf("Create(%d-byte limit) = %v", Limit, err)
	}
	if err := b.Remove(t.Context(), dir); err != nil {
		t.Fatalf("Remove = %v", err)
	}
	return true
}

func newDataDir(t *testing.T, parent, name string) string {
	t.Helper()
	d := filepath.Join(parent, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(d, "data")
}

func create(t *testing.T, b volstore.Backend, parent, name string, limited bool, uid, gid int, perm uint32) string {
	t.Helper()
	dir := newDataDir(t, parent, name)
	var limit int64
	if limited {
		limit = Limit
	}
	if err := b.Create(t.Context(), dir, limit, uid, gid, perm); err != nil {
		t.Fatalf("Create(%s, %d) = %v", dir, limit, err)
	}
	t.Cleanup(func() { _ = b.Remove(t.Context(), dir) }) // cleanup: testRemove checks Remove's result
	return dir
}

func testOwnerAndMode(t *testing.T, newBackend func(t *testing.T) (volstore.Backend, string), limited bool) {
	b, parent := newBackend(t)
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 1234, 2345
	}
	dir := create(t, b, parent, "v", limited, uid, gid, 0o2770)
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Fatalf("%s is not a directory: mode %o", dir, st.Mode)
	}
	if int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("owner of %s = %d:%d, want %d:%d", dir, st.Uid, st.Gid, uid, gid)
	}
	if st.Mode&0o7777 != 0o2770 {
		t.Errorf("mode of %s = %o, want 2770", dir, st.Mode&0o7777)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Errorf("new volume holds %d entries (first %q), want none", len(ents), ents[0].Name())
	}
}

func testActivate(t *testing.T, newBackend func(t *testing.T) (volstore.Backend, string), limited bool) {
	b, parent := newBackend(t)
	dir := create(t, b, parent, "v", limited, os.Getuid(), os.Getgid(), 0o755)
	mountsBefore := mountsAt(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := b.Activate(t.Context(), dir); err != nil {
			t.Fatalf("Activate #%d = %v", i+1, err)
		}
	}
	if got := mountsAt(t, dir); got != mountsBefore || got > 1 {
		t.Errorf("mounts on %s after two Activates = %d, want %d (at most 1)", dir, got, mountsBefore)
	}
	got, err := os.ReadFile(filepath.Join(dir, "f"))
	if err != nil || string(got) != "kept" {
		t.Errorf("file after Activate = %q, %v; want \"kept\"", got, err)
	}
}

func testRemove(t *testing.T, newBackend func(t *testing.T) (volstore.Backend, string), limited bool) {
	b, parent := newBackend(t)
	vdir := filepath.Join(parent, "v")
	dir := newDataDir(t, parent, "v")
	before := entries(t, vdir)
	var limit int64
	if limited {
		limit = Limit
	}
	if err := b.Create(t.Context(), dir, limit, os.Getuid(), os.Getgid(), 0o755); err != nil {
		t.Fatalf("Create = %v", err)
	}
	// Contents a sandbox leaves: nested dirs, a read-only and a mode-000
	// directory (an overlay work dir), a symlink out of the volume.
	outside := filepath.Join(parent, "outside")
	if err := os.WriteFile(outside, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"a/b/c", "ro/x", "work/work"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "a/b/c/f"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(filepath.Join(dir, "ro"), 0o555)    // cannot fail on a directory the test made; Remove below must cope with either mode
	_ = os.Chmod(filepath.Join(dir, "work/work"), 0) // cannot fail on a directory the test made; Remove below must cope with either mode
	if err := b.Remove(t.Context(), dir); err != nil {
		t.Fatalf("Remove = %v", err)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir still there after Remove: lstat = %v", err)
	}
	if after := entries(t, vdir); !slices.Equal(after, before) {
		t.Errorf("volume dir after Remove holds %q, want %q (everything Create made freed)", after, before)
	}
	if n := mountsAt(t, dir); n != 0 {
		t.Errorf("%d mounts left on %s after Remove", n, dir)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("Remove followed a symlink out of the volume: %v", err)
	}
	if err := b.Remove(t.Context(), dir); err != nil {
		t.Errorf("second Remove = %v, want nil", err)
	}
}

func testUsage(t *testing.T, newBackend func(t *testing.T) (volstore.Backend, string), limited bool) {
	b, parent := newBackend(t)
	dir := create(t, b, parent, "v", limited, os.Getuid(), os.Getgid(), 0o755)
	const n = 4 << 20
	writeFile(t, filepath.Join(dir, "f"), n)
	used, known, err := b.Usage(t.Context(), dir)
	if err != nil {
		t.Fatalf("Usage = %v", err)
	}
	if !known {
		if limited {
			t.Fatalf("Usage known = false for a backend that enforces limits, want true")
		}
		return
	}
	if used < n || used > n+Overhead {
		t.Errorf("Usage = %d bytes after writing %d, want within [%d, %d]", used, n, n, n+Overhead)
	}
}

func testUnlimited(t *testing.T, newBackend func(t *testing.T) (volstore.Backend, string)) {
	b, parent := newBackend(t)
	dir := create(t, b, parent, "v", false, os.Getuid(), os.Getgid(), 0o755)
	// Past the size the limited backends are held to.
	writeFile(t, filepath.Join(dir, "f"), Limit+(1<<20))
}

func testLimit(t *testing.T, newBackend func(t *testing.T) (volstore.Backend, string)) {
	b, parent := newBackend(t)
	dir := create(t, b, parent, "v", true, os.Getuid(), os.Getgid(), 0o755)
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	// Bsize is int64 on Linux, uint32 on darwin.
	if size := int64(st.Blocks) * int64(st.Bsize); size > Limit || size < Limit-Overhead {
		t.Errorf("statfs(%s) size = %d, want within [%d, %d] (what df shows)", dir, size, Limit-Overhead, Limit)
	}
	n, err := fill(filepath.Join(dir, "big"))
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("writing past the limit: %v after %d bytes, want ENOSPC", err, n)
	}
	if n > Limit || n < Limit-Overhead {
		t.Errorf("wrote %d bytes before ENOSPC, want within [%d, %d]", n, Limit-Overhead, Limit)
	}
	used, known, err := b.Usage(t.Context(), dir)
	if err != nil || !known || used < n {
		t.Errorf("Usage when full = %d, %v, %v; want >= %d, true, nil", used, known, err, n)
	}
}

func testIndependent(t *testing.T, newBackend func(t *testing.T) (volstore.Backend, string)) {
	b, parent := newBackend(t)
	a := create(t, b, parent, "a", true, os.Getuid(), os.Getgid(), 0o755)
	c := create(t, b, parent, "c", true, os.Getuid(), os.Getgid(), 0o755)
	writeFile(t, filepath.Join(c, "keep"), 1<<20)
	if _, err := fill(filepath.Join(a, "big")); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("filling a: %v, want ENOSPC", err)
	}
	// The neighbour keeps working while a is full...
	writeFile(t, filepath.Join(c, "more"), 4<<20)
	// ...and after a is gone.
	if err := b.Remove(t.Context(), a); err != nil {
		t.Fatalf("Remove(a) = %v", err)
	}
	if fi, err := os.Stat(filepath.Join(c, "keep")); err != nil || fi.Size() != 1<<20 {
		t.Fatalf("neighbour's file after removing a: %v, %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(c, "more")); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	for w := 0; w < n; {
		k := min(len(buf), n-w)
		if _, err := f.Write(buf[:k]); err != nil {
			_ = f.Close() // the write already failed: the test stops on that
			t.Fatalf("write %s after %d bytes: %v", path, w, err)
		}
		w += k
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// fill writes to path until an error (at most twice the limit) and
// returns how many bytes reached the disk.
func fill(path string) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }() // the write error that ended the fill is what counts
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = byte(i) | 1
	}
	var n int64
	for n < 2*Limit {
		k, err := f.Write(buf)
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
	if err := f.Sync(); err != nil {
		return n, err
	}
	return n, fmt.Errorf("wrote %d bytes without an error", n)
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// mountsAt counts the mounts whose mount point is path.
func mountsAt(t *testing.T, path string) int {
	t.Helper()
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (bool, bool) { return m.Mountpoint != path, false })
	if err != nil {
		t.Fatal(err)
	}
	return len(mounts)
}
