package lightbox

import (
	"errors"
	"fmt"
	"math"
	goruntime "runtime"

	"github.com/beamhop/lightbox/runtime"
)

// ErrLimitUnsupported: a resource limit was asked for that this host
// cannot enforce for this caller (rootless on cgroup v1: no delegation).
// It wraps errors.ErrUnsupported; the message says what would give it.
var ErrLimitUnsupported = runtime.ErrLimitUnsupported

// flagOf names the CLI flag of each resource in errors.
var flagOf = map[string]string{
	"memory":      "--memory",
	"memory+swap": "--memory-swap",
	"cpu":         "--cpus",
	"pids":        "--pids-limit",
	"shm":         "--shm-size",
	"logs":        "Resources.LogMiB",
}

func limitErr(res, format string, a ...any) error {
	return fmt.Errorf("resources: %s: %s", flagOf[res], fmt.Sprintf(format, a...))
}

// limits checks res and turns it into the runtime's limits, defaults
// filled in; then asks the runtime whether they can hold here, before
// anything is created.
func (res Resources) limits() (runtime.Limits, error) {
	var l runtime.Limits
	switch {
	case res.MemoryMiB < 0:
		return l, limitErr("memory", "%d MiB: negative", res.MemoryMiB)
	case res.MemoryMiB > 0 && res.MemoryMiB < MinMemoryMiB:
		return l, limitErr("memory", "%d MiB: below the %d MiB a sandbox's init needs", res.MemoryMiB, MinMemoryMiB)
	case res.MemoryMiB > math.MaxInt64>>21:
		return l, limitErr("memory", "%d MiB: too large", res.MemoryMiB)
	case res.MemorySwapMiB < -1:
		return l, limitErr("memory+swap", "%d MiB: negative (-1 is unlimited swap)", res.MemorySwapMiB)
	case res.MemorySwapMiB != 0 && res.MemoryMiB == 0:
		return l, limitErr("memory+swap", "given without --memory")
	case res.MemorySwapMiB > 0 && res.MemorySwapMiB < res.MemoryMiB:
		return l, limitErr("memory+swap", "%d MiB: below --memory %d MiB (it counts memory plus swap)", res.MemorySwapMiB, res.MemoryMiB)
	case res.MemorySwapMiB > math.MaxInt64>>21:
		return l, limitErr("memory+swap", "%d MiB: too large", res.MemorySwapMiB)
	case math.IsNaN(res.CPUs) || math.IsInf(res.CPUs, 0) || res.CPUs < 0:
		return l, limitErr("cpu", "%g: not a positive number of CPUs", res.CPUs)
	case res.CPUs > 0 && res.CPUs < 0.01:
		return l, limitErr("cpu", "%g: below 0.01 CPUs", res.CPUs)
	case res.CPUs > float64(goruntime.NumCPU()):
		return l, limitErr("cpu", "%g: this host has %d CPUs", res.CPUs, goruntime.NumCPU())
	case res.PidsLimit < -1:
		return l, limitErr("pids", "%d: negative (-1 is no limit)", res.PidsLimit)
	case res.PidsLimit > 0 && res.PidsLimit < MinPidsLimit:
		return l, limitErr("pids", "%d: below the %d processes and threads a sandbox's init needs", res.PidsLimit, MinPidsLimit)
	case res.PidsLimit > 1<<22:
		return l, limitErr("pids", "%d: above the kernel's maximum of %d", res.PidsLimit, 1<<22)
	case res.ShmMiB < 0:
		return l, limitErr("shm", "%d MiB: negative", res.ShmMiB)
	case res.LogMiB < -1:
		return l, limitErr("logs", "%d MiB: negative (-1 is no cap)", res.LogMiB)
	case res.LogMiB > math.MaxInt64>>21:
		return l, limitErr("logs", "%d MiB: too large", res.LogMiB)
	}
	if res.ShmMiB > 0 {
		if total, ok := hostMemoryMiB(); ok && res.ShmMiB > total {
			return l, limitErr("shm", "%d MiB: more than this host's %d MiB of memory", res.ShmMiB, total)
		}
	}
	l.MemoryBytes = res.MemoryMiB << 20
	if res.MemorySwapMiB > 0 {
		l.MemorySwapBytes = res.MemorySwapMiB << 20
	} else {
		l.MemorySwapBytes = res.MemorySwapMiB // 0 or -1
	}
	l.CPUs = res.CPUs
	switch res.PidsLimit {
	case 0:
		l.Pids = DefaultPidsLimit
	case -1:
		l.Pids = 0
	default:
		l.Pids = res.PidsLimit
	}
	l.ShmBytes = DefaultShmMiB << 20
	if res.ShmMiB > 0 {
		l.ShmBytes = res.ShmMiB << 20
	}
	switch res.LogMiB {
	case 0:
		l.LogBytes = DefaultLogMiB << 20
	case -1:
		l.LogBytes = 0
	default:
		l.LogBytes = res.LogMiB << 20
	}
	if err := runtime.CheckLimits(l); err != nil {
		var le *runtime.LimitError
		if errors.As(err, &le) {
			return l, fmt.Errorf("resources: %s: %w", flagOf[le.Resource], err)
		}
		return l, fmt.Errorf("resources: %w", err)
	}
	return l, nil
}
