package nsinit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
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
	if err := newCopier().tree(src, mfd, dst); err != nil {
		return fmt.Errorf("tmpcopyup: %w", err)
	}
	if attrs&unix.MOUNT_ATTR_RDONLY != 0 {
		return sys.SetAttr(mfd, unix.MOUNT_ATTR_RDONLY, 0, false, dst)
	}
	return nil
}

// copier copies trees (see tree) with one buffer for all their files:
// the init sets up with GOGC=off, where io.Copy's buffer per file is
// garbage never collected (a volume filled with 3000 files: ~96 MiB).
type copier struct {
	buf []byte
}

func newCopier() *copier { return &copier{buf: make([]byte, 64<<10)} }

// tree copies the entries of directory src into directory dst (name is
// src's path, for errors): directories, regular files, symlinks and
// FIFOs, with their owner, mode and times. Sockets and device nodes are
// left out, as a tmpfs over them would not hold the ones in use.
func (c *copier) tree(src, dst int, name string) error {
	names, err := readNames(src, name, -1)
	if err != nil {
		return err
	}
	_, err = c.names(src, dst, name, names)
	return err
}

// readNames reads up to n (n <= 0: all) names of the directory dir, an
// O_PATH descriptor (name is its path, for errors).
func readNames(dir int, name string, n int) ([]string, error) {
	d, err := sys.Openat(dir, ".", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(d), name)
	names, err := f.Readdirnames(n)
	_ = f.Close() // read-only
	if errors.Is(err, io.EOF) {
		err = nil // empty, with n > 0
	}
	return names, err
}

// names is tree for the entries names of src; it returns how many of
// them it went through (the last one, on an error, perhaps in part).
func (c *copier) names(src, dst int, name string, names []string) (int, error) {
	for i, n := range names {
		if err := c.entry(src, dst, n, name+"/"+n); err != nil {
			return i + 1, err
		}
	}
	return len(names), nil
}

// entry copies the entry n of src, whose path is p, into dst.
func (c *copier) entry(src, dst int, n, p string) error {
	var err error
	{
		var st unix.Stat_t
		if err := unix.Fstatat(src, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "stat", Path: p, Err: err}
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			err = c.dir(src, dst, n, p)
		case unix.S_IFREG:
			err = c.file(src, dst, n, p)
		case unix.S_IFLNK:
			var k int
			if k, err = unix.Readlinkat(src, n, c.buf[:unix.PathMax]); err == nil {
				err = unix.Symlinkat(string(c.buf[:k]), dst, n)
			}
		case unix.S_IFIFO:
			err = unix.Mknodat(dst, n, unix.S_IFIFO|0o600, 0)
		default:
			return nil
		}
		if err != nil {
			return &os.PathError{Op: "copy", Path: p, Err: err}
		}
		if err := unix.Fchownat(dst, n, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "chown", Path: p, Err: err}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			if err := chmodNoFollow(dst, n, st.Mode&0o7777, p); err != nil {
				return err
			}
		}
		ts := []unix.Timespec{st.Atim, st.Mtim}
		if err := unix.UtimesNanoAt(dst, n, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "utimes", Path: p, Err: err}
		}
	}
	return nil
}

func (c *copier) dir(src, dst int, n, p string) error {
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
	return c.tree(s, t, p)
}

// file copies the regular file n of src into dst, through c's buffer
// (copy_file_range first, where both are on one filesystem).
func (c *copier) file(src, dst int, n, p string) error {
	in, err := sys.Openat(src, n, unix.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer unix.Close(in) // read-only
	out, err := sys.Openat(dst, n, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if err := c.copyFD(in, out); err != nil {
		unix.Close(out) // the copy failed already: that is the error
		return err
	}
	return unix.Close(out)
}

func (c *copier) copyFD(in, out int) error {
	for {
		k, err := unix.CopyFileRange(in, nil, out, nil, 1<<30, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			break // another filesystem (EXDEV), or none to offer: read and write
		}
		if k == 0 {
			return nil
		}
	}
	for {
		k, err := unix.Read(in, c.buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if k == 0 {
			return nil
		}
		for b := c.buf[:k]; len(b) > 0; {
			w, err := unix.Write(out, b)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return err
			}
			b = b[w:]
		}
	}
}

// chmodNoFollow sets the mode of dst's entry n, which this copy made, and
// never of what a symlink there points to: a volume being filled is
// shared, and another sandbox could have put one in n's place (fchmodat
// follows symlinks; the init's "/" is still the host's here).
func chmodNoFollow(dst int, n string, mode uint32, p string) error {
	fd, err := sys.Openat(dst, n, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return &os.PathError{Op: "chmod", Path: p, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "chmod", Path: p, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return &os.PathError{Op: "chmod", Path: p, Err: unix.ELOOP}
	}
	if err := unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), mode); err != nil {
		return &os.PathError{Op: "chmod", Path: p, Err: err}
	}
	return nil
}

// fillStaging is the directory, in a volume's root, that a fill copies
// into before it moves the copy into place (see fillVolume). No sandbox
// ever sees it but one that mounts the volume while it is being filled,
// or after a fill was killed, without filling it (nocopy, read-only).
const fillStaging = ".lightbox-filling"

// fillVolume fills the volume vol (a detached mount, or its root opened)
// with what root has at dst, before the volume covers it (docker's and
// podman's copy-up of a new volume; Mount.Fill): when dst is a directory
// in root with entries and the volume is empty. It reports whether it
// copied anything. The copy is copyTree's: by descriptor, no symlink
// followed, owners, modes and times kept.
//
// The copy is made in a directory of the volume's own, fillStaging,
// written to the disk (syncfs), then its entries are renamed into the
// volume's root, and the staging
// directory removed: a copy cut short is never mistaken for the
// volume's content. The caller holds the volume's fill lock throughout
// (Mount.FillLock), so the staging directory in a volume whose fill
// this is means that an earlier fill was killed (its launcher and init
// with it, a machine gone down) while it copied or moved its entries
// in: everything in the volume is then the dead fill's (the volume is
// still unfilled, and only a sandbox that mounted it without filling it
// could have added to it since), and it is removed, by descriptor, and
// the volume filled again. A copy that fails (the volume's quota)
// removes the staging directory, so that the volume is left empty and
// unfilled, and says why. Once the volume is filled, and before
// fillVolume returns, it calls filled (which records the fill where a
// later launch finds it: Mount.FillRecord).
func fillVolume(root int, dst string, vol int, filled func()) (bool, error) {
	src, err := sys.OpenInRoot(root, dst, unix.O_PATH|unix.O_DIRECTORY, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return false, nil // nothing (or no directory) there to copy
	}
	if err != nil {
		return false, fmt.Errorf("fill volume from the image: %w", err)
	}
	defer unix.Close(src)
	in, err := readNames(vol, "the volume", -1)
	if err != nil {
		return false, fmt.Errorf("fill volume from the image: %w", err)
	}
	if slices.Contains(in, fillStaging) {
		for _, n := range in {
			if err := removeAt(vol, n); err != nil && !errors.Is(err, unix.ENOENT) {
				return false, fmt.Errorf("fill volume from the image: remove what a fill that was killed left: %s: %w", n, err)
			}
		}
	} else if len(in) > 0 {
		return false, nil // not empty: the volume's content stays as it is
	}
	names, err := readNames(src, dst, -1)
	if err != nil {
		return false, fmt.Errorf("fill volume from the image: %w", err)
	}
	if len(names) == 0 {
		return false, nil
	}
	if slices.Contains(names, fillStaging) {
		return false, fmt.Errorf("fill volume from the image's %s: it holds %s, the name lightbox fills a volume through (mount the volume with nocopy not to fill it)", dst, fillStaging)
	}
	if err := unix.Mkdirat(vol, fillStaging, 0o700); err != nil {
		return false, fmt.Errorf("fill volume from the image: %w", &os.PathError{Op: "mkdir", Path: fillStaging, Err: err})
	}
	stage, err := sys.Openat(vol, fillStaging, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false, fmt.Errorf("fill volume from the image: %w", &os.PathError{Op: "open", Path: fillStaging, Err: err})
	}
	defer unix.Close(stage)
	if _, err := newCopier().names(src, stage, dst, names); err != nil {
		why := ""
		if errors.Is(err, unix.EDQUOT) || errors.Is(err, unix.ENOSPC) {
			why = " (the volume's quota or filesystem is smaller than what the image has there; mount the volume with nocopy not to fill it)"
		}
		err = fmt.Errorf("fill volume from the image's %s: %w%s", dst, err, why)
		if rerr := removeAt(vol, fillStaging); rerr != nil {
			return false, fmt.Errorf("%w; and removing what it copied: %w", err, rerr)
		}
		return false, err
	}
	if err := syncStaged(stage); err != nil {
		err = fmt.Errorf("fill volume from the image's %s: %w", dst, err)
		if rerr := removeAt(vol, fillStaging); rerr != nil {
			return false, fmt.Errorf("%w; and removing what it copied: %w", err, rerr)
		}
		return false, err
	}
	for _, n := range names {
		if err := unix.Renameat2(stage, n, vol, n, unix.RENAME_NOREPLACE); err != nil {
			// The staging directory stays: the next fill redoes this one.
			return false, fmt.Errorf("fill volume from the image's %s: %w", dst, &os.LinkError{Op: "rename", Old: fillStaging + "/" + n, New: n, Err: err})
		}
	}
	if err := unix.Unlinkat(vol, fillStaging, unix.AT_REMOVEDIR); err != nil {
		return false, fmt.Errorf("fill volume from the image's %s: %w", dst, &os.PathError{Op: "remove", Path: fillStaging, Err: err})
	}
	filled()
	return true, nil
}

// syncStaged writes the copy in the staging directory stage (O_PATH) to
// the disk before it is moved into place: a volume with entries is never
// filled again, and its fill record goes to the disk with the launcher's
// next fsync, so a power cut before the kernel's own writeback would
// leave the image's files there empty for good. One syncfs of the
// volume's filesystem, once per volume.
func syncStaged(stage int) error {
	fd, err := sys.Openat(stage, ".", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return sys.Syncfs(fd)
}

// removeAt removes dir's entry n and, for a directory, all below it, by
// descriptor: no symlink is followed.
func removeAt(dir int, n string) error {
	err := unix.Unlinkat(dir, n, 0)
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	sub, err := sys.Openat(dir, n, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	names, err := readNames(sub, n, -1)
	for _, c := range names {
		if err == nil {
			err = removeAt(sub, c)
		}
	}
	unix.Close(sub)
	if err != nil {
		return err
	}
	return unix.Unlinkat(dir, n, unix.AT_REMOVEDIR)
}
