// Command lightbox-init is PID 1 of every sandbox: the "init" role of
// lightbox, and the detached reaper that tears a sandbox down after
// `lightbox run` returned (the "reap" role, with "rmtree" for its rootless
// removals). It links only nsinit and its leaves (the
// standard library, x/sys, internal/), so a sandbox's init starts without
// paying for the package inits of umoci, protobuf, buildkit or the CLI's
// libraries. It is built by `go generate ./internal/initbin` and carried,
// compressed, inside every lightbox binary (package initbin); nobody runs
// it by hand.
package main

import (
	"fmt"
	"os"

	"github.com/beamhop/lightbox/internal/reap"
	"github.com/beamhop/lightbox/internal/reexec"
	"github.com/beamhop/lightbox/internal/rmtree"
	"github.com/beamhop/lightbox/nsinit"
)

func main() {
	switch role := reexec.Role(); role {
	case "init":
		nsinit.Main()
	case reap.Role:
		reap.Main() // the detached teardown of a sandbox (internal/reap)
	case rmtree.Role:
		rmtree.Main() // the reaper's removal inside a user namespace (rootless)
	default:
		fmt.Fprintf(os.Stderr, "lightbox-init: started in role %q; only the lightbox runtime starts this program\n", role)
		os.Exit(125)
	}
	os.Exit(0)
}
