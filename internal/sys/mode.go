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
