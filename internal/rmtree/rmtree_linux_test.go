package rmtree

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/reexec"
	"github.com/beamhop/lightbox/internal/testutil"
	"golang.org/x/sys/unix"
)

const rolePopulate = "rmtree-test-populate"

func TestMain(m *testing.M) {
	switch reexec.Role() {
	case Role:
		Main()
	case rolePopulate:
		if err := reexec.WaitMapped(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := populate(os.Args[1], 1000); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// populate builds a tree under dir whose files are owned by uid (and root)
// and that the caller cannot traverse or change without privilege: a
// read-only directory owned by uid holding files, a mode-000 directory and
// a file owned by uid in a directory owned by uid.
func populate(dir string, uid int) error {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "home/user/.cache/deep"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "home/user/.cache/deep/f"), []byte("x"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "home/user/file"), []byte("x"), 0o600))
	must(os.MkdirAll(filepath.Join(dir, "work/work"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "work/work/f"), []byte("x"), 0o600))
	must(os.Chmod(filepath.Join(dir, "work/work"), 0))
	for _, p := range []string{"home/user/.cache/deep/f", "home/user/.cache/deep", "home/user/.cache", "home/user/file", "home/user"} {
		if err := os.Lchown(filepath.Join(dir, p), uid, uid); err != nil {
			return err
		}
	}
	must(os.Chmod(filepath.Join(dir, "home/user/.cache/deep"), 0o500))
	must(os.Chmod(filepath.Join(dir, "home/user"), 0o500))
	return nil
}

func TestMissingPathIsNoError(t *testing.T) {
	m, err := idmap.Detect()
	if err != nil {
		t.Fatal(err)
	}
	if err := RemoveAll(t.Context(), filepath.Join(t.TempDir(), "nope"), m); err != nil {
		t.Fatalf("RemoveAll(missing) = %v, want nil", err)
	}
}

// TestUnreadableDirs: a tree of the caller's own files with a mode-000 and
// a read-only directory (an overlay work dir, a chmod -w cache) is removed,
// and a symlink out of the tree is removed without touching its target.
func TestUnreadableDirs(t *testing.T) {
	m, err := idmap.Detect()
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	tree := filepath.Join(base, "tree")
	outside := filepath.Join(base, "outside")
	if err := os.MkdirAll(filepath.Join(outside, "keep"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(tree, "work/work/x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(tree, "ro/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "ro/sub/f"), []byte("x"), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(tree, "ro/link")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		p    string
		mode os.FileMode
	}{{"work/work/x", 0}, {"work/work", 0}, {"ro/sub", 0o500}, {"ro", 0o500}} {
		if err := os.Chmod(filepath.Join(tree, c.p), c.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveAll(t.Context(), tree, m); err != nil {
		t.Fatalf("RemoveAll = %v, want nil", err)
	}
	if _, err := os.Lstat(tree); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tree still there after RemoveAll: lstat = %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Fatalf("symlink target was touched: %v", err)
	}
}

// TestRootlessSubordinateOwners: files written inside a user namespace by
// another id of the caller's subordinate range (which the caller cannot
// delete on the host) are removed.
func TestRootlessSubordinateOwners(t *testing.T) {
	testutil.RootlessOnly(t)
	m, err := idmap.Detect()
	if err != nil {
		t.Fatal(err)
	}
	testutil.Need(t, m.Subordinate, "needs newuidmap/newgidmap and a /etc/subuid range for "+fmt.Sprint(os.Getuid()))
	tree := filepath.Join(t.TempDir(), "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	c := reexec.Command("", rolePopulate, m, 0, tree)
	c.Stderr = os.Stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(); err != nil {
		t.Fatalf("populate: %v", err)
	}
	// The tree is now out of the caller's reach on the host.
	if err := os.RemoveAll(tree); err == nil {
		t.Fatal("os.RemoveAll removed the tree: the fixture does not need a user namespace")
	}
	// From a process holding more than reexec.LargeAnon: the helper is
	// cloned by reexec's intermediate, and mapped late by newuidmap.
	testutil.Ballast(t, reexec.LargeAnon+32<<20)
	if !reexec.Large() {
		t.Fatal("reexec.Large() = false with the ballast")
	}
	if err := RemoveAll(t.Context(), tree, m); err != nil {
		t.Fatalf("RemoveAll = %v, want nil", err)
	}
	if _, err := os.Lstat(tree); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tree still there after RemoveAll: lstat = %v", err)
	}
}

// TestNamespaceRemover drives the re-exec path as root with a sub-range
// mapping (the root pass's way to cover what rootless uses).
func TestNamespaceRemover(t *testing.T) {
	testutil.RootOnly(t)
	t.Run("fork", func(t *testing.T) { namespaceRemover(t, false) })
	t.Run("via", func(t *testing.T) { namespaceRemover(t, true) })
}

// namespaceRemover is TestNamespaceRemover from a small process (its
// helper forked) or, with large, from one holding more than
// reexec.LargeAnon (its helper cloned by reexec's intermediate).
func namespaceRemover(t *testing.T, large bool) {
	if large {
		testutil.Ballast(t, reexec.LargeAnon+32<<20)
	}
	if reexec.Large() != large {
		t.Fatalf("reexec.Large() = %v, want %v", !large, large)
	}
	const base = 100000
	m := idmap.Mapping{
		UIDs: []idmap.Range{{ContainerID: 0, HostID: base, Size: 65536}},
		GIDs: []idmap.Range{{ContainerID: 0, HostID: base, Size: 65536}},
	}
	parent := t.TempDir()
	// The namespace's root must be able to reach the tree: t.TempDir's
	// parent is 0700 and owned by host root, unmapped there.
	if err := os.Chmod(filepath.Dir(parent), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(parent, base, base); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(parent, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := populate(tree, base+1000); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{tree, filepath.Join(tree, "home"), filepath.Join(tree, "work"), filepath.Join(tree, "work/work"), filepath.Join(tree, "work/work/f")} {
		if err := os.Lchown(p, base, base); err != nil {
			t.Fatal(err)
		}
	}
	if err := removeInNamespace(t.Context(), tree, m); err != nil {
		t.Fatalf("removeInNamespace = %v, want nil", err)
	}
	if _, err := os.Lstat(tree); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tree still there: lstat = %v", err)
	}

	// A file whose owner is outside the mapping cannot be removed in the
	// namespace: the error says so and unwraps to the errno.
	tree2 := filepath.Join(parent, "tree2")
	if err := os.MkdirAll(filepath.Join(tree2, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree2, "d/f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(tree2, base, base); err != nil {
		t.Fatal(err)
	}
	err := removeInNamespace(t.Context(), tree2, m) // d is owned by host root
	if !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EPERM) {
		t.Fatalf("removeInNamespace(unmapped owner) = %v, want EACCES or EPERM", err)
	}
}

// TestMountPointRefused: a mount under the tree is never descended into;
// the removal fails with EBUSY.
func TestMountPointRefused(t *testing.T) {
	testutil.RootOnly(t)
	tree := filepath.Join(t.TempDir(), "tree")
	mnt := filepath.Join(tree, "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(mnt, "precious"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := RemoveAll(t.Context(), tree, idmap.Identity())
	if !errors.Is(err, unix.EBUSY) {
		t.Fatalf("RemoveAll(tree with mount) = %v, want EBUSY", err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "precious")); err != nil {
		t.Fatalf("file on the mount was removed: %v", err)
	}
}

// TestChownToSubordinateID: a rootless caller gives a directory to an id of
// its subordinate range (what a volume's root needs when the snapshot's
// user is not root).
func TestChownToSubordinateID(t *testing.T) {
	m, err := idmap.Detect()
	if err != nil {
		t.Fatal(err)
	}
	testutil.Need(t, !m.Single(), "needs a mapping with more than one id (root, or newuidmap and a /etc/subuid range)")
	uid, _ := m.HostUID(1000)
	gid, _ := m.HostGID(1000)
	d := filepath.Join(t.TempDir(), "d")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Chown(t.Context(), d, int(uid), int(gid), m); err != nil {
		t.Fatalf("Chown = %v, want nil", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(d, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != uid || st.Gid != gid {
		t.Fatalf("owner = %d:%d, want %d:%d", st.Uid, st.Gid, uid, gid)
	}
}

// TestEmptyMountPointRefused: an empty directory is removed with one
// rmdir, but never one that is a mount point, even of an empty mount.
func TestEmptyMountPointRefused(t *testing.T) {
	testutil.RootOnly(t)
	tree := filepath.Join(t.TempDir(), "tree")
	mnt := filepath.Join(tree, "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	err := RemoveAll(t.Context(), tree, idmap.Identity())
	if !errors.Is(err, unix.EBUSY) {
		t.Fatalf("RemoveAll(tree with an empty mount) = %v, want EBUSY", err)
	}
	var st, pst unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(tree, &pst); err != nil {
		t.Fatal(err)
	}
	if st.Dev == pst.Dev {
		t.Fatalf("the mount on %s is gone", mnt)
	}
}

// TestKinds: empty directories (mode 000 too), a file, a symlink to a
// directory and a fifo go; so does a path that is a file itself.
func TestKinds(t *testing.T) {
	m, err := idmap.Detect()
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	tree := filepath.Join(base, "tree")
	for _, d := range []string{"rootfs", "upper", "work/work", "deep/a/b"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(tree, "work/work"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "deep/a/f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(base, filepath.Join(tree, "deep/link")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(tree, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{tree, file} {
		if err := RemoveAll(t.Context(), p, m); err != nil {
			t.Fatalf("RemoveAll(%s) = %v, want nil", p, err)
		}
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after RemoveAll: lstat = %v", p, err)
		}
	}
	if ents, err := os.ReadDir(base); err != nil || len(ents) != 0 {
		t.Errorf("left in %s: %v, %v", base, ents, err)
	}
}

// TestRemoveSmall: a tree within the limit goes whole; one past it is
// left (partly) in place with ErrTooLarge, and RemoveAll finishes it.
func TestRemoveSmall(t *testing.T) {
	m, err := idmap.Detect()
	if err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(t.TempDir(), "tree")
	if err := os.MkdirAll(filepath.Join(tree, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(tree, "d", fmt.Sprint(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// 22 entries: tree, d and its 20 files.
	if err := RemoveSmall(t.Context(), tree, m, 21); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("RemoveSmall(22 entries, 21) = %v, want ErrTooLarge", err)
	}
	if _, err := os.Lstat(tree); err != nil {
		t.Fatalf("a tree past the limit is gone: %v", err)
	}
	if err := RemoveAll(t.Context(), tree, m); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(tree, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(tree, "d", fmt.Sprint(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveSmall(t.Context(), tree, m, 22); err != nil {
		t.Fatalf("RemoveSmall(22 entries, 22) = %v, want nil", err)
	}
	if _, err := os.Lstat(tree); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tree still there: lstat = %v", err)
	}
}

// TestTwoRemovers: a tree removed by two walks at once (two processes
// collecting one .rm- entry) is gone and neither reports an error, in
// particular not the walk that meets a directory the other removed after
// it opened it (getdents64 says ENOENT then).
func TestTwoRemovers(t *testing.T) {
	t.Run("directory removed under the walk", func(t *testing.T) {
		d := filepath.Join(t.TempDir(), "d")
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		fd, err := openDir(unix.AT_FDCWD, d)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.Rmdir(d); err != nil {
			t.Fatal(err)
		}
		w := &walk{left: -1}
		if err := w.removeEntries(&dir{fd: fd}, d, nil); err != nil {
			t.Errorf("removeEntries of a directory removed meanwhile = %v, want nil", err)
		}
	})
	t.Run("race", func(t *testing.T) {
		m, err := idmap.Detect()
		if err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			tree := filepath.Join(t.TempDir(), "tree")
			for j := range 8 {
				sub := filepath.Join(tree, fmt.Sprint(j), "a", "b")
				if err := os.MkdirAll(sub, 0o755); err != nil {
					t.Fatal(err)
				}
				for k := range 8 {
					if err := os.WriteFile(filepath.Join(sub, fmt.Sprint(k)), nil, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			errs := make(chan error, 2)
			for range 2 {
				go func() { errs <- RemoveAll(t.Context(), tree, m) }()
			}
			for range 2 {
				if err := <-errs; err != nil {
					t.Fatalf("round %d: a remover of a tree another removes at once: %v", i, err)
				}
			}
			if _, err := os.Lstat(tree); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("round %d: tree still there: lstat = %v", i, err)
			}
		}
	})
}

// TestWithoutOpenat2: the walk's other way to stay on its mount (openat
// and a statx of the mount id, where openat2 is missing) refuses a mount
// point and still removes unreadable directories.
func TestWithoutOpenat2(t *testing.T) {
	noOpenat2.Store(true)
	t.Cleanup(func() { noOpenat2.Store(false) })
	t.Run("UnreadableDirs", TestUnreadableDirs)
	t.Run("Kinds", TestKinds)
	if os.Geteuid() == 0 {
		t.Run("MountPointRefused", TestMountPointRefused)
		t.Run("EmptyMountPointRefused", TestEmptyMountPointRefused)
	}
}

// TestParseDirentsManyEntries: a directory of more entries than one
// getdents64 read returns is removed whole (the walk reads on after
// removing the first batch).
func TestParseDirentsManyEntries(t *testing.T) {
	m, err := idmap.Detect()
	if err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(t.TempDir(), "tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 2000 { // ~2000 × 40-byte records: several 8 KiB reads
		if err := os.WriteFile(filepath.Join(tree, fmt.Sprintf("entry-with-a-longish-name-%04d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveAll(t.Context(), tree, m); err != nil {
		t.Fatalf("RemoveAll = %v, want nil", err)
	}
	if _, err := os.Lstat(tree); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tree still there: lstat = %v", err)
	}
}
