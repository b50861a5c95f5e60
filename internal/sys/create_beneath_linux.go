package sys

import "golang.org/x/sys/unix"

// CreateBeneath is OpenBeneath for a file that may be created: flags with
// O_CREAT (and O_EXCL, to never open what someone else put there), mode
// its permission bits. It is how the host creates a file in a tree another
// user controls; give it to them with fchown on the result.
func CreateBeneath(dir int, path string, flags int, mode uint32) (int, error) {
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Mode: uint64(mode), Resolve: ResolveBeneath}
	fd, err := openat2(dir, path, how)
	return fd, pathErr("openat2", path, err)
}
