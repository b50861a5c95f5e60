//go:build !linux

package volstore

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/beamhop/lightbox/internal/errdefs"
)

var errNotLinux = fmt.Errorf("%w: volume quotas need Linux", errdefs.ErrQuotaUnsupported)

func probeQuota(ctx context.Context, root string, log *slog.Logger) (Backend, error) {
	return nil, errNotLinux
}

// NewLoopBackend fails off Linux.
func NewLoopBackend() (Backend, error) { return nil, errNotLinux }

type loopBackend = foreignBackend

type foreignBackend struct {
	name string
	why  error
}

func (b *foreignBackend) Name() string { return b.name }
func (b *foreignBackend) Create(ctx context.Context, dataDir string, limitBytes int64, uid, gid int, perm uint32) error {
	return errNotLinux
}
func (b *foreignBackend) Activate(ctx context.Context, dataDir string) error { return errNotLinux }
func (b *foreignBackend) Remove(ctx context.Context, dataDir string) error   { return errNotLinux }
func (b *foreignBackend) Usage(ctx context.Context, dataDir string) (int64, bool, error) {
	return 0, false, nil
}

func statBlocks(fi os.FileInfo) (dev, ino uint64, blocks int64, nlink uint64, ok bool) {
	return 0, 0, 0, 0, false
}

func fileOwner(fi os.FileInfo) (uid, gid int, ok bool) { return 0, 0, false }

func fsSize(path string) (int64, error) { return 0, errNotLinux }
