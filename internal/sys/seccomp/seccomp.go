// Package seccomp holds the default seccomp profile of sandbox workloads,
// compiled to a classic BPF program: a deny list in the spirit of
// docker's and podman's defaults — kernel modules, kexec, keyrings, bpf,
// perf events, io_uring, userfaultfd, open_by_handle_at, clock and swap
// changes, quotas, reboot, and the old ABIs that bypass a filter keyed on
// syscall numbers (i386 and x32 on amd64) — answered with EPERM.
// Everything else is allowed: capabilities and namespaces confine the
// rest.
//
// nsinit loads it on its spawner thread, whose children (every workload)
// inherit it; it is not loaded on the init's other threads.
package seccomp

import (
	"errors"
	"fmt"
)

// ErrUnsupported is returned on architectures the profile does not cover.
var ErrUnsupported = fmt.Errorf("seccomp profile: %w: no syscall table for this architecture", errors.ErrUnsupported)
