//go:build !linux

package rmtree

import (
	"context"
	"fmt"
	"os"

	"github.com/beamhop/lightbox/internal/idmap"
)

// RemoveAll deletes path and everything under it (os.RemoveAll: no user
// namespaces off Linux).
func RemoveAll(ctx context.Context, path string, m idmap.Mapping) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return os.RemoveAll(path)
}

// Chown gives path to host ids uid:gid (os.Lchown off Linux).
func Chown(ctx context.Context, path string, uid, gid int, m idmap.Mapping) error {
	return os.Lchown(path, uid, gid)
}

// Main is the rmtree role; off Linux it is never started.
func Main() {
	fmt.Fprintln(os.Stderr, "rmtree: unsupported on this platform")
	os.Exit(1)
}
