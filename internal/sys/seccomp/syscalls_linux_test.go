package seccomp

import (
	"runtime"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
)

// The generated tables are elastic/go-seccomp-bpf's, entry for entry: every
// name the library knows maps to its number, and the switch (whose cases
// the compiler keeps distinct) has as many names as the library. A
// library update without go generate fails here.
func TestSyscallTables(t *testing.T) {
	for _, tc := range []struct {
		lookup func(string) (uint32, bool)
		n      int
		info   *arch.Info
	}{
		{syscallX86_64, nSyscallsX86_64, arch.X86_64},
		{syscallAArch64, nSyscallsAArch64, arch.AARCH64},
	} {
		if tc.n != len(tc.info.SyscallNames) {
			t.Errorf("%s: %d calls in the table, the library has %d: run go generate ./internal/sys/seccomp", tc.info.Name, tc.n, len(tc.info.SyscallNames))
		}
		for name, nr := range tc.info.SyscallNames {
			if got, ok := tc.lookup(name); !ok || got != uint32(nr) {
				t.Errorf("%s: %s = %d, %v, the library's %d", tc.info.Name, name, got, ok, nr)
			}
		}
		for _, name := range []string{"", "no_such_call", "READ", "read "} {
			if got, ok := tc.lookup(name); ok {
				t.Errorf("%s: %q = %d, true, want false", tc.info.Name, name, got)
			}
		}
	}
}

// SyscallNumber answers from the running architecture's table, and knows
// no call where the package has none.
func TestSyscallNumber(t *testing.T) {
	info := map[string]*arch.Info{"amd64": arch.X86_64, "arm64": arch.AARCH64}[runtime.GOARCH]
	if info == nil {
		if nr, ok := SyscallNumber("read"); ok {
			t.Errorf("SyscallNumber(read) on %s = %d, true, want false (no table)", runtime.GOARCH, nr)
		}
		return
	}
	for name, nr := range info.SyscallNames {
		if got, ok := SyscallNumber(name); !ok || got != uint32(nr) {
			t.Errorf("SyscallNumber(%q) = %d, %v, want %d, true", name, got, ok, nr)
		}
	}
}
