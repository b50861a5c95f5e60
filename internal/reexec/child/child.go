// Package child is the re-executed process's side of package reexec: the
// role marker and the id-map handshake. It is a leaf (the standard
// library's os, io, strconv and x/sys) so that the lean sandbox init
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
