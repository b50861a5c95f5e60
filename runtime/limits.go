package runtime

import (
	"errors"
	"fmt"
)

// Limits bound what a sandbox's processes may use. The runtime picks the
// mechanism for each (a cgroup where one can be made, RLIMIT_NPROC for
// pids where not) and refuses, with ErrLimitUnsupported, a limit it
// cannot make hold: nothing is silently ignored.
type Limits struct {
	// MemoryBytes caps the sandbox's memory, /dev/shm included; 0 = none.
	// On cgroup v1 it caps the workloads', and the init gets
	// initMemoryReserve beside it (see cgroups_linux.go).
	MemoryBytes int64
	// MemorySwapBytes caps memory plus swap (>= MemoryBytes); 0 = equal
	// to MemoryBytes (no swap), -1 = unlimited swap. Needs MemoryBytes.
	MemorySwapBytes int64
	// CPUs caps CPU time in cores (0.5 = half a core); 0 = none. On
	// cgroup v1 it caps the workloads', and the init gets initCPUReserve
	// beside it.
	CPUs float64
	// Pids caps the number of processes (threads count); 0 = none. In a
	// cgroup it bounds the workloads, the init's threads beside them;
	// as RLIMIT_NPROC (no cgroup) each uid's, and root's count holds the
	// init's own threads too.
	Pids int64
	// ShmBytes is the size of /dev/shm; 0 = the kernel's tmpfs default
	// (half of RAM).
	ShmBytes int64
	// LogBytes caps what the main command's logs keep on disk when they
	// go to the sandbox's log files (the newest output is kept); 0 = no
	// cap.
	LogBytes int64
}

// ErrLimitUnsupported: a limit was asked for that this host cannot
// enforce for this caller (no cgroup controller, no delegation). It wraps
// errors.ErrUnsupported; the message says what would give it.
var ErrLimitUnsupported error = unsupported{}

type unsupported struct{}

func (unsupported) Error() string        { return "cannot be enforced here" }
func (unsupported) Is(target error) bool { return target == errors.ErrUnsupported }

// Usage is what a sandbox's cgroup has counted.
type Usage struct {
	// MemoryBytes is the memory in use now (page cache included): on
	// cgroup v1 the workloads', which the limit is on.
	MemoryBytes uint64 `json:"memoryBytes"`
	// MemoryLimitBytes is the memory limit, 0 when there is none.
	MemoryLimitBytes uint64 `json:"memoryLimitBytes,omitempty"`
	// Pids is the number of the workloads' processes (tasks) now, the
	// init's own threads not counted (see workloadPids).
	Pids uint64 `json:"pids"`
	// PidsLimit is the workloads' pids limit, Limits.Pids; 0 when there
	// is none.
	PidsLimit uint64 `json:"pidsLimit,omitempty"`
	// CPUNanos is the CPU time used since the sandbox started.
	CPUNanos uint64 `json:"cpuNanos"`
	// OOMKills counts processes the OOM killer killed in the sandbox.
	OOMKills uint64 `json:"oomKills,omitempty"`
}

// LimitsApplied holds the sandbox's limits as they were applied, one line per
// resource, by name ("pids", "memory", "cpu", "shm", "logs"): "cgroup v1
// 4096", "rlimit 4096", "none", "none — no cgroup delegation".
type LimitsApplied map[string]string

// LimitError is a limit that is invalid or cannot hold; Resource names
// it: "memory", "memory+swap", "cpu", "pids", "shm" or "logs".
type LimitError struct {
	Resource string
	Err      error
}

func (e *LimitError) Error() string { return e.Resource + " limit: " + e.Err.Error() }
func (e *LimitError) Unwrap() error { return e.Err }

func limitErr(res, format string, a ...any) error {
	return &LimitError{Resource: res, Err: fmt.Errorf(format, a...)}
}

func (l *Limits) validate() error {
	switch {
	case l.MemoryBytes < 0:
		return limitErr("memory", "%d: negative", l.MemoryBytes)
	case l.MemorySwapBytes < -1:
		return limitErr("memory+swap", "%d: negative", l.MemorySwapBytes)
	case l.MemorySwapBytes != 0 && l.MemoryBytes == 0:
		return limitErr("memory+swap", "%d: given without a memory limit", l.MemorySwapBytes)
	case l.MemorySwapBytes > 0 && l.MemorySwapBytes < l.MemoryBytes:
		return limitErr("memory+swap", "%d: below the memory limit %d", l.MemorySwapBytes, l.MemoryBytes)
	case l.CPUs < 0 || l.CPUs != l.CPUs:
		return limitErr("cpu", "%g: not a positive number", l.CPUs)
	case l.Pids < 0:
		return limitErr("pids", "%d: negative", l.Pids)
	case l.ShmBytes < 0:
		return limitErr("shm", "%d: negative", l.ShmBytes)
	case l.LogBytes < 0:
		return limitErr("logs", "%d: negative", l.LogBytes)
	}
	return nil
}
