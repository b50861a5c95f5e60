package sys

import (
	"syscall"
	"testing"
)

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{
		"SIGTERM": 15, "term": 15, "Kill": 9, "9": 9, "SIGINT": 2, "64": 64,
		"RTMIN": 34, "SIGRTMIN+3": 37, "rtmax-2": 62, "RTMAX": 64, "SIGUSR1": 10,
	} {
		got, err := ParseSignal(in)
		if err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "65", "-1", "SIG", "TERMX", "RTMIN-1", "RTMAX+1", "RTMIN+31", "RTMIN+x"} {
		if got, err := ParseSignal(in); err == nil {
			t.Errorf("ParseSignal(%q) = %d, want an error", in, got)
		}
	}
}
