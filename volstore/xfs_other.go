//go:build !linux

package volstore

import (
	"context"
	"fmt"

	"github.com/beamhop/lightbox/internal/errdefs"
)

var errXFSNotLinux = fmt.Errorf("%w: XFS project quotas need Linux", errdefs.ErrQuotaUnsupported)

// XFSQuotaAvailable is false off Linux.
func XFSQuotaAvailable(dir string) (bool, error) { return false, nil }

// CheckXFSQuota always fails off Linux.
func CheckXFSQuota(dir string) error { return errXFSNotLinux }

// XFSBackend exists off Linux only so that callers compile.
type XFSBackend struct{}

// NewXFSBackend always fails off Linux.
func NewXFSBackend(root string, opts XFSOptions) (*XFSBackend, error) { return nil, errXFSNotLinux }

func (b *XFSBackend) Name() string { return "xfs" }
func (b *XFSBackend) Create(ctx context.Context, dataDir string, limitBytes int64, uid, gid int, perm uint32) error {
	return errXFSNotLinux
}
func (b *XFSBackend) Activate(ctx context.Context, dataDir string) error { return errXFSNotLinux }
func (b *XFSBackend) Remove(ctx context.Context, dataDir string) error   { return errXFSNotLinux }
func (b *XFSBackend) Usage(ctx context.Context, dataDir string) (int64, bool, error) {
	return 0, false, errXFSNotLinux
}
func (b *XFSBackend) SetDirQuota(ctx context.Context, dir string, limitBytes int64) (func(context.Context) error, error) {
	return nil, errXFSNotLinux
}
