package sys

import "io/fs"

// FileMode turns the permission bits of a unix mode (stat's st_mode, or a
// chmod(2) mode), setuid, setgid and sticky included, into an fs.FileMode.
// The file type bits are dropped.
func FileMode(mode uint32) fs.FileMode {
	m := fs.FileMode(mode & 0o777)
	if mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// UnixMode is FileMode's inverse: the permission bits of m, setuid,
// setgid and sticky included, as a unix mode (a tar header's, chmod's).
func UnixMode(m fs.FileMode) uint32 {
	mode := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}
