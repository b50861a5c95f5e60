package sys

import "golang.org/x/sys/unix"

// OpenBeneath opens path relative to the directory dir without leaving it
// and without following anything on the way: no "..", no symlink (magic
// links included, so no /proc/self/fd/N) and no mount point is crossed
// (openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_XDEV). A
// symlink anywhere in path, the last component too, fails with ELOOP; a
// mount crossing with EXDEV. It is how the host opens what another user
// or a sandbox controls: describe what was opened with fstat on the
// result, never by its path again. flags gets O_CLOEXEC; mode is used
// only with O_CREAT.
func OpenBeneath(dir int, path string, flags int, mode uint32) (int, error) {
	how := &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	}
	if flags&unix.O_CREAT != 0 || flags&unix.O_TMPFILE == unix.O_TMPFILE {
		how.Mode = uint64(mode)
	}
	var fd int
	err := retry(func() (err error) { fd, err = unix.Openat2(dir, path, how); return })
	return fd, pathErr("openat2", path, err)
}
