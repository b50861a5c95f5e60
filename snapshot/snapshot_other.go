//go:build !linux

package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/umoci/oci/casext"
	"github.com/opencontainers/umoci/oci/layer"
)

// errPlatform is what Open returns off Linux: layers are unpacked in the
// overlayfs format (user.overlay.* xattrs) and sandboxes read them there.
var errPlatform = fmt.Errorf("snapshot store: %w: needs Linux", errors.ErrUnsupported)

func checkPlatform() error { return errPlatform }

func syncLayer(l ispec.Descriptor, f *os.File) error { return errPlatform }

// Owner is unsupported off Linux.
func (s *Store) Owner(ctx context.Context, layers []string, target string) (*DirOwner, error) {
	return nil, errPlatform
}

func (s *Store) layerFromUpper(ctx context.Context, e casext.Engine, upper string, stubs []string) (ispec.Descriptor, digest.Digest, error) {
	return ispec.Descriptor{}, "", errPlatform
}

// MountStubs is unsupported off Linux.
func (s *Store) MountStubs(layers []string, targets []string) ([]string, error) {
	return nil, errPlatform
}

func upperLayer(dir string, mo layer.MapOptions, warn warnFunc, stubs []string) io.ReadCloser {
	pr, pw := io.Pipe()
	_ = pw.CloseWithError(errPlatform) // always nil
	return pr
}

func lookupMain(args []string) error { return errPlatform }

// ReadFile is unsupported off Linux.
func (s *Store) ReadFile(ctx context.Context, layers []string, p string) ([]byte, error) {
	return nil, errPlatform
}

func (s *Store) IsRegularFile(layers []string, p string) (bool, error) {
	return false, errPlatform
}

// CopyOut is unsupported off Linux.
func (s *Store) CopyOut(ctx context.Context, req CopyRequest) (io.ReadCloser, error) {
	return nil, errPlatform
}

func copyOutMain(args []string) error { return errPlatform }

// Resolve is unsupported off Linux.
func (s *Store) Resolve(layers []string, p string) (string, error) { return "", errPlatform }
