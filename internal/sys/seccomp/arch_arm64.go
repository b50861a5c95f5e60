//go:build linux

package seccomp

import "golang.org/x/sys/unix"

const (
	auditArch = unix.AUDIT_ARCH_AARCH64
	x32Bit    = 0
)

// archSyscall is SyscallNumber on this architecture.
func archSyscall(name string) (uint32, bool) { return syscallAArch64(name) }

var archDenied []uint32
