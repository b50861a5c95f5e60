package volstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/beamhop/lightbox/internal/lockfile"
)

// Disks is the directory of size-capped writable layers ($ROOT/disks):
// one directory per sandbox that asked for a cap, each with a lock file
// beside it (DIR.lock) that its launch holds until the sandbox's state
// names it, so GC never takes a disk a launch is still setting up. It is
// safe for concurrent use, also by several processes.
type Disks struct {
	dir string
	s   *Store
}

// Disks returns the capped writable layers kept in dir, made with this
// store's quota backend.
func (s *Store) Disks(dir string) *Disks { return &Disks{dir: dir, s: s} }

// Disk is a capped writable layer a launch is making: locked until Unlock.
type Disk struct {
	// Dir is the directory for the overlay's upper and work dirs.
	Dir string
	lk  *lockfile.Lock
}

// Unlock lets GC consider the disk: call it once a sandbox's state names
// Dir (or once Dir is removed).
func (d *Disk) Unlock() error { return d.lk.Close() }

// Create makes a directory of at most mib MiB for sandbox name's writable
// layer, locked until the returned Disk's Unlock.
func (d *Disks) Create(ctx context.Context, name string, mib int64) (*Disk, error) {
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return nil, fmt.Errorf("disk for sandbox %s: %w", name, err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it panics instead)
	dir := filepath.Join(d.dir, name+"-"+hex.EncodeToString(b[:]))
	lk, err := lockfile.Exclusive(ctx, dir+".lock")
	if err != nil {
		return nil, fmt.Errorf("disk for sandbox %s: %w", name, err)
	}
	if err := d.s.CreateDisk(ctx, dir, mib); err != nil {
		// What the backend made before it failed (a loop image the size
		// of the cap that the host's filesystem refused, or mkfs failed
		// on) goes with the lock: nothing is left of a refused launch.
		if rerr := d.s.RemoveDisk(context.WithoutCancel(ctx), dir); rerr != nil {
			err = errors.Join(err, rerr)
		}
		d.removeLock(dir, lk)
		return nil, fmt.Errorf("sandbox %s: %w", name, err)
	}
	return &Disk{Dir: dir, lk: lk}, nil
}

// Activate makes a disk Create made usable again after the machine
// restarted: a loop backend's image (DIR.img) is mounted on dir again,
// under the disk's lock (two commits of a kept sandbox must not mount it
// twice); nothing while it is mounted, nor for a disk of another backend
// (an XFS project dir is always there).
func (d *Disks) Activate(ctx context.Context, dir string) error {
	if _, err := os.Lstat(dir + ".img"); errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("capped layer: %w", err)
	}
	lk, err := lockfile.Exclusive(ctx, dir+".lock")
	if err != nil {
		return fmt.Errorf("capped layer %s: %w", dir, err)
	}
	defer func() { _ = lk.Close() }() // nothing was written through it; close frees the descriptor, and the flock with it, even when it reports an error
	b, err := d.s.backend("loop")
	if err == nil {
		err = b.Activate(ctx, dir)
	}
	if err != nil {
		return fmt.Errorf("capped layer %s: %w", dir, err)
	}
	return nil
}

// Remove removes a disk Create made, with its lock file. A missing disk is
// not an error.
func (d *Disks) Remove(ctx context.Context, dir string) error {
	if err := d.s.RemoveDisk(ctx, dir); err != nil {
		return err
	}
	d.removeLock(dir, nil)
	return nil
}

// removeLock removes dir's lock file and then releases lk (nil: not held
// here). A lock file left behind costs nothing: the next Create of that
// name picks a new suffix and GC skips files that are not directories.
func (d *Disks) removeLock(dir string, lk *lockfile.Lock) {
	if err := os.Remove(dir + ".lock"); err != nil && !errors.Is(err, os.ErrNotExist) {
		d.s.log.Warn("remove disk lock", "path", dir+".lock", "err", err)
	}
	_ = lk.Close() // nothing was written through it; close frees the descriptor, and the flock with it, even when it reports an error
}

// GC removes the disks that no sandbox uses any more (inUse reports
// whether a sandbox's state names a disk's directory) and are not being
// made by a launch, and returns their names.
func (d *Disks) GC(ctx context.Context, inUse func(dir string) bool) ([]string, error) {
	ents, err := os.ReadDir(d.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var errs []error
	var removed []string
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name()] = true
	}
	for _, e := range ents {
		name := e.Name()
		if !e.IsDir() {
			// A loop backend's image whose directory a crash (or a
			// failed Create) never made: a disk too, with nothing in it.
			img, ok := strings.CutSuffix(name, ".img")
			if !ok || !e.Type().IsRegular() || names[img] {
				continue
			}
			name = img
		}
		dir := filepath.Join(d.dir, name)
		lk, err := lockfile.TryExclusive(dir + ".lock")
		if err != nil {
			continue // a launch is making it
		}
		if !inUse(dir) {
			if err := d.s.RemoveDisk(ctx, dir); err != nil {
				errs = append(errs, err)
			} else {
				d.removeLock(dir, nil)
				removed = append(removed, name)
			}
		}
		_ = lk.Close() // nothing was written through it; close frees the descriptor, and the flock with it, even when it reports an error
	}
	return removed, errors.Join(errs...)
}

// CreateDisk makes dir (which must not exist) a directory of at most
// limitMiB, with the store's quota backend, for a sandbox's writable
// layer: the overlay's upper and work dirs both go inside it (XFS refuses
// renames into a project from outside it, and overlayfs copies up by
// renaming from the work dir). It fails with ErrQuotaUnsupported, saying
// why, where the store cannot enforce a limit. RemoveDisk undoes it, also
// after a crash.
func (s *Store) CreateDisk(ctx context.Context, dir string, limitMiB int64) error {
	q, why := s.quotaBackend()
	if q == nil {
		return fmt.Errorf("cap the writable layer at %d MiB: %w", limitMiB, why)
	}
	if limitMiB <= 0 || limitMiB > MaxQuotaMiB {
		return fmt.Errorf("cap the writable layer at %d MiB: %w: want 1 to %d MiB", limitMiB, ErrInvalidOption, MaxQuotaMiB)
	}
	if mb, ok := q.(interface{ MinLimit() int64 }); ok && limitMiB<<20 < mb.MinLimit() {
		return fmt.Errorf("cap the writable layer at %d MiB: %w: below the %d MiB the %s backend's filesystem needs for itself",
			limitMiB, ErrInvalidOption, (mb.MinLimit()+(1<<20)-1)>>20, q.Name())
	}
	uid, gid := 0, 0
	if len(s.m.UIDs) > 0 {
		uid, gid = int(s.m.UIDs[0].HostID), int(s.m.GIDs[0].HostID)
	}
	if xb, ok := q.(*XFSBackend); ok {
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("cap the writable layer: %w", err)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			_ = os.Remove(dir) // the chown's error is returned; an empty dir left here is Disks.GC's (no lock, no sandbox names it)
			return fmt.Errorf("cap the writable layer: %w", err)
		}
		if _, err := xb.SetDirQuota(ctx, dir, limitMiB<<20); err != nil {
			_ = os.Remove(dir) // the quota's error is returned; a dir left here is Disks.GC's (no lock, no sandbox names it)
			return fmt.Errorf("cap the writable layer: %w", err)
		}
		return nil
	}
	if err := q.Create(ctx, dir, limitMiB<<20, uid, gid, 0o700); err != nil {
		return fmt.Errorf("cap the writable layer: %w", err)
	}
	return nil
}

// RemoveDisk removes a directory CreateDisk made, with everything in it,
// and frees what its backend allocated. A missing dir is not an error.
func (s *Store) RemoveDisk(ctx context.Context, dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		// Nothing, or a loop image whose directory was never made (a
		// crash or a failure in Create, before its mkdir): never mounted
		// nor attached, a file to remove, with or without a backend.
		if err := os.Remove(dir + ".img"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove capped layer: %w", err)
		}
		return nil
	}
	q, why := s.quotaBackend()
	if q == nil {
		return fmt.Errorf("remove capped layer %s: %w", dir, why)
	}
	return q.Remove(ctx, dir)
}
