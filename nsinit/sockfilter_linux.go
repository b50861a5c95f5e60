package nsinit

import "golang.org/x/sys/unix"

// SockFilter is one instruction of a classic BPF program (OCIConfig.Seccomp).
type SockFilter = unix.SockFilter
