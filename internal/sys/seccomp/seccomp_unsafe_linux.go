package seccomp

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// LoadProgram installs compiled program p on the calling thread only (no
// TSYNC): seccomp(SECCOMP_SET_MODE_FILTER). The kernel copies the
// program, so it need not outlive the call. The thread must have
// no_new_privs set, or CAP_SYS_ADMIN.
func LoadProgram(p []unix.SockFilter) error {
	if len(p) == 0 || len(p) > maxInsns {
		return fmt.Errorf("seccomp(SECCOMP_SET_MODE_FILTER): a program of %d instructions: %w", len(p), unix.EINVAL)
	}
	prog := unix.SockFprog{Len: uint16(len(p)), Filter: &p[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return fmt.Errorf("seccomp(SECCOMP_SET_MODE_FILTER): %w", errno)
	}
	return nil
}
