// Package internal holds nothing itself; its subpackages are the small shared
// leaves of lightbox: name validation (names), file locks (lockfile), atomic
// writes (atomicfile), the store's id mapping (idmap), the re-exec of the
// binary into a user namespace with that mapping (reexec) and test helpers
// (testutil). They import only the standard library and x/sys.
package internal
