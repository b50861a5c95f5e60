package seccomp

//go:generate go run ./mksyscalls

// SyscallNumber returns the number of the system call name on this
// architecture (the names are the kernel's, as libseccomp and OCI
// configs spell them), or false when this architecture has no such call
// or the package has no table for it (zsyscalls_linux.go, generated from
// elastic/go-seccomp-bpf's tables).
func SyscallNumber(name string) (uint32, bool) {
	return archSyscall(name)
}
