package sys

import (
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Fexecve is execveat(fd, "", argv, envv, AT_EMPTY_PATH): it executes the
// file fd refers to (an O_PATH descriptor will do), not a path, and returns
// only on failure. Unlike syscall.Exec it does not hold off the runtime's
// thread creation while it runs; that matters only to a set-id or
// file-capability program (golang/go#19546), which the caller must not run
// through it.
func Fexecve(fd int, argv, envv []string) error {
	argvp, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		return err
	}
	envvp, err := syscall.SlicePtrFromStrings(envv)
	if err != nil {
		return err
	}
	empty, err := syscall.BytePtrFromString("")
	if err != nil {
		return err
	}
	err = retry(func() error {
		_, _, errno := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(empty)),
			uintptr(unsafe.Pointer(&argvp[0])), uintptr(unsafe.Pointer(&envvp[0])), unix.AT_EMPTY_PATH, 0)
		if errno != 0 {
			return errno
		}
		return nil
	})
	return os.NewSyscallError("execveat", err)
}
