//go:build !linux || (!amd64 && !arm64) || lightbox_noleaninit

package initbin

// No lean init for this platform or build: the runtime re-executes its
// own binary.
var (
	compressed []byte
	sum        string
)
