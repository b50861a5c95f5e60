// Command lightbox is the CLI of the lightbox sandbox runtime: flags and
// output only; every action is a call into package lightbox.
package main

import (
	"os"

	"github.com/beamhop/lightbox"
)

func main() {
	lightbox.Init()
	os.Exit(Main(os.Args))
}
