package volstore

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

func statBlocks(fi os.FileInfo) (dev, ino uint64, blocks int64, nlink uint64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, 0, 0, false
	}
	return st.Dev, st.Ino, st.Blocks, uint64(st.Nlink), true
}

// fsSize is the size of the filesystem holding path.
func fsSize(path string) (int64, error) {
	var st unix.Statfs_t
	if err := statfs(path, &st); err != nil {
		return 0, err
	}
	return int64(st.Blocks) * st.Bsize, nil
}

func statfs(path string, st *unix.Statfs_t) error {
	for {
		err := unix.Statfs(path, st)
		if !errors.Is(err, unix.EINTR) {
			if err != nil {
				return &os.PathError{Op: "statfs", Path: path, Err: err}
			}
			return nil
		}
	}
}

// isMountRoot reports whether path is the root of a mount.
func isMountRoot(path string) (bool, error) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &st); err != nil {
		return false, &os.PathError{Op: "statx", Path: path, Err: err}
	}
	if st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return false, &os.PathError{Op: "statx", Path: path, Err: errors.ErrUnsupported}
	}
	return st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
}
