package volstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/beamhop/lightbox/internal/errdefs"
	"golang.org/x/sys/unix"
)

// probeQuota picks the backend that enforces quotas in the store at root:
// xfs (XFS with prjquota, root), else loop (root), else none and why.
func probeQuota(root string, log *slog.Logger) (Backend, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: a rootless store cannot enforce a quota (a loop-mounted image or an XFS project quota needs root)", errdefs.ErrQuotaUnsupported)
	}
	// The XFS backend names project ids after the store's directory.
	xb, xerr := NewXFSBackend(filepath.Dir(root), XFSOptions{})
	if xerr == nil {
		return xb, nil
	}
	log.Debug("volume quota backend xfs unavailable", "reason", xerr)
	b, err := NewLoopBackend()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errdefs.ErrQuotaUnsupported, err)
	}
	return b, nil
}

// foreignBackend stands for a quota backend this process cannot drive (a
// volume root made for a rootless store): the volume can be used and its
// usage read, not created or removed.
type foreignBackend struct {
	name string
	why  error
}

func (b *foreignBackend) Name() string { return b.name }

func (b *foreignBackend) Create(ctx context.Context, dataDir string, limitBytes int64, uid, gid int, perm uint32) error {
	return b.why
}

func (b *foreignBackend) Activate(ctx context.Context, dataDir string) error {
	fi, err := os.Stat(dataDir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: not a directory", dataDir)
	}
	return nil
}

func (b *foreignBackend) Remove(ctx context.Context, dataDir string) error {
	if _, err := os.Lstat(dataDir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return b.why
}

// Usage is what statfs says: the size of a loop image's filesystem, or of
// an XFS project (statfs on a project directory reports the project).
func (b *foreignBackend) Usage(ctx context.Context, dataDir string) (int64, bool, error) {
	var st unix.Statfs_t
	if err := statfs(dataDir, &st); err != nil {
		return 0, false, err
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize, true, nil
}
