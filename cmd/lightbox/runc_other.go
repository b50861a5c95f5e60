//go:build !linux

package main

import (
	"fmt"
	"os"
)

// runcName is the name (argv[0]'s base) under which the binary speaks
// runc's command line.
const runcName = "lightbox-runc"

// RuncMain says that the OCI runtime needs Linux (package ociruntime is
// empty elsewhere).
func RuncMain(args []string) int {
	fmt.Fprintf(os.Stderr, "%s: an OCI runtime needs Linux\n", runcName)
	return 1
}
