package lightbox

import "golang.org/x/sys/unix"

// hostMemoryMiB is the host's RAM in MiB (sysinfo(2)); false when it
// cannot be read.
func hostMemoryMiB() (int64, bool) {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0, false
	}
	return int64(si.Totalram) * int64(si.Unit) >> 20, true
}
