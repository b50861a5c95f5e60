//go:build !linux

package child

import (
	"fmt"
	"os"
)

// WaitMapped has nothing to wait for off Linux: no process is re-executed
// into a user namespace there.
func WaitMapped() error { return nil }

// ReexecIfMappedLate has nothing to do off Linux (see WaitMapped).
func ReexecIfMappedLate() error { return nil }

// CloneMain is unsupported off Linux: nothing starts the clone role there.
func CloneMain() {
	fmt.Fprintln(os.Stderr, "lightbox clone: needs Linux")
	os.Exit(125)
}
