package volstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/beamhop/lightbox/internal/atomicfile"
	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/lockfile"
	"github.com/beamhop/lightbox/internal/names"
	"github.com/beamhop/lightbox/internal/sys"
	"golang.org/x/sys/unix"
)

// Root's area for delegated volumes (DelegateDir), all root-owned:
//
//	.locks/<uid>+<name>.lock   serializes root's operations on one volume
//	<uid>/                      0711
//	<uid>/<name>/               0711: record.json, data.img (loop, 0600), data/
//	<uid>/.tmp+<name>+<rand>/   a volume being built
//	<uid>/.rm+<name>+<rand>/    a volume being removed
const (
	recordFile   = "record.json"
	delegTmp     = ".tmp+"
	delegRm      = ".rm+"
	userLockWait = 30 * time.Second
)

// Delegate, as root, makes a volume with a quota for a rootless user: root
// keeps the quota'd backing (a loop image, or an XFS project directory) in
// its own area, DelegateDir/<uid>/<name>/, and writes into the user's store
// only a reference (volumes/<name>/ with meta.json and lease, owned by the
// user), which the user's own lightbox resolves to the backing's data
// directory when it mounts the volume. Every path of the user's store is
// opened relative to a descriptor without following a symlink or leaving
// the store (see internal/sys.OpenBeneath), what root creates there is
// given to the user through its descriptor, and nothing there is ever read
// to decide what root mounts or removes.
//
// An existing delegated volume is returned as it is (created = false),
// mounted again if the machine restarted, and its reference written again
// if the user's store lost it. A name the user's store already has for a
// volume of its own fails with errdefs.ErrExists.
func (s *Store) Delegate(ctx context.Context, name string, d Delegation, o CreateOptions) (v *DelegatedVolume, created bool, err error) {
	if err := s.validate(name, &o); err != nil {
		return nil, false, err
	}
	errf := func(err error) error { return fmt.Errorf("volume %s for %s: %w", name, d.User, err) }
	if os.Geteuid() != 0 {
		return nil, false, errf(errors.New("only root keeps a volume for another user"))
	}
	if d.UID <= 0 || d.GID < 0 {
		return nil, false, errf(fmt.Errorf("%w: owner uid %d: root keeps volumes for ordinary users only", ErrInvalidOption, d.UID))
	}
	if !filepath.IsAbs(d.Store) {
		return nil, false, errf(fmt.Errorf("%w: the user's store %q is not an absolute path", ErrInvalidOption, d.Store))
	}
	d.Store = filepath.Clean(d.Store)
	lk, err := s.lockDeleg(ctx, d.UID, name)
	if err != nil {
		return nil, false, errf(err)
	}
	defer lk.Close()
	s.cleanDelegStale(ctx, d.UID, name)
	u, err := openUserStore(d)
	if err != nil {
		return nil, false, errf(err)
	}
	defer u.close()
	ul, err := u.lock(ctx, name)
	if err != nil {
		return nil, false, errf(err)
	}
	defer unix.Close(ul)

	if rec, err := s.readRecord(d.UID, name); err == nil {
		if rec.Store != d.Store {
			return nil, false, errf(fmt.Errorf("%w: root keeps it for the store %s, not %s; remove it first (volume rm --owner)", errdefs.ErrExists, rec.Store, d.Store))
		}
		b, err := s.backend(rec.Backend)
		if err != nil {
			return nil, false, errf(err)
		}
		data := filepath.Join(s.delegVolDir(d.UID, name), dataDir)
		if err := b.Activate(ctx, data); err != nil {
			return nil, false, errf(fmt.Errorf("mount it again: %w", err))
		}
		has, err := u.has(name)
		if err != nil {
			return nil, false, errf(err)
		}
		if !has {
			if err := u.writeRef(name, s.refMeta(rec, false)); err != nil {
				return nil, false, errf(err)
			}
			s.log.Info("volume reference written again", "volume", name, "owner", d.User)
		}
		return s.delegVolume(ctx, rec), false, nil
	} else if !errors.Is(err, errdefs.ErrNotFound) {
		return nil, false, errf(err)
	}

	if o.QuotaMiB == 0 {
		return nil, false, errf(fmt.Errorf("%w: root keeps only volumes with a quota for a user (without one the user makes it themselves)", ErrInvalidOption))
	}
	b, err := s.checkQuota(name, o.QuotaMiB)
	if err != nil {
		return nil, false, err
	}
	if has, err := u.has(name); err != nil {
		return nil, false, errf(err)
	} else if has {
		return nil, false, errf(fmt.Errorf("%w: the user's store %s has a volume of that name already", errdefs.ErrExists, d.Store))
	}
	if err := s.makeDelegDirs(d); err != nil {
		return nil, false, errf(err)
	}
	rec := &delegRecord{Version: 1, Name: name, UID: d.UID, GID: d.GID, User: d.User, Store: d.Store,
		Labels: maps.Clone(o.Labels), CreatedAt: time.Now().UTC(), QuotaMiB: o.QuotaMiB, Backend: b.Name()}
	if rec.Labels == nil {
		rec.Labels = map[string]string{}
	}
	if err := s.buildDeleg(ctx, b, rec, o); err != nil {
		return nil, false, errf(err)
	}
	if err := u.writeRef(name, s.refMeta(rec, true)); err != nil {
		if rerr := s.removeDelegBacking(context.WithoutCancel(ctx), d.UID, name); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return nil, false, errf(err)
	}
	s.log.Info("volume kept for a user", "volume", name, "owner", d.User, "backend", b.Name(), "quota_mib", o.QuotaMiB)
	return s.delegVolume(ctx, rec), true, nil
}

// buildDeleg builds the backing in a temporary directory of root's area
// and renames it into place.
func (s *Store) buildDeleg(ctx context.Context, b Backend, rec *delegRecord, o CreateOptions) error {
	uidDir := s.delegUIDDir(rec.UID)
	tmp := filepath.Join(uidDir, delegTmp+rec.Name+"+"+randSuffix())
	if err := os.Mkdir(tmp, 0o711); err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			if err := s.destroyDeleg(context.WithoutCancel(ctx), tmp); err != nil {
				s.log.Warn("volume: cannot clean a half-made delegated volume", "volume", rec.Name, "path", tmp, "err", err)
			}
		}
	}()
	// The record first: a half-made volume left by a kill says which
	// backend must free it.
	if err := atomicfile.WriteJSON(filepath.Join(tmp, recordFile), rec, 0o644); err != nil {
		return err
	}
	mode := o.Mode
	if mode == 0 {
		mode = 0o755
	}
	perm := uint32(mode.Perm())
	if mode&os.ModeSetgid != 0 {
		perm |= 0o2000
	}
	if mode&os.ModeSticky != 0 {
		perm |= 0o1000
	}
	if err := b.Create(ctx, filepath.Join(tmp, dataDir), rec.QuotaMiB<<20, rec.UID, rec.GID, perm); err != nil {
		return err
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.delegVolDir(rec.UID, rec.Name)); err != nil {
		return err
	}
	ok = true
	if err := syncDir(uidDir); err != nil {
		return err
	}
	// A backend that records paths (XFS's /etc/projects) learns the final one.
	if err := b.Activate(ctx, filepath.Join(s.delegVolDir(rec.UID, rec.Name), dataDir)); err != nil {
		s.log.Warn("delegated volume created but not activated", "volume", rec.Name, "err", err)
	}
	return nil
}

// RemoveDelegated, as root, removes the volume it keeps for the user uid:
// the reference in the user's store (when that store still holds it and
// no lease on it is held: errdefs.ErrInUse), then the backing. Root acts on
// its own record only; a user's store that cannot be opened safely keeps
// its (now dangling) reference, which the user can remove.
func (s *Store) RemoveDelegated(ctx context.Context, uid int, name string) error {
	if err := names.Check("volume", name); err != nil {
		return err
	}
	errf := func(err error) error { return fmt.Errorf("remove volume %s of uid %d: %w", name, uid, err) }
	if os.Geteuid() != 0 {
		return errf(errors.New("only root removes a volume it keeps for a user"))
	}
	lk, err := s.lockDeleg(ctx, uid, name)
	if err != nil {
		return errf(err)
	}
	defer lk.Close()
	s.cleanDelegStale(ctx, uid, name)
	rec, err := s.readRecord(uid, name)
	if err != nil {
		return errf(err)
	}
	u, err := openUserStore(Delegation{UID: rec.UID, GID: rec.GID, User: rec.User, Store: rec.Store})
	switch {
	case err == nil:
		defer u.close()
		ul, err := u.lock(ctx, name)
		if err != nil {
			return errf(err)
		}
		defer unix.Close(ul)
		lease, err := u.leaseExclusive(name)
		if err != nil {
			return errf(err)
		}
		if lease >= 0 {
			defer unix.Close(lease)
		}
		if err := u.removeRef(name); err != nil {
			s.log.Warn("volume: the user's reference is left", "volume", name, "owner", rec.User, "err", err)
		}
	case errors.Is(err, fs.ErrNotExist):
		// The user's store is gone: nothing refers to the volume.
	default:
		s.log.Warn("volume: the user's store cannot be opened safely; its reference is left", "volume", name, "owner", rec.User, "err", err)
	}
	if err := s.removeDelegBacking(ctx, uid, name); err != nil {
		return errf(err)
	}
	s.log.Info("volume kept for a user removed", "volume", name, "owner", rec.User)
	return nil
}

// removeDelegBacking takes root's volume out of its place and frees it.
// The caller holds the volume's lock.
func (s *Store) removeDelegBacking(ctx context.Context, uid int, name string) error {
	trash := filepath.Join(s.delegUIDDir(uid), delegRm+name+"+"+randSuffix())
	if err := os.Rename(s.delegVolDir(uid, name), trash); err != nil {
		return err
	}
	if err := syncDir(s.delegUIDDir(uid)); err != nil {
		// The rename stands; only its durability across a power cut is at stake.
		s.log.Warn("volume: removal not yet durable", "volume", name, "uid", uid, "err", err)
	}
	return s.destroyDeleg(ctx, trash)
}

// ListDelegated lists the volumes root keeps for the user uid, or for
// every user when uid < 0, sorted by user and name.
func (s *Store) ListDelegated(ctx context.Context, uid int) ([]DelegatedVolume, error) {
	var uids []int
	if uid >= 0 {
		uids = []int{uid}
	} else {
		ents, err := os.ReadDir(s.delegDir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("list delegated volumes: %w", err)
		}
		for _, e := range ents {
			if n, err := strconv.Atoi(e.Name()); err == nil && e.IsDir() && n > 0 {
				uids = append(uids, n)
			}
		}
		slices.Sort(uids)
	}
	out := []DelegatedVolume{}
	for _, id := range uids {
		ents, err := os.ReadDir(s.delegUIDDir(id))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list delegated volumes: %w", err)
		}
		for _, e := range ents {
			if !e.IsDir() || !names.Valid(e.Name()) {
				continue
			}
			rec, err := s.readRecord(id, e.Name())
			if errors.Is(err, errdefs.ErrNotFound) {
				continue // removed meanwhile
			}
			if err != nil {
				return nil, fmt.Errorf("list delegated volumes: %w", err)
			}
			out = append(out, *s.delegVolume(ctx, rec))
		}
	}
	return out, nil
}

func (s *Store) delegUIDDir(uid int) string { return filepath.Join(s.delegDir, strconv.Itoa(uid)) }
func (s *Store) delegVolDir(uid int, name string) string {
	return filepath.Join(s.delegUIDDir(uid), name)
}

func (s *Store) lockDeleg(ctx context.Context, uid int, name string) (*lockfile.Lock, error) {
	if err := s.makeRootDir(s.delegDir, 0o711); err != nil {
		return nil, err
	}
	locks := filepath.Join(s.delegDir, ".locks")
	if err := s.makeRootDir(locks, 0o700); err != nil {
		return nil, err
	}
	// '+' occurs in no name: "<uid>+<name>" is unambiguous.
	return lockfile.Exclusive(ctx, filepath.Join(locks, strconv.Itoa(uid)+"+"+name+".lock"))
}

// makeRootDir makes dir (mode perm, owned by root) or checks the one there
// is a root-owned directory that no one else can write.
func (s *Store) makeRootDir(dir string, perm uint32) error {
	if err := os.Mkdir(dir, os.FileMode(perm)); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: dir, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != 0 || st.Mode&0o022 != 0 {
		return fmt.Errorf("%s: not a directory that root owns and only root can write (mode %o, owner %d)", dir, st.Mode, st.Uid)
	}
	if st.Mode&0o7777 != perm {
		if err := os.Chmod(dir, os.FileMode(perm)); err != nil {
			return err
		}
	}
	return nil
}

// makeDelegDirs makes root's directories for d's volumes, and checks d's
// user can reach them: the data directory is bound into the user's
// sandboxes by the user's own lightbox.
func (s *Store) makeDelegDirs(d Delegation) error {
	// Root's store itself: others may pass through it (traverse only,
	// what is inside keeps its own modes), or no user reaches the data.
	store := filepath.Dir(s.delegDir)
	if fi, err := os.Stat(store); err == nil && fi.Mode().Perm()&0o011 != 0o011 {
		if err := os.Chmod(store, fi.Mode().Perm()|0o011); err != nil {
			return err
		}
	}
	if err := s.makeRootDir(s.delegUIDDir(d.UID), 0o711); err != nil {
		return err
	}
	for dir := s.delegUIDDir(d.UID); ; dir = filepath.Dir(dir) {
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			return &os.PathError{Op: "stat", Path: dir, Err: err}
		}
		if !searchable(&st, d.UID, d.GID) {
			return fmt.Errorf("user %s (uid %d) cannot reach %s (mode %o, owner %d:%d), under which root keeps the volume: "+
				"give others search permission on it (chmod o+x), or use a --root the user can reach", d.User, d.UID, dir, st.Mode&0o7777, st.Uid, st.Gid)
		}
		if dir == "/" {
			return nil
		}
	}
}

// searchable reports whether uid:gid may search the directory st
// describes (supplementary groups aside).
func searchable(st *unix.Stat_t, uid, gid int) bool {
	switch {
	case int(st.Uid) == uid:
		return st.Mode&0o100 != 0
	case int(st.Gid) == gid:
		return st.Mode&0o010 != 0
	}
	return st.Mode&0o001 != 0
}

func (s *Store) readRecord(uid int, name string) (*delegRecord, error) {
	return readRecordAt(s.delegVolDir(uid, name))
}

func readRecordAt(dir string) (*delegRecord, error) {
	data, err := os.ReadFile(filepath.Join(dir, recordFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no volume kept at %s: %w", dir, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	var rec delegRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, recordFile), err)
	}
	if rec.Labels == nil {
		rec.Labels = map[string]string{}
	}
	return &rec, nil
}

// destroyDeleg frees a volume directory of root's area that is out of its
// place: the backend's resources (as root's record says), then the tree.
func (s *Store) destroyDeleg(ctx context.Context, dir string) error {
	rec, err := readRecordAt(dir)
	if err == nil && rec.Backend != "" {
		b, berr := s.backend(rec.Backend)
		if berr != nil {
			return fmt.Errorf("free %s: %w", dir, berr)
		}
		if err := b.Remove(ctx, filepath.Join(dir, dataDir)); err != nil {
			return fmt.Errorf("free %s: %w", dir, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("free %s: %w", dir, err)
	}
	return nil
}

// cleanDelegStale frees what a killed Delegate or RemoveDelegated of
// (uid, name) left. The caller holds the volume's lock.
func (s *Store) cleanDelegStale(ctx context.Context, uid int, name string) {
	for _, pfx := range []string{delegTmp, delegRm} {
		// A valid name holds no glob metacharacters.
		matches, _ := filepath.Glob(filepath.Join(s.delegUIDDir(uid), pfx+name+"+*"))
		for _, d := range matches {
			if err := s.destroyDeleg(ctx, d); err != nil {
				s.log.Warn("volume: cannot clean what an interrupted operation left", "volume", name, "path", d, "err", err)
			}
		}
	}
}

// refMeta is the meta.json of rec's reference in the user's store. A
// new volume's is unfilled, as a volume the user makes is (the user's
// first sandbox that mounts it over a directory of its image fills
// it); one written again, for a store that lost it, is not: the volume
// may have been filled and emptied since, and it is never filled again.
func (s *Store) refMeta(rec *delegRecord, created bool) *meta {
	return &meta{
		Version: 1, Labels: maps.Clone(rec.Labels), CreatedAt: rec.CreatedAt, LastUsedAt: rec.CreatedAt,
		QuotaMiB: rec.QuotaMiB, Backend: backendDelegated, Unfilled: created,
		Delegated: &delegRef{
			Backend:   rec.Backend,
			DataDir:   filepath.Join(s.delegVolDir(rec.UID, rec.Name), dataDir),
			AdminRoot: filepath.Dir(s.delegDir),
			Owner:     rec.User,
		},
	}
}

func (s *Store) delegVolume(ctx context.Context, rec *delegRecord) *DelegatedVolume {
	v := &DelegatedVolume{
		Volume: Volume{
			Name: rec.Name, Labels: maps.Clone(rec.Labels), CreatedAt: rec.CreatedAt, QuotaMiB: rec.QuotaMiB,
			Backend: rec.Backend, DataDir: filepath.Join(s.delegVolDir(rec.UID, rec.Name), dataDir),
		},
		UID: rec.UID, GID: rec.GID, User: rec.User, Store: rec.Store,
	}
	if b, err := s.backend(rec.Backend); err == nil {
		if used, known, err := b.Usage(ctx, v.DataDir); err == nil && known {
			v.UsedBytes, v.UsageKnown = used, true
		}
	}
	return v
}

// userStore is a rootless user's store as root opens it: descriptors of
// its root, volumes/ and volumes/.locks/, each checked (fstat) to be a
// directory the user owns. Nothing below them is reached by a path that
// can follow a symlink or leave them.
type userStore struct {
	d                 Delegation
	root, vols, locks int
}

// openUserStore opens d.Store, which must be a directory d.UID owns (the
// path to it is the user's to choose: wherever it leads, what is opened is
// checked), and its volumes/ and volumes/.locks/, making them (owned by
// the user) where missing.
func openUserStore(d Delegation) (*userStore, error) {
	fd, err := unix.Open(d.Store, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("the user's store %s does not exist (run lightbox once as %s first): %w", d.Store, d.User, fs.ErrNotExist)
		}
		return nil, &os.PathError{Op: "open", Path: d.Store, Err: err}
	}
	u := &userStore{d: d, root: fd, vols: -1, locks: -1}
	if err := u.checkOwned(fd, d.Store, unix.S_IFDIR); err != nil {
		u.close()
		return nil, err
	}
	if u.vols, err = u.dir(u.root, "volumes", d.Store); err != nil {
		u.close()
		return nil, err
	}
	if u.locks, err = u.dir(u.vols, ".locks", filepath.Join(d.Store, "volumes")); err != nil {
		u.close()
		return nil, err
	}
	return u, nil
}

func (u *userStore) close() {
	for _, fd := range []int{u.locks, u.vols, u.root} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// checkOwned fstats fd: of type typ and owned by the user.
func (u *userStore) checkOwned(fd int, path string, typ uint32) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != typ {
		return fmt.Errorf("%s in %s's store is not a %s: refusing to use it", path, u.d.User, typeName(typ))
	}
	if int(st.Uid) != u.d.UID {
		return fmt.Errorf("%s is owned by uid %d, not by %s (uid %d): refusing to write in it as root", path, st.Uid, u.d.User, u.d.UID)
	}
	return nil
}

func typeName(typ uint32) string {
	if typ == unix.S_IFDIR {
		return "directory"
	}
	return "regular file"
}

// dir opens the directory name in parent (full names parent, for
// messages), making it first, owned by the user, when missing.
func (u *userStore) dir(parent int, name, full string) (int, error) {
	path := filepath.Join(full, name)
	fresh := false
	fd, err := sys.OpenBeneath(parent, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) {
		err = sys.Mkdirat(parent, name, 0o700)
		fresh = err == nil
		if err == nil || errors.Is(err, unix.EEXIST) {
			fd, err = sys.OpenBeneath(parent, name, unix.O_RDONLY|unix.O_DIRECTORY)
		}
	}
	if err != nil {
		return -1, refusal(path, err)
	}
	if fresh {
		if err := u.giveFresh(fd, path); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	if err := u.checkOwned(fd, path, unix.S_IFDIR); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// giveFresh gives what root has just made through fd to the user; a fresh
// entry the user replaced meanwhile with one of their own stays theirs.
func (u *userStore) giveFresh(fd int, path string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Uid != 0 {
		return nil
	}
	if err := unix.Fchown(fd, u.d.UID, u.d.GID); err != nil {
		return &os.PathError{Op: "fchown", Path: path, Err: err}
	}
	return nil
}

// refusal words an OpenBeneath error on the user's store.
func refusal(path string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%s is or passes through a symlink: root does not follow a user's symlinks: %w", path, err)
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%s is or passes through a mount point: root does not cross one in a user's store: %w", path, err)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%s is not a directory: %w", path, err)
	}
	return err
}

// lock takes the user's own per-name lock of volumes (the one their
// lightbox takes) and returns its descriptor; closing it releases it.
func (u *userStore) lock(ctx context.Context, name string) (int, error) {
	file := name + ".lock"
	path := filepath.Join(u.d.Store, "volumes", ".locks", file)
	ctx, cancel := context.WithTimeout(ctx, userLockWait)
	defer cancel()
	for {
		if err := ctx.Err(); err != nil {
			return -1, fmt.Errorf("lock %s: %w", path, err)
		}
		fd, err := sys.CreateBeneath(u.locks, file, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOCTTY|unix.O_NONBLOCK, 0o600)
		fresh := err == nil
		if errors.Is(err, unix.EEXIST) {
			fd, err = sys.OpenBeneath(u.locks, file, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK)
			if errors.Is(err, unix.ENOENT) {
				continue // removed between the two opens by its holder
			}
		}
		if err != nil {
			return -1, refusal(path, err)
		}
		if fresh {
			err = u.giveFresh(fd, path)
		}
		if err == nil {
			err = u.checkOwned(fd, path, unix.S_IFREG)
		}
		if err == nil {
			err = flockWait(ctx, fd, path)
		}
		if err != nil {
			unix.Close(fd)
			return -1, err
		}
		// The user's lightbox removes a lock file while holding it: a lock
		// on a file no longer at the path is taken again.
		var a, b unix.Stat_t
		if unix.Fstat(fd, &a) == nil && unix.Fstatat(u.locks, file, &b, unix.AT_SYMLINK_NOFOLLOW) == nil && a.Dev == b.Dev && a.Ino == b.Ino {
			return fd, nil
		}
		unix.Close(fd)
	}
}

func flockWait(ctx context.Context, fd int, path string) error {
	if err := lockfile.WaitFD(ctx, fd, path); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("held by the user's own lightbox: %w", err)
		}
		return err
	}
	return nil
}

// has reports whether volumes/name exists (as anything: never followed).
func (u *userStore) has(name string) (bool, error) {
	var st unix.Stat_t
	err := unix.Fstatat(u.vols, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, &os.PathError{Op: "fstatat", Path: filepath.Join(u.d.Store, "volumes", name), Err: err}
	}
	return true, nil
}

// writeRef writes the reference volumes/name (meta.json and an empty
// lease, all the user's) in a temporary directory of volumes and renames
// it into place, never over an existing entry.
func (u *userStore) writeRef(name string, md *meta) (err error) {
	data, err := json.MarshalIndent(md, "", "  ")
	if err != nil {
		return err
	}
	vols := filepath.Join(u.d.Store, "volumes")
	// A leading '.' makes no valid name: the user's lightbox lists nothing
	// of it.
	tmp := ".ref+" + name + "+" + randSuffix()
	if err := sys.Mkdirat(u.vols, tmp, 0o711); err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			// Nothing else removes a .ref+ directory: one left is
			// reported with the error.
			if rerr := u.removeRefDir(tmp); rerr != nil {
				err = fmt.Errorf("%w (and removing %s: %w)", err, filepath.Join(vols, tmp), rerr)
			}
		}
	}()
	dfd, err := sys.OpenBeneath(u.vols, tmp, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return refusal(filepath.Join(vols, tmp), err)
	}
	defer unix.Close(dfd)
	if err := u.giveFresh(dfd, filepath.Join(vols, tmp)); err != nil {
		return err
	}
	if err := unix.Fchmod(dfd, 0o711); err != nil {
		return &os.PathError{Op: "fchmod", Path: filepath.Join(vols, tmp), Err: err}
	}
	for _, f := range []struct {
		name string
		data []byte
		perm uint32
	}{{metaFile, append(data, '\n'), 0o644}, {leaseFile, nil, 0o600}} {
		if err := u.writeFile(dfd, filepath.Join(vols, tmp, f.name), f.name, f.data, f.perm); err != nil {
			return err
		}
	}
	if err := unix.Fsync(dfd); err != nil {
		return &os.PathError{Op: "fsync", Path: filepath.Join(vols, tmp), Err: err}
	}
	if err := unix.Renameat2(u.vols, tmp, u.vols, name, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("the user's store has a volume %s already: %w", name, errdefs.ErrExists)
		}
		return &os.LinkError{Op: "renameat2", Old: filepath.Join(vols, tmp), New: filepath.Join(vols, name), Err: err}
	}
	ok = true
	if err := unix.Fsync(u.vols); err != nil {
		return &os.PathError{Op: "fsync", Path: vols, Err: err}
	}
	return nil
}

// writeFile creates name in dir (never an existing file), writes data
// through the descriptor and gives the file to the user.
func (u *userStore) writeFile(dir int, path, name string, data []byte, perm uint32) error {
	fd, err := sys.CreateBeneath(dir, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOCTTY, perm)
	if err != nil {
		return refusal(path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = u.giveFresh(fd, path)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// leaseExclusive takes the lease of volumes/name exclusively, as the
// user's lightbox does to remove a volume: errdefs.ErrInUse while a
// sandbox holds it. It returns -1 when the reference has no lease file.
func (u *userStore) leaseExclusive(name string) (int, error) {
	path := filepath.Join(u.d.Store, "volumes", name, leaseFile)
	fd, err := sys.OpenBeneath(u.vols, name+"/"+leaseFile, unix.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return -1, nil
	}
	if err != nil {
		return -1, refusal(path, err)
	}
	if err := u.checkOwned(fd, path, unix.S_IFREG); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := lockfile.TryFD(fd, path); err != nil {
		_ = unix.Close(fd) // an empty lock file that was not locked: nothing to flush or release
		if errors.Is(err, lockfile.ErrLocked) {
			return -1, fmt.Errorf("a sandbox of %s uses it: %w", u.d.User, errdefs.ErrInUse)
		}
		return -1, err
	}
	return fd, nil
}

// removeRef removes the reference volumes/name, when it is one: a
// directory holding nothing but meta.json and lease (what the user may
// have put there instead is left alone).
func (u *userStore) removeRef(name string) error {
	has, err := u.has(name)
	if err != nil || !has {
		return err
	}
	return u.removeRefDir(name)
}

func (u *userStore) removeRefDir(name string) error {
	path := filepath.Join(u.d.Store, "volumes", name)
	fd, err := sys.OpenBeneath(u.vols, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return refusal(path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer func() { _ = f.Close() }() // a directory opened read-only: nothing to flush
	ents, err := f.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e != metaFile && e != leaseFile && !strings.HasPrefix(e, ".tmp-"+metaFile+"-") {
			return fmt.Errorf("%s holds %q, which a reference does not: left as it is", path, e)
		}
	}
	for _, e := range ents {
		if err := unix.Unlinkat(fd, e, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return &os.PathError{Op: "unlinkat", Path: filepath.Join(path, e), Err: err}
		}
	}
	if err := unix.Unlinkat(u.vols, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "rmdir", Path: path, Err: err}
	}
	return nil
}

// The user's side: their own lightbox resolving a reference, with their
// own rights. A forged reference can only make it bind what the user can
// reach anyway.

// checkRef makes sure the data a reference names is there and usable: for
// a loop image, mounted (after a restart it is not, and only root mounts
// it again).
func (s *Store) checkRef(name string, md *meta) error {
	r := md.Delegated
	if r == nil || r.DataDir == "" {
		return fmt.Errorf("volume %s: %s names no volume root keeps", name, metaFile)
	}
	again := r.createAction(md.QuotaMiB, name, filepath.Dir(s.root))
	var st unix.Stat_t
	if err := unix.Stat(r.DataDir, &st); err != nil {
		return &NeedsRootError{
			Err: fmt.Errorf("volume %s: the data root keeps for it: %w (has root removed it? as root, ", name,
				&os.PathError{Op: "stat", Path: r.DataDir, Err: err}),
			Action: again,
			Then:   " makes it again)",
		}
	}
	if r.Backend == "loop" {
		mounted, err := isMountRoot(r.DataDir)
		if err != nil {
			return fmt.Errorf("volume %s: %w", name, err)
		}
		if !mounted {
			return &NeedsRootError{
				Err:    fmt.Errorf("volume %s: its filesystem image, which root keeps, is not mounted (has the machine restarted?): as root, run ", name),
				Action: again,
				Then:   " to mount it again",
			}
		}
	}
	return nil
}

// refUsage is what statfs says of a reference's data: the size of a loop
// image's filesystem (while mounted), or of an XFS project.
func refUsage(dir, backend string) (int64, bool) {
	if backend == "loop" {
		if mounted, err := isMountRoot(dir); err != nil || !mounted {
			return 0, false
		}
	}
	var st unix.Statfs_t
	if err := statfs(dir, &st); err != nil {
		return 0, false
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize, true
}

// checkRemovable refuses, saying what to do, the removal of a volume whose
// data only root can free: a reference while root still keeps the data,
// a loop image an older lightbox mounted as root in this store while it
// is mounted.
func (s *Store) checkRemovable(name string, md *meta) error {
	switch {
	case md.Backend == backendDelegated && md.Delegated != nil:
		if _, err := os.Lstat(filepath.Dir(md.Delegated.DataDir)); err == nil {
			return &NeedsRootError{
				Err:    fmt.Errorf("remove volume %s: root keeps its data (with its quota) and only root removes it: as root, run ", name),
				Action: md.Delegated.removeAction(name),
			}
		}
	case md.Backend == "loop" && os.Geteuid() != 0:
		data := filepath.Join(s.volDir(name), dataDir)
		if mounted, err := isMountRoot(data); err == nil && mounted {
			return fmt.Errorf("remove volume %s: its image was loop-mounted as root by an older lightbox and only root can unmount it: as root, run umount %s, then remove it", name, data)
		}
	}
	return nil
}
