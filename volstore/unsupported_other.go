//go:build !linux

package volstore

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/beamhop/lightbox/internal/errdefs"
)

var errNotLinux = fmt.Errorf("%w: volume quotas need Linux", errdefs.ErrQuotaUnsupported)

func probeQuota(root string, log *slog.Logger) (Backend, error) {
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

func duTree(dir string) (used int64, known bool) { return 0, false }

func fsSize(path string) (int64, error) { return 0, errNotLinux }

// Delegate fails off Linux.
func (s *Store) Delegate(ctx context.Context, name string, d Delegation, o CreateOptions) (*DelegatedVolume, bool, error) {
	return nil, false, errNotLinux
}

// RemoveDelegated fails off Linux.
func (s *Store) RemoveDelegated(ctx context.Context, uid int, name string) error { return errNotLinux }

// ListDelegated fails off Linux.
func (s *Store) ListDelegated(ctx context.Context, uid int) ([]DelegatedVolume, error) {
	return nil, errNotLinux
}

func (s *Store) checkRef(name string, md *meta) error       { return errNotLinux }
func refUsage(dir, backend string) (int64, bool)            { return 0, false }
func (s *Store) checkRemovable(name string, md *meta) error { return nil }
