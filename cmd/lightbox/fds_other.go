//go:build !linux

package main

// closeOnExecInherited is closeOnExecInherited of fds_linux.go: lightbox
// starts no process on other systems.
func closeOnExecInherited() {}
