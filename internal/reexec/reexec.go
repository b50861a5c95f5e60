// Package reexec starts the running binary again in a given role (the
// sandbox init, a rootless layer unpacker, a rootless remover) inside a new
// user namespace with the store's id mapping.
//
// The Go runtime is multithreaded, so a process cannot enter a new user
// namespace itself; it re-executes /proc/self/exe with Cloneflags. When the
// mapping needs newuidmap/newgidmap (rootless with a subordinate range), the
// child is started with every capability ambient (it would lose them when it
// execs unmapped) and waits on a pipe until the parent has run the helpers;
// the child side of that handshake is WaitMapped, which every role calls
// first.
package reexec

import (
	"os"
	"os/exec"

	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/reexec/child"
)

// EnvRole names the role of a re-executed process; the marker that
// lightbox.Init dispatches on.
const EnvRole = child.EnvRole

// Role returns the role this process was started in, "" for an ordinary
// process.
func Role() string { return child.Role() }

// Cmd is a re-execution of the running binary in a role.
type Cmd struct {
	*exec.Cmd
	mapping idmap.Mapping
	syncW   *os.File
}

// WaitMapped is the child's side of the handshake (package child, which
// the lean init links without this package; off Linux it returns at
// once).
func WaitMapped() error { return child.WaitMapped() }

// ReexecIfMappedLate: see package child.
func ReexecIfMappedLate() error { return child.ReexecIfMappedLate() }
