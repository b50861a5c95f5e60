package lightbox

import (
	"fmt"
	"maps"
	"os"
	"sync/atomic"

	"github.com/beamhop/lightbox/internal/netstack"
	"github.com/beamhop/lightbox/internal/reexec"
	"github.com/beamhop/lightbox/internal/rmtree"
	"github.com/beamhop/lightbox/runtime"
	"github.com/beamhop/lightbox/snapshot"
)

// initCalled records that the embedding program called Init, so a launch
// from a program that forgot fails with an error saying so instead of
// running a second copy of its main inside the sandbox.
var initCalled atomic.Bool

// roles maps a re-exec role to the function that runs it. Each never
// returns: it exits the process.
var roles = func() map[string]func() {
	m := map[string]func(){
		rmtree.Role:         rmtree.Main,
		snapshot.HelperRole: snapshot.HelperMain,
		netstack.KeeperRole: netstack.KeeperMain,
	}
	maps.Copy(m, runtime.Roles())
	return m
}()

// Init must be the first call in main (and in TestMain) of every program
// that uses lightbox. In the ordinary process it returns at once; in a
// process lightbox re-executed (a sandbox's init, a rootless unpacker or
// remover) it runs that role and never returns.
func Init() {
	initCalled.Store(true)
	role := reexec.Role()
	if role == "" {
		return
	}
	run, ok := roles[role]
	if !ok {
		fmt.Fprintf(os.Stderr, "lightbox: unknown re-exec role %q\n", role)
		os.Exit(125)
	}
	run()
	os.Exit(0)
}

// errNoInit is returned by operations that re-execute the binary when the
// program never called Init.
var errNoInit = fmt.Errorf("lightbox.Init() was not called: call it first in main (and in TestMain) so the sandbox's init can start")

func checkInit() error {
	if !initCalled.Load() {
		return errNoInit
	}
	return nil
}
