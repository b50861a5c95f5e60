package lightbox

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// direntTypesKnown reports whether every entry in a getdents64 buffer has
// a d_type other than DT_UNKNOWN.
func direntTypesKnown(buf []byte) bool {
	for len(buf) > 0 {
		d := (*unix.Dirent)(unsafe.Pointer(&buf[0]))
		if d.Reclen == 0 || int(d.Reclen) > len(buf) {
			return false
		}
		if d.Type == unix.DT_UNKNOWN {
			return false
		}
		buf = buf[d.Reclen:]
	}
	return true
}
