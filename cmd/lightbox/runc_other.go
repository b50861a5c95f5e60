//go:build !linux

package main

import (
	"fmt"
	"os"
)

// RuncMain says that the OCI runtime needs Linux (package ociruntime is
// empty elsewhere).
func RuncMain(args []string) int {
	fmt.Fprintf(os.Stderr, "%s: an OCI runtime needs Linux\n", runcName)
	return 1
}
