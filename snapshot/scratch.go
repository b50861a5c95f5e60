package snapshot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// ScratchDir makes an empty directory, mode 01777 (as a tmpfs's root),
// under the store's temporary directory, held by a lock while in use: what
// RUN --mount=type=tmpfs mounts. release removes it; one that a killed
// process left is removed by GC, as every unheld temporary directory.
func (s *Store) ScratchDir(ctx context.Context) (dir string, release func() error, err error) {
	t, err := s.newTemp(ctx, "scratch")
	if err != nil {
		return "", nil, err
	}
	release = func() error {
		defer t.close()
		return s.removeAll(context.WithoutCancel(ctx), t.dir)
	}
	d := filepath.Join(t.dir, "d")
	if err := os.Mkdir(d, 0o700); err == nil {
		err = os.Chmod(d, 0o777|os.ModeSticky)
	}
	if err != nil {
		_ = release() // the mkdir already failed: that error is returned
		return "", nil, fmt.Errorf("scratch directory: %w", err)
	}
	return d, release, nil
}
