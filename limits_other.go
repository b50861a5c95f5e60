//go:build !linux

package lightbox

// hostMemoryMiB is unknown off Linux.
func hostMemoryMiB() (int64, bool) { return 0, false }
