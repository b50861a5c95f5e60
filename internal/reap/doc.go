// Package reap is the detached teardown of a sandbox: a small process
// that outlives the one that launched the sandbox and removes, once the
// sandbox's init has exited, its cgroups and its directory (already
// renamed aside, so its name is free). It lets `lightbox run`
// return the command's exit status without waiting for that work, and
// leaves nothing a kill -9 could strand: it holds the sandbox's name
// lock for its whole life, so `lightbox gc` skips the directory while it
// works and removes it (cgroups included, from the state file) once a
// killed reaper let go.
//
// It is its own package, a leaf (the standard library, x/sys,
// internal/rmtree and internal/idmap), so that the role needs none of the
// runtime's dependencies. It runs as a role of the lightbox binary (or of
// the embedding program, through lightbox.Init), not of the lean init,
// whose text every idle sandbox maps (the remover added ~180 kB to it).
// The runtime works out what to remove (it owns the cgroup layout) and
// hands it over as a Spec, once the sandbox's init has exited; a small
// tree it removes itself (RemoveSmall, which stops past a limit and
// leaves the rest to a reaper), as a reaper's start would cost more than
// that.
package reap

import "github.com/beamhop/lightbox/internal/idmap"

// Role is the re-exec role of the reaper.
const Role = "reap"

// Spec is what a reaper removes, passed as JSON in its first argument.
// The reaper inherits the sandbox's name lock as fd 3 (held, never
// touched).
type Spec struct {
	// Dir is the sandbox's directory, renamed aside (.rm-…).
	Dir string `json:"dir"`
	// Mapping is the store's id mapping (internal/rmtree removes what
	// other ids of it own from inside a user namespace).
	Mapping idmap.Mapping `json:"mapping"`
	// Cgroups are the sandbox's cgroup directories, each child before
	// its parent; Parents the shared parents, removed when empty (best
	// effort).
	Cgroups []string `json:"cgroups,omitempty"`
	Parents []string `json:"parents,omitempty"`
	// Last are the entries of Dir that RemoveSmall removes after the
	// cgroups: the lock and the state file, by which gc finds and
	// finishes what a crash left.
	Last []string `json:"last,omitempty"`
}
