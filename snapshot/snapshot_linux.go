package snapshot

import (
	"fmt"
	"os"

	"github.com/beamhop/lightbox/internal/sys"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// checkPlatform is Open's first check: nil on Linux (see snapshot_other.go).
func checkPlatform() error { return nil }

// syncLayer writes what the unpack of l put in the page cache to the disk
// before the layer is renamed into place (f: any file of the temporary
// directory's filesystem). A layer directory in place is never unpacked
// again, and the blobs and index.json are fsynced (umoci), so a machine
// that lost power between the rename and the kernel's own writeback
// would keep a snapshot whose files are empty for good: containerd's
// zero-length layers (containerd#8895, #9115; fixed there by an opt-in
// syncfs). One syncfs a layer: the data has to reach the disk anyway,
// and an fsync of each file would commit the journal per file.
func syncLayer(l ispec.Descriptor, f *os.File) error {
	if err := sys.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("unpack layer %s: write it to the disk: %w", l.Digest, err)
	}
	return nil
}
