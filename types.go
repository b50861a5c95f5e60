package lightbox

import (
	"fmt"
	"time"
)

// Network selects a sandbox's network.
type Network string

const (
	// NetworkPrivate is the sandbox's own network namespace with a
	// user-mode stack attached for outbound access (the default: "").
	NetworkPrivate Network = "private"
	// NetworkNone is the sandbox's own network namespace with only
	// loopback.
	NetworkNone Network = "none"
	// NetworkHost shares the host's network namespace.
	NetworkHost Network = "host"
)

// Resources are limits on a sandbox. The zero value is no limits, and no
// cgroup is made.
type Resources struct {
	// MemoryMiB caps memory (0 = none).
	MemoryMiB int64
	// CPUs caps CPU time in cores (0 = none).
	CPUs float64
	// Pids caps the number of processes (0 = none).
	Pids int64
}

// SandboxOptions describe a sandbox to launch. Zero fields take defaults.
type SandboxOptions struct {
	// Snapshot names the snapshot the sandbox's root is made from.
	Snapshot string
	// Name is the sandbox's name and hostname; "" = generated.
	Name string
	// Mounts maps absolute paths inside the sandbox to what is mounted there.
	Mounts map[string]Mount
	// Workdir is the working directory of commands; "" = the snapshot's.
	Workdir string
	// Env is "KEY=value" entries applied on top of the snapshot's own.
	Env []string
	// User is "user[:group]" (names or ids) inside the sandbox that
	// commands run as; "" = the snapshot's.
	User string
	// Command is an optional main process; nil = none: the sandbox idles,
	// serving Exec and Shell, until destroyed (or Timeout passes). With a
	// Command the sandbox lives as long as that process.
	Command []string
	// Network: "" = NetworkPrivate; NetworkNone, NetworkHost.
	Network Network
	// Ports publishes sandbox ports on the host with NetworkPrivate:
	// "[HOSTIP:]HOSTPORT:PORT[/tcp|udp]", on 127.0.0.1 unless HOSTIP is
	// given.
	Ports []string
	// Resources: zero = no limits (and no cgroup is made).
	Resources Resources
	// Timeout: 0 = none; enforced by the sandbox's own init.
	Timeout time.Duration
	// DiskMiB caps the sandbox's writable layer; 0 = no cap.
	DiskMiB int64
	// AllowUserNamespaces lets the sandbox's processes create user
	// namespaces of their own, as a rootless container engine or a
	// browser's sandbox running inside needs. Off by default: the seccomp
	// profile refuses them (unshare and clone with CLONE_NEWUSER fail with
	// EPERM, clone3 with ENOSYS), as docker's and podman's do, because a
	// process gets every capability in a user namespace of its own, and
	// with it the kernel code behind new mount, network and other
	// namespaces. /proc and /sys stay read-only and
	// masked inside such namespaces either way, and a fresh proc or sysfs
	// cannot be mounted there (see README).
	AllowUserNamespaces bool
}

// Mount is what SandboxOptions.Mounts puts at a path: a host path
// (Source) or a named volume (Volume), exactly one of them.
type Mount struct {
	// Source is a host path to bind; relative to the caller's working
	// directory. It must exist.
	Source string
	// Volume is a named volume, created on first use.
	Volume string
	// ReadOnly makes the mount read-only, recursively.
	ReadOnly bool
}

// Result is what a finished command left.
type Result struct {
	// ExitCode is the command's exit status; 128+N when killed by signal N.
	ExitCode int
	// Stdout and Stderr hold at most OutputLimit bytes each; past it the
	// returned error says the output was truncated.
	Stdout, Stderr []byte
}

// OutputLimit is how much of each stream Exec and Shell keep: 16 MiB.
// Use a Cmd with your own writers to keep more.
const OutputLimit = 16 << 20

// ExitError reports a command that ran and exited non-zero (or was killed
// by a signal), as os/exec.ExitError does.
type ExitError struct {
	// ExitCode is the command's exit status (128+N for signal N).
	ExitCode int
	// Signal is the signal that killed it, 0 if it exited.
	Signal int
	// Stderr is the tail of its standard error, when it was captured.
	Stderr []byte
}

func (e *ExitError) Error() string {
	if e.Signal != 0 {
		return fmt.Sprintf("command killed by signal %d", e.Signal)
	}
	return fmt.Sprintf("command exited with status %d", e.ExitCode)
}
