package sys

import "golang.org/x/sys/unix"

// ResolveBeneath are the openat2 resolve flags for a tree that someone
// else controls (an upper dir a sandbox writes, a user's store): nothing
// leads out of the directory, no symlink and no magic link is followed,
// and no mount point is crossed.
const ResolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// OpenBeneath opens path relative to the open directory dir with
// openat2(ResolveBeneath): a symlink anywhere on the way is ELOOP, except
// that O_PATH|O_NOFOLLOW opens a trailing symlink itself. flags gets
// O_CLOEXEC.
func OpenBeneath(dir int, path string, flags int) (int, error) {
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: ResolveBeneath}
	fd, err := openat2(dir, path, how)
	return fd, pathErr("openat2", path, err)
}

// Fstat is fstat(2).
func Fstat(fd int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := retry(func() error { return unix.Fstat(fd, &st) })
	return st, pathErr("fstat", name, err)
}
