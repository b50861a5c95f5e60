package sys

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Linux's real-time signals, as the C library leaves them to programs
// (glibc and musl keep 32 and 33 for themselves).
const (
	sigRTMin = 34
	sigRTMax = 64
)

// ParseSignal reads a signal as docker, kill(1) and an image's STOPSIGNAL
// write it: a name with or without "SIG" in any case ("SIGTERM",
// "term"), "RTMIN+n" or "RTMAX-n", or a number from 1 to 64. The numbers
// are Linux's.
func ParseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > sigRTMax {
			return 0, fmt.Errorf("signal %q: out of range 1–%d", s, sigRTMax)
		}
		return syscall.Signal(n), nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	for _, rt := range []struct {
		prefix     string
		base, sign int
	}{{"RTMIN", sigRTMin, 1}, {"RTMAX", sigRTMax, -1}} {
		rest, ok := strings.CutPrefix(name, rt.prefix)
		if !ok {
			continue
		}
		off := 0
		if rest != "" {
			if rest[0] != "+-"[(1-rt.sign)/2] {
				return 0, fmt.Errorf("signal %q: unknown", s)
			}
			n, err := strconv.Atoi(rest[1:])
			if err != nil || n < 0 || n > sigRTMax-sigRTMin {
				return 0, fmt.Errorf("signal %q: unknown", s)
			}
			off = n
		}
		return syscall.Signal(rt.base + rt.sign*off), nil
	}
	if name != "" {
		if sig := unix.SignalNum("SIG" + name); sig != 0 {
			return sig, nil
		}
	}
	return 0, fmt.Errorf("signal %q: unknown", s)
}
