package nsinit

import (
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/beamhop/lightbox/internal/sys"
	"golang.org/x/sys/unix"
)

// The sandbox's /etc/hostname, /etc/hosts and /etc/resolv.conf (Config.Etc)
// live on a small tmpfs of the init's own, never on the host's disk: each
// launch used to write three files (and their directory) into the store
// and each teardown to delete them, and on an ext4 without a journal every
// inode freed in the last ~30 s slows the next allocation down
// (bench/NOTES.md). The tmpfs is attached beneath the root while the root
// is built (on RootDir, before the overlay is mounted over it), so that
// single files of it can be cloned onto their targets on any kernel; once
// pivot_root detached the host's tree only the init's descriptor reaches
// its directory, and the sandbox sees each file through its bind alone.

// etcTmpfs are the tmpfs's options: a cap on what a sandbox can write into
// its own /etc/hosts (charged to its memory cgroup) — 1 MiB above twice
// what the files hold (a host's /etc/hosts can be a long block list) —
// and on its entries.
func etcTmpfs(files []File) []sys.Param {
	size := int64(1 << 20)
	for _, f := range files {
		size += 2 * int64(len(f.Data))
	}
	return []sys.Param{{Key: "mode", Value: "755"}, {Key: "size", Value: strconv.FormatInt(size, 10)}, {Key: "nr_inodes", Value: "16"}}
}

// checkEtc checks files: clean absolute targets with distinct base names.
func checkEtc(files []File) error {
	seen := map[string]bool{}
	for _, f := range files {
		b := path.Base(f.Target)
		if !path.IsAbs(f.Target) || path.Clean(f.Target) != f.Target || f.Target == "/" {
			return fmt.Errorf("etc file %q: not a clean absolute path", f.Target)
		}
		if seen[b] {
			return fmt.Errorf("etc file %q: another file has the name %s", f.Target, b)
		}
		seen[b] = true
	}
	return nil
}

// mountEtc makes the tmpfs of files, attached on target (the root's
// mount point, before the root is mounted over it), and writes the files
// on it. It returns the tmpfs's root, for bindEtc to close, and each
// file, open, which the init keeps to replace its content (OpEtc): no
// directory, so nothing a request could name but these files.
func mountEtc(files []File, target string) (dir *os.File, open []*os.File, _ error) {
	if len(files) == 0 {
		return nil, nil, nil
	}
	if err := checkEtc(files); err != nil {
		return nil, nil, err
	}
	mfd, err := sys.FSMount("tmpfs", etcTmpfs(files), nosuidNodevNoexec, "etc files")
	if err != nil {
		return nil, nil, err
	}
	dir = os.NewFile(uintptr(mfd), "etc files")
	fail := func(err error) (*os.File, []*os.File, error) {
		// The setup fails: the init exits, and the tmpfs with it.
		_ = dir.Close()
		for _, f := range open {
			_ = f.Close()
		}
		return nil, nil, err
	}
	t, err := sys.Openat(unix.AT_FDCWD, target, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return fail(err)
	}
	defer unix.Close(t)
	if err := sys.MoveMount(mfd, t, target); err != nil {
		return fail(err)
	}
	for _, f := range files {
		fd, err := sys.Openat(mfd, path.Base(f.Target), unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, 0o644)
		if err != nil {
			return fail(fmt.Errorf("etc file %s: %w", f.Target, err))
		}
		w := os.NewFile(uintptr(fd), f.Target)
		open = append(open, w)
		if _, err := w.Write(f.Data); err != nil {
			return fail(fmt.Errorf("etc file %s: %w", f.Target, err))
		}
	}
	return dir, open, nil
}

// bindEtc binds each file of the tmpfs dir over its target inside root,
// creating a missing target as an empty file, and closes dir. mounts are
// the user's mounts already made above the targets (splitAbove): a
// target in one of them is found there by mountPointIn, which follows no
// symlink; any other is found in the image's tree as every mount point
// is (ensure).
func bindEtc(root int, dir *os.File, files []File, mounts []Mount) error {
	defer func() { _ = dir.Close() }() // the tmpfs's root, only read: its files stay mounted and open
	for _, f := range files {
		b, err := sys.OpenTree(int(dir.Fd()), path.Base(f.Target), unix.OPEN_TREE_CLONE)
		if err != nil {
			return fmt.Errorf("mount %s: %w", f.Target, err)
		}
		if err := placeEtc(root, b, f.Target, mounts); err != nil {
			return fmt.Errorf("mount %s: %w", f.Target, err)
		}
	}
	return nil
}

// placeEtc moves the detached bind of an etc file, mfd, onto target
// inside root and closes mfd: in the deepest of mounts (the user's,
// made) above target when there is one (attachIn), else in the image's
// tree.
func placeEtc(root, mfd int, target string, mounts []Mount) error {
	var in *Mount
	for i := range mounts {
		if isBelow(target, mounts[i].Target) && (in == nil || len(mounts[i].Target) > len(in.Target)) {
			in = &mounts[i]
		}
	}
	if in == nil {
		return attach(root, mfd, target, false)
	}
	return attachIn(root, mfd, target, *in)
}

// attachIn moves the detached mount mfd onto target, a file in the
// user's mount m, and closes mfd (see mountPointIn).
func attachIn(root, mfd int, target string, m Mount) error {
	defer unix.Close(mfd)
	t, err := mountPointIn(root, target, m)
	if err != nil {
		return err
	}
	defer unix.Close(t)
	return sys.MoveMount(mfd, t, target)
}

// mountPointIn opens the mount point for an etc file at target inside
// the user's mount m (a volume or a host directory, which another
// sandbox or the host may fill as it likes): a regular file, or one it
// creates empty when the mount is writable, as docker's runc does. It
// follows no symlink there: a symlink (or anything else but a file) at
// target is an error, never the way to another file the sandbox's
// would be bound over, nor one made; and a read-only mount is not
// written.
func mountPointIn(root int, target string, m Mount) (int, error) {
	top, err := sys.OpenInRoot(root, m.Target, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(top)
	rel := strings.TrimPrefix(strings.TrimPrefix(target, m.Target), "/")
	dir := top
	if d := path.Dir(rel); d != "." {
		if dir, err = sys.OpenBeneath(top, d, unix.O_PATH|unix.O_DIRECTORY); err != nil {
			return -1, fmt.Errorf("in the mount at %s: %w", m.Target, err)
		}
		defer unix.Close(dir)
	}
	base := path.Base(rel)
	fd, err := sys.Openat(dir, base, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if errors.Is(err, unix.ENOENT) {
		fd, err = sys.Openat(dir, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW, 0o644)
		if errors.Is(err, unix.EROFS) {
			return -1, fmt.Errorf("the read-only mount at %s has no %s to mount the sandbox's over (put one there, or mount it writable): %w", m.Target, target, err)
		}
	}
	if err != nil {
		return -1, fmt.Errorf("in the mount at %s: %w", m.Target, err)
	}
	st, err := sys.Fstat(fd, target)
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		what := "not a regular file"
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			what = "a symlink, not followed"
		}
		return -1, fmt.Errorf("the mount at %s holds %s there: %s", m.Target, target, what)
	}
	return fd, nil
}

// rewriteEtc replaces the content of files, each one of the launch's
// (known, whose open files are open).
func rewriteEtc(known []File, open []*os.File, files []File) error {
	for _, f := range files {
		i := slices.IndexFunc(known, func(k File) bool { return k.Target == f.Target })
		if i < 0 || i >= len(open) {
			return fmt.Errorf("etc file %q: not one of the sandbox's", f.Target)
		}
		if err := open[i].Truncate(0); err != nil {
			return fmt.Errorf("etc file %s: %w", f.Target, err)
		}
		if _, err := open[i].WriteAt(f.Data, 0); err != nil {
			return fmt.Errorf("etc file %s: %w", f.Target, err)
		}
	}
	return nil
}
