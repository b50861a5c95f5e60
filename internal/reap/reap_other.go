//go:build !linux

package reap

import (
	"fmt"
	"os"
)

// Main is the reaper role; sandboxes exist on Linux only.
func Main() {
	fmt.Fprintln(os.Stderr, "lightbox reap: needs Linux")
	os.Exit(125)
}
