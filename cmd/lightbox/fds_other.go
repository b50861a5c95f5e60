//go:build !linux

package main

import (
	"io"
	"os"
)

// closeOnExecInherited is closeOnExecInherited of fds_linux.go: lightbox
// starts no process on other systems.
func closeOnExecInherited() {}

// commandStdin is commandStdin of fds_linux.go.
func commandStdin() io.Reader { return os.Stdin }
