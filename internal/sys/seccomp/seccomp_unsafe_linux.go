package seccomp

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// load is prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) on the calling
// thread: the kernel copies the program, so it need not outlive the call.
func load(p []unix.SockFilter) error {
	prog := unix.SockFprog{Len: uint16(len(p)), Filter: &p[0]}
	_, _, errno := unix.Syscall(unix.SYS_PRCTL, unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return errno
	}
	return nil
}
