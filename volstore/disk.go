package volstore

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// CreateDisk makes dir (which must not exist) a directory of at most
// limitMiB, with the store's quota backend, for a sandbox's writable
// layer: the overlay's upper and work dirs both go inside it (XFS refuses
// renames into a project from outside it, and overlayfs copies up by
// renaming from the work dir). It fails with ErrQuotaUnsupported, saying
// why, where the store cannot enforce a limit. RemoveDisk undoes it, also
// after a crash.
func (s *Store) CreateDisk(ctx context.Context, dir string, limitMiB int64) error {
	if s.quota == nil {
		return fmt.Errorf("cap the writable layer at %d MiB: %w", limitMiB, s.quotaWhy)
	}
	if limitMiB <= 0 || limitMiB > MaxQuotaMiB {
		return fmt.Errorf("cap the writable layer at %d MiB: %w: want 1 to %d MiB", limitMiB, ErrInvalidOption, MaxQuotaMiB)
	}
	if mb, ok := s.quota.(interface{ MinLimit() int64 }); ok && limitMiB<<20 < mb.MinLimit() {
		return fmt.Errorf("cap the writable layer at %d MiB: %w: below the %d MiB the %s backend's filesystem needs for itself",
			limitMiB, ErrInvalidOption, (mb.MinLimit()+(1<<20)-1)>>20, s.quota.Name())
	}
	uid, gid := 0, 0
	if len(s.m.UIDs) > 0 {
		uid, gid = int(s.m.UIDs[0].HostID), int(s.m.GIDs[0].HostID)
	}
	if xb, ok := s.quota.(*XFSBackend); ok {
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("cap the writable layer: %w", err)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.Remove(dir)
			return fmt.Errorf("cap the writable layer: %w", err)
		}
		if _, err := xb.SetDirQuota(ctx, dir, limitMiB<<20); err != nil {
			os.Remove(dir)
			return fmt.Errorf("cap the writable layer: %w", err)
		}
		return nil
	}
	if err := s.quota.Create(ctx, dir, limitMiB<<20, uid, gid, 0o700); err != nil {
		return fmt.Errorf("cap the writable layer: %w", err)
	}
	return nil
}

// RemoveDisk removes a directory CreateDisk made, with everything in it,
// and frees what its backend allocated. A missing dir is not an error.
func (s *Store) RemoveDisk(ctx context.Context, dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		if _, err := os.Lstat(dir + ".img"); errors.Is(err, os.ErrNotExist) {
			return nil
		}
	}
	if s.quota == nil {
		return fmt.Errorf("remove capped layer %s: %w", dir, s.quotaWhy)
	}
	return s.quota.Remove(ctx, dir)
}
