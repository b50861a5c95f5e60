package volstore

import (
	"context"
	"fmt"
	"os"

	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/rmtree"
	"github.com/beamhop/lightbox/internal/sys"
)

// dirBackend is a plain directory: no quota, usage unknown (walk it).
type dirBackend struct {
	m idmap.Mapping
}

// NewDirBackend returns the "dir" backend for a store with mapping m: a
// plain directory that refuses any limit with errdefs.ErrQuotaUnsupported.
func NewDirBackend(m idmap.Mapping) Backend { return &dirBackend{m: m} }

func (b *dirBackend) Name() string { return "dir" }

func (b *dirBackend) Create(ctx context.Context, dataDir string, limitBytes int64, uid, gid int, perm uint32) error {
	if limitBytes != 0 {
		return fmt.Errorf("dir backend: a plain directory cannot hold a limit: %w", errdefs.ErrQuotaUnsupported)
	}
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		return err
	}
	// chmod first: rootless, the new owner may be another id of the range,
	// after which the caller can no longer chmod (chown keeps a
	// directory's setgid bit).
	if err := os.Chmod(dataDir, sys.FileMode(perm)); err != nil {
		return err
	}
	if err := rmtree.Chown(ctx, dataDir, uid, gid, b.m); err != nil {
		return fmt.Errorf("chown %s: %w", dataDir, err)
	}
	return nil
}

func (b *dirBackend) Activate(ctx context.Context, dataDir string) error {
	fi, err := os.Stat(dataDir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: not a directory", dataDir)
	}
	return nil
}

func (b *dirBackend) Remove(ctx context.Context, dataDir string) error {
	return rmtree.RemoveAll(ctx, dataDir, b.m)
}

func (b *dirBackend) Usage(ctx context.Context, dataDir string) (int64, bool, error) {
	return 0, false, nil
}
