// Command lightbox is the CLI of the lightbox sandbox runtime: flags and
// output only; every action is a call into package lightbox.
package main

import (
	"os"
	"path/filepath"

	"github.com/beamhop/lightbox"
	"github.com/beamhop/lightbox/cmd/lightbox/internal/earlysig"
)

// runcName is earlysig.RuncName: the OCI runtime face's name.
const runcName = earlysig.RuncName

func main() {
	lightbox.Init()
	closeOnExecInherited()
	if filepath.Base(os.Args[0]) == runcName {
		os.Exit(RuncMain(os.Args))
	}
	os.Exit(Main(os.Args))
}
