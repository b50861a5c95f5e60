//go:build !linux

package nsinit

import (
	"fmt"
	"os"
)

// Main is unsupported off Linux.
func Main() {
	fmt.Fprintln(os.Stderr, "lightbox init: sandboxes need Linux")
	os.Exit(125)
}
