//go:build linux

package lightbox

import (
	"strings"
	"testing"
)

func TestResourcesValidation(t *testing.T) {
	for _, tc := range []struct {
		res  Resources
		want string // "" = valid
	}{
		{Resources{}, ""},
		{Resources{MemoryMiB: -1}, "--memory"},
		{Resources{MemoryMiB: 4}, "below the 8 MiB"},
		{Resources{MemorySwapMiB: 64}, "--memory-swap"},
		{Resources{MemoryMiB: 64, MemorySwapMiB: 32}, "below --memory"},
		{Resources{CPUs: -1}, "--cpus"},
		{Resources{CPUs: 0.001}, "--cpus"},
		{Resources{CPUs: 1e6}, "CPUs"},
		{Resources{PidsLimit: 1}, "--pids-limit"},
		{Resources{PidsLimit: -2}, "--pids-limit"},
		{Resources{PidsLimit: -1}, ""},
		{Resources{ShmMiB: -1}, "--shm-size"},
		{Resources{ShmMiB: 1 << 40}, "--shm-size"},
		{Resources{LogMiB: -2}, "LogMiB"},
	} {
		_, err := tc.res.limits()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v.limits() = %v, want valid", tc.res, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v.limits() = %v, want an error saying %q", tc.res, err, tc.want)
		}
	}
	l, err := Resources{}.limits()
	if err != nil || l.Pids != DefaultPidsLimit || l.ShmBytes != DefaultShmMiB<<20 || l.LogBytes != DefaultLogMiB<<20 || l.MemoryBytes != 0 || l.CPUs != 0 {
		t.Errorf("defaults = %+v, %v", l, err)
	}
}
