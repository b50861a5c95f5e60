// Command lightbox-init is PID 1 of every sandbox: the "init" role of
// lightbox and nothing else. It links only nsinit and its leaves (the
// standard library, x/sys, internal/), so a sandbox's init starts without
// paying for the package inits of umoci, protobuf, buildkit or the CLI's
// libraries. It is built by `go generate ./internal/initbin` and carried,
// compressed, inside every lightbox binary (package initbin); nobody runs
// it by hand.
package main

import (
	"fmt"
	"os"

	"github.com/beamhop/lightbox/internal/reexec/child"
	"github.com/beamhop/lightbox/nsinit"
)

func main() {
	// The clone role (a large launcher's way to start the init: reexec's
	// StartVia) is served by package child's init, before this.
	if role := child.Role(); role != "init" {
		fmt.Fprintf(os.Stderr, "lightbox-init: started in role %q; only the lightbox runtime starts this program\n", role)
		os.Exit(125)
	}
	nsinit.Main()
	os.Exit(0)
}
