package nsinit

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// loadFilter installs a ready-made seccomp BPF program on the calling
// thread (no TSYNC: only the thread that forks the OCI process).
func loadFilter(prog []unix.SockFilter) error {
	fp := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fp))); errno != 0 {
		return fmt.Errorf("seccomp(SECCOMP_SET_MODE_FILTER): %w", errno)
	}
	return nil
}
