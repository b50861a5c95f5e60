//go:build linux

package netstack

import (
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dropCaps clears every capability set of every thread of this process
// (capset(2) acts on one thread; the Go runtime has several).
func dropCaps() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	_, _, errno := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	if errno == syscall.ENOTSUP {
		// A program built with cgo cannot act on all threads: the
		// keeper keeps the capabilities of the sandbox's root, in the
		// sandbox's user namespace only, as a host id that is not
		// root, out of the workload's sight.
		return nil
	}
	if errno != 0 {
		return fmt.Errorf("capset: %w", errno)
	}
	return nil
}
