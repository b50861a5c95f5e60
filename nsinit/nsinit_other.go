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

// SockFilter is unix.SockFilter's layout, which x/sys/unix defines on
// Linux only, so that OCIConfig compiles everywhere.
type SockFilter struct {
	Code uint16
	Jt   uint8
	Jf   uint8
	K    uint32
}
