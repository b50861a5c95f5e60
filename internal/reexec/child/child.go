// Package child is the re-executed process's side of package reexec: the
// role marker, the id-map handshake, and the clone role (StartVia's
// intermediate, served from this package's init). It is a leaf (the
// standard library and x/sys) so that the lean sandbox init
// (internal/initbin), which needs only this side, does not link reexec's
// launcher side and what that pulls in (os/exec, os/user, crypto/sha256
// and encoding/json through internal/idmap): fewer package inits and a
// smaller program for every sandbox start.
package child

import "os"

// EnvRole names the role of a re-executed process; the marker that
// lightbox.Init dispatches on.
const EnvRole = "_LIGHTBOX_ROLE"

// EnvSync names the descriptor of the id-map handshake's pipe, set by
// reexec's Start when the parent writes the maps after the child started.
const EnvSync = "_LIGHTBOX_MAPSYNC_FD"

// Role returns the role this process was started in, "" for an ordinary
// process.
func Role() string { return os.Getenv(EnvRole) }

// CloneRole is the role of the small process through which a large
// launcher starts a child in a new user namespace (reexec's StartVia).
//
// Go starts such a child with a fork, not a vfork: the parent writes the
// child's id maps between the clone and the exec, which a vforked parent
// could not. A fork copies the page tables of every anonymous page the
// parent holds, and marks them copy-on-write: measured from an embedding
// program, a sandbox's launch took 6.4 ms with an empty heap, 42 ms with
// 1 GiB of it touched and 144 ms with 4 GiB (bench/NOTES.md, 2026-12-01).
// So a large launcher starts this role instead, as a vfork (no namespace
// of its own), and this small process makes the real clone with
// CLONE_PARENT: the child is the launcher's, which waits for it and reaps
// it as if it had cloned it itself.
const CloneRole = "clone"

// EnvClone carries a CloneSpec to the clone role.
const EnvClone = "_LIGHTBOX_CLONE"
