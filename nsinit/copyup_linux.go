package nsinit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/beamhop/lightbox/internal/sys"
	"golang.org/x/sys/unix"
)

// tmpCopyUp fills the new tmpfs mfd with what the root has at dst, before
// the tmpfs covers it (runc's tmpcopyup: podman's --tmpfs and --read-only
// mounts). The tree is the image's, so it is walked by descriptor and no
// symlink in it is followed. The tmpfs's root takes the directory's
// owner and mode; attrs' MOUNT_ATTR_RDONLY is set once it is filled.
func tmpCopyUp(root int, dst string, mfd int, attrs uint64) error {
	// Resolved as attach resolves the mount point: in the root.
	src, err := sys.OpenInRoot(root, dst, unix.O_PATH|unix.O_DIRECTORY, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil // nothing to copy: the tmpfs is made where there was nothing
	}
	if err != nil {
		return fmt.Errorf("tmpcopyup: %w", err)
	}
	defer unix.Close(src)
	var st unix.Stat_t
	if err := unix.Fstat(src, &st); err != nil {
		return fmt.Errorf("tmpcopyup: %w", &os.PathError{Op: "stat", Path: dst, Err: err})
	}
	if err := unix.Fchownat(mfd, "", int(st.Uid), int(st.Gid), unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("tmpcopyup: %w", &os.PathError{Op: "chown", Path: dst, Err: err})
	}
	if err := unix.Chmod("/proc/self/fd/"+strconv.Itoa(mfd), st.Mode&0o7777); err != nil {
		return fmt.Errorf("tmpcopyup: %w", &os.PathError{Op: "chmod", Path: dst, Err: err})
	}
	if err := copyTree(src, mfd, dst); err != nil {
		return fmt.Errorf("tmpcopyup: %w", err)
	}
	if attrs&unix.MOUNT_ATTR_RDONLY != 0 {
		return sys.SetAttr(mfd, unix.MOUNT_ATTR_RDONLY, 0, false, dst)
	}
	return nil
}

// copyTree copies the entries of directory src into directory dst (name
// is src's path, for errors): directories, regular files, symlinks and
// FIFOs, with their owner, mode and times. Sockets and device nodes are
// left out, as a tmpfs over them would not hold the ones in use.
func copyTree(src, dst int, name string) error {
	d, err := sys.Openat(src, ".", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	dir := os.NewFile(uintptr(d), name)
	names, err := dir.Readdirnames(-1)
	_ = dir.Close() // read-only
	if err != nil {
		return err
	}
	for _, n := range names {
		p := name + "/" + n
		var st unix.Stat_t
		if err := unix.Fstatat(src, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "stat", Path: p, Err: err}
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			err = copyDir(src, dst, n, p)
		case unix.S_IFREG:
			err = copyFile(src, dst, n, p)
		case unix.S_IFLNK:
			buf := make([]byte, unix.PathMax)
			var k int
			if k, err = unix.Readlinkat(src, n, buf); err == nil {
				err = unix.Symlinkat(string(buf[:k]), dst, n)
			}
		case unix.S_IFIFO:
			err = unix.Mknodat(dst, n, unix.S_IFIFO|0o600, 0)
		default:
			continue
		}
		if err != nil {
			return &os.PathError{Op: "copy", Path: p, Err: err}
		}
		if err := unix.Fchownat(dst, n, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "chown", Path: p, Err: err}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			// Not a symlink: dst is the new tmpfs, where nothing but
			// this copy made n.
			if err := unix.Fchmodat(dst, n, st.Mode&0o7777, 0); err != nil {
				return &os.PathError{Op: "chmod", Path: p, Err: err}
			}
		}
		ts := []unix.Timespec{st.Atim, st.Mtim}
		if err := unix.UtimesNanoAt(dst, n, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "utimes", Path: p, Err: err}
		}
	}
	return nil
}

func copyDir(src, dst int, n, p string) error {
	if err := unix.Mkdirat(dst, n, 0o700); err != nil {
		return err
	}
	s, err := sys.Openat(src, n, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	t, err := sys.Openat(dst, n, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer unix.Close(t)
	return copyTree(s, t, p)
}

func copyFile(src, dst int, n, p string) error {
	in, err := sys.Openat(src, n, unix.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	r := os.NewFile(uintptr(in), p)
	defer func() { _ = r.Close() }() // read-only
	out, err := sys.Openat(dst, n, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	w := os.NewFile(uintptr(out), p)
	if _, err := io.Copy(w, r); err != nil {
		_ = w.Close() // the copy failed already: that is the error
		return err
	}
	return w.Close()
}
