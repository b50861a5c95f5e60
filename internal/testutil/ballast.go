package testutil

import (
	"os"
	"runtime/debug"
	"testing"
)

// Ballast makes the test's process hold n more bytes of anonymous memory,
// every page touched (a large embedding program, as reexec.Large sees
// it), until the test ends; then it is given back to the system, so that
// the tests after it run as a small process again.
func Ballast(t testing.TB, n int) {
	b := make([]byte, n)
	for i := 0; i < len(b); i += os.Getpagesize() {
		b[i] = 1
	}
	t.Cleanup(func() {
		b[len(b)-1] = 2 // held until here
		b = nil
		debug.FreeOSMemory()
	})
}
