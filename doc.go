// Package lightbox is a daemonless, rootless sandbox runtime for Linux.
//
// A sandbox is a process tree in fresh user, mount, pid, uts, ipc and
// network namespaces whose root is an overlayfs over an immutable snapshot
// (an OCI image unpacked once per layer). Named volumes carry what should
// outlive a sandbox — package caches, model weights, build artifacts — from
// one sandbox to the next. There is no daemon: every process that uses this
// package is the runtime, and all shared state lives on disk under the
// store root, guarded by file locks.
//
// A program that uses lightbox calls Init first in main (and in TestMain):
//
//	func main() {
//		lightbox.Init()
//		…
//	}
//
// Init returns at once in the ordinary process; in a process that lightbox
// re-executed (a sandbox's init, a rootless layer unpacker) it runs that
// role and never returns.
//
// Runtime and Sandbox are safe for concurrent use by many goroutines, and
// several processes may use one store at once.
package lightbox
