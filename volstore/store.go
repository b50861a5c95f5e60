package volstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/beamhop/lightbox/internal/atomicfile"
	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/lockfile"
	"github.com/beamhop/lightbox/internal/names"
	"github.com/beamhop/lightbox/internal/rmtree"
)

// ErrInvalidOption is returned (wrapped) for a bad quota or label; nothing
// is created.
var ErrInvalidOption = errors.New("invalid volume option")

// MaxQuotaMiB bounds a quota independently of the filesystem: 1 EiB.
const MaxQuotaMiB = 1 << 40

// Options configure Open.
type Options struct {
	// Root is the volumes directory ($ROOT/volumes); created if missing.
	Root string
	// TmpDir is where volumes are built and removed ($ROOT/tmp); it must
	// be on Root's filesystem. "" = Root/.tmp.
	TmpDir string
	// Mapping is the store's id mapping; it decides the default owner of
	// a volume's root and how trees owned by other ids are removed.
	Mapping idmap.Mapping
	// Logger receives structured records; nil discards them.
	Logger *slog.Logger
	// DelegateDir is where root keeps the quota'd volumes it makes for
	// rootless users (see Delegate); "" = "delegated" beside Root
	// ($ROOT/delegated). Unused by a rootless store.
	DelegateDir string
}

// Store is an open volume store. It is safe for concurrent use, and
// several processes may use one store at once.
type Store struct {
	root, tmp, locks string
	m                idmap.Mapping
	log              *slog.Logger
	dir              Backend
	// The quota backend is probed on first use (a launch without a disk
	// cap or a volume with a quota never needs it): quotaBackend.
	quotaOnce sync.Once
	quota     Backend // nil: quotas cannot be enforced here
	quotaWhy  error   // why quota is nil
	delegDir  string  // Options.DelegateDir
}

// Volume describes a volume.
type Volume struct {
	Name       string            `json:"name"`
	Labels     map[string]string `json:"labels"`
	CreatedAt  time.Time         `json:"createdAt"`
	LastUsedAt time.Time         `json:"lastUsedAt"`
	// QuotaMiB is the size limit; 0 = none.
	QuotaMiB int64 `json:"quotaMiB"`
	// UsedBytes is valid when UsageKnown.
	UsedBytes  int64 `json:"usedBytes"`
	UsageKnown bool  `json:"usageKnown"`
	// Backend is "dir", "loop", "xfs", or "delegated" for a volume root
	// keeps for this store's user in its own area (see Delegate).
	Backend string `json:"backend"`
	// DataDir is the directory to mount into a sandbox.
	DataDir string `json:"dataDir"`
}

// CreateOptions apply when a volume is created; an existing volume is
// never changed.
type CreateOptions struct {
	// QuotaMiB caps the size; 0 = no quota.
	QuotaMiB int64
	// Labels are free-form; keys non-empty and without '='.
	Labels map[string]string
	// UID and GID are the host ids owning the volume's root directory;
	// -1 = the host id of the mapping's root. (The zero value means host
	// root: set -1 to get the default.)
	UID, GID int
	// Mode is the root directory's permission bits (with setgid and
	// sticky; a directory's os.FileMode as Stat returns it is fine);
	// 0 = 0755.
	Mode os.FileMode
}

// PruneFilter selects the volumes Prune removes (unused ones only).
type PruneFilter struct {
	// Labels: each "K" (any value) or "K=V" must match.
	Labels []string
	// Until, when set, keeps volumes created at or after it.
	Until time.Time
}

// testHookBeforeRename, set by tests, runs when a new volume is complete
// in TmpDir and about to be renamed into place.
var testHookBeforeRename func()

// meta is <name>/meta.json.
type meta struct {
	Version    int               `json:"version"`
	Labels     map[string]string `json:"labels"`
	CreatedAt  time.Time         `json:"createdAt"`
	LastUsedAt time.Time         `json:"lastUsedAt"`
	QuotaMiB   int64             `json:"quotaMiB"`
	Backend    string            `json:"backend"`
	// Delegated is set in a reference (Backend "delegated"): a volume
	// root keeps for this store's user.
	Delegated *delegRef `json:"delegated,omitempty"`
	// Unfilled: the volume was never filled from a sandbox's image (see
	// AcquireToFill; podman's NeedsCopyUp). Set at creation; a volume
	// made before this field existed has it unset and is never filled.
	Unfilled bool `json:"unfilled,omitempty"`
}

const (
	metaFile  = "meta.json"
	leaseFile = "lease"
	dataDir   = "data"
	// Prefixes of entries in TmpDir; '+' cannot occur in a name.
	tmpCreate = "vol+"
	tmpRemove = "volrm+"
)

// Open opens (creating if needed) the volume store at opts.Root and cleans
// what a killed process left in TmpDir. Which quota backend the store can
// use is probed once, when first needed.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Root == "" {
		return nil, errors.New("open volume store: no root directory")
	}
	s := &Store{
		root:     opts.Root,
		tmp:      opts.TmpDir,
		locks:    filepath.Join(opts.Root, ".locks"),
		m:        opts.Mapping,
		log:      opts.Logger,
		delegDir: opts.DelegateDir,
	}
	if s.delegDir == "" {
		s.delegDir = filepath.Join(filepath.Dir(opts.Root), "delegated")
	}
	if s.tmp == "" {
		s.tmp = filepath.Join(opts.Root, ".tmp")
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{s.root, s.tmp, s.locks} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open volume store: %w", err)
		}
	}
	s.dir = &dirBackend{m: s.m}
	s.sweep(ctx)
	return s, nil
}

// quotaBackend returns the backend that enforces quotas in this store, or
// nil and why quotas cannot be enforced here; the first call probes.
func (s *Store) quotaBackend() (Backend, error) {
	s.quotaOnce.Do(func() {
		s.quota, s.quotaWhy = probeQuota(s.root, s.log)
		if s.quota != nil {
			s.log.Debug("volume quota backend", "backend", s.quota.Name())
		} else {
			s.log.Debug("volume quotas unsupported", "reason", s.quotaWhy)
		}
	})
	return s.quota, s.quotaWhy
}

// QuotaBackend names the backend that enforces quotas in this store, or
// returns "" and why quotas cannot be enforced here.
func (s *Store) QuotaBackend() (string, error) {
	q, why := s.quotaBackend()
	if q == nil {
		return "", why
	}
	return q.Name(), nil
}

func (s *Store) volDir(name string) string { return filepath.Join(s.root, name) }

// backend returns the backend a volume's meta names.
func (s *Store) backend(name string) (Backend, error) {
	if name == s.dir.Name() {
		return s.dir, nil
	}
	q, qwhy := s.quotaBackend()
	if q != nil && q.Name() == name {
		return q, nil
	}
	if name == backendDelegated {
		return refBackend{}, nil
	}
	if name == "loop" {
		// A loop volume in a store whose probe chose another backend (or
		// none, rootless): it can still be used while mounted, and removed
		// by root.
		return &loopBackend{}, nil
	}
	why := qwhy
	if why == nil {
		why = fmt.Errorf("this store uses the %q quota backend", q.Name())
	}
	return &foreignBackend{name: name, why: fmt.Errorf("volume backend %q unavailable here: %w", name, why)}, nil
}

// validate checks what can be checked before touching the disk.
func (s *Store) validate(name string, o *CreateOptions) error {
	if err := names.Check("volume", name); err != nil {
		return err
	}
	if o.QuotaMiB < 0 {
		return fmt.Errorf("volume %s: quota %d MiB: %w: must be 0 (none) or positive", name, o.QuotaMiB, ErrInvalidOption)
	}
	if o.QuotaMiB > MaxQuotaMiB {
		return fmt.Errorf("volume %s: quota %d MiB: %w: larger than any filesystem", name, o.QuotaMiB, ErrInvalidOption)
	}
	if err := CheckLabels(o.Labels); err != nil {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	if o.Mode&^os.ModePerm&^(os.ModeDir|os.ModeSetgid|os.ModeSticky) != 0 {
		return fmt.Errorf("volume %s: mode %v: %w: only a directory's permission bits, setgid and sticky", name, o.Mode, ErrInvalidOption)
	}
	return nil
}

// checkQuota checks a quota against the backend that would enforce it.
func (s *Store) checkQuota(name string, quotaMiB int64) (Backend, error) {
	if quotaMiB == 0 {
		return s.dir, nil
	}
	q, why := s.quotaBackend()
	if q == nil {
		if os.Geteuid() != 0 {
			return nil, &NeedsRootError{
				Err: fmt.Errorf("volume %s: quota %d MiB: %w; an administrator can keep a volume with a quota for you, "+
					"in root's own store, and give this store a reference to it; as root: ", name, quotaMiB, why),
				Action: s.ownerAction(name, quotaMiB),
				Then:   "; after which you use it as any other volume",
			}
		}
		return nil, fmt.Errorf("volume %s: quota %d MiB: %w", name, quotaMiB, why)
	}
	limit := quotaMiB << 20
	if mb, ok := q.(interface{ MinLimit() int64 }); ok && limit < mb.MinLimit() {
		return nil, fmt.Errorf("volume %s: quota %d MiB: %w: below the %d MiB the %s backend's filesystem needs for itself", name, quotaMiB, ErrInvalidOption, (mb.MinLimit()+(1<<20)-1)>>20, q.Name())
	}
	if size, err := fsSize(s.root); err == nil && limit > size {
		return nil, fmt.Errorf("volume %s: quota %d MiB: %w: larger than the store's filesystem (%d MiB)", name, quotaMiB, ErrInvalidOption, size>>20)
	}
	return q, nil
}

// Ensure creates the volume with o, or returns the existing volume as it
// is (created = false; o is then ignored apart from its validation).
func (s *Store) Ensure(ctx context.Context, name string, o CreateOptions) (v *Volume, created bool, err error) {
	if err := s.validate(name, &o); err != nil {
		return nil, false, err
	}
	lk, err := s.lockName(ctx, name)
	if err != nil {
		return nil, false, fmt.Errorf("volume %s: %w", name, err)
	}
	defer s.unlockName(name, lk)
	return s.ensureLocked(ctx, name, o)
}

func (s *Store) ensureLocked(ctx context.Context, name string, o CreateOptions) (*Volume, bool, error) {
	s.cleanStale(ctx, name)
	md, err := s.readMeta(name)
	if err == nil {
		if md.Backend == backendDelegated {
			if err := s.checkRef(name, md); err != nil {
				return nil, false, err
			}
			return s.volume(name, md), false, nil
		}
		b, err := s.backend(md.Backend)
		if err == nil {
			err = b.Activate(ctx, filepath.Join(s.volDir(name), dataDir))
		}
		if err != nil {
			if os.Geteuid() != 0 && md.Backend == "loop" {
				return nil, false, &NeedsRootError{
					Err: fmt.Errorf("volume %s: activate: %w; it is an image an older lightbox loop-mounted in this store as root, "+
						"which root no longer does in a user's store: ask root to keep a new one for you with ", name, err),
					Action: s.ownerAction(name+"-new", md.QuotaMiB),
				}
			}
			return nil, false, fmt.Errorf("volume %s: activate: %w", name, err)
		}
		return s.volume(name, md), false, nil
	}
	if !errors.Is(err, errdefs.ErrNotFound) {
		return nil, false, err
	}
	md, err = s.create(ctx, name, o)
	if err != nil {
		return nil, false, err
	}
	return s.volume(name, md), true, nil
}

// create builds the volume in TmpDir and renames it into place. The
// caller holds the name lock.
func (s *Store) create(ctx context.Context, name string, o CreateOptions) (*meta, error) {
	b, err := s.checkQuota(name, o.QuotaMiB)
	if err != nil {
		return nil, err
	}
	uid, gid := o.UID, o.GID
	if uid < 0 {
		h, ok := s.m.HostUID(0)
		if !ok {
			return nil, fmt.Errorf("volume %s: the store's mapping has no root uid", name)
		}
		uid = int(h)
	}
	if gid < 0 {
		h, ok := s.m.HostGID(0)
		if !ok {
			return nil, fmt.Errorf("volume %s: the store's mapping has no root gid", name)
		}
		gid = int(h)
	}
	mode := o.Mode
	if mode == 0 {
		mode = 0o755
	}
	now := time.Now().UTC()
	md := &meta{Version: 1, Labels: maps.Clone(o.Labels), CreatedAt: now, LastUsedAt: now, QuotaMiB: o.QuotaMiB, Backend: b.Name(), Unfilled: true}
	if md.Labels == nil {
		md.Labels = map[string]string{}
	}
	tmp := filepath.Join(s.tmp, tmpCreate+name+"+"+randSuffix())
	if err := os.Mkdir(tmp, 0o711); err != nil {
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	ok := false
	defer func() {
		if !ok {
			if err := s.destroy(context.WithoutCancel(ctx), tmp); err != nil {
				// The creation's own error is returned; what stays in
				// TmpDir is cleanStale's on the next use of the name, or sweep's.
				s.log.Warn("volume: cannot undo a failed create", "volume", name, "path", tmp, "err", err)
			}
		}
	}()
	// meta.json first: a half-made volume left by a kill says which
	// backend must free it.
	if err := atomicfile.WriteJSON(filepath.Join(tmp, metaFile), md, 0o644); err != nil {
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, leaseFile), nil, 0o600); err != nil {
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	perm := uint32(mode.Perm())
	if mode&os.ModeSetgid != 0 {
		perm |= 0o2000
	}
	if mode&os.ModeSticky != 0 {
		perm |= 0o1000
	}
	if err := b.Create(ctx, filepath.Join(tmp, dataDir), o.QuotaMiB<<20, uid, gid, perm); err != nil {
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	if err := syncDir(tmp); err != nil {
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	if testHookBeforeRename != nil {
		testHookBeforeRename()
	}
	if err := os.Rename(tmp, s.volDir(name)); err != nil {
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	ok = true
	if err := syncDir(s.root); err != nil {
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	// A backend that records paths (XFS's /etc/projects) learns the final one.
	if err := b.Activate(ctx, filepath.Join(s.volDir(name), dataDir)); err != nil {
		s.log.Warn("volume created but not activated", "volume", name, "err", err)
	}
	s.log.Info("volume created", "volume", name, "backend", b.Name(), "quota_mib", o.QuotaMiB)
	return md, nil
}

// destroy frees a volume directory that is out of the namespace (in
// TmpDir): the backend's resources, then the tree.
func (s *Store) destroy(ctx context.Context, dir string) error {
	var md meta
	data, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err == nil {
		err = json.Unmarshal(data, &md)
	}
	if err == nil && md.Backend != "" {
		b, berr := s.backend(md.Backend)
		if berr != nil {
			return fmt.Errorf("free %s: %w", dir, berr)
		}
		if err := b.Remove(ctx, filepath.Join(dir, dataDir)); err != nil {
			return fmt.Errorf("free %s: %w", dir, err)
		}
	}
	if err := rmtree.RemoveAll(ctx, dir, s.m); err != nil {
		return fmt.Errorf("free %s: %w", dir, err)
	}
	return nil
}

// cleanStale frees what a killed create or remove of name left in TmpDir,
// and the temporary file of a meta.json write (Acquire's record of the
// use) that was killed before its rename. The caller holds the name lock,
// so nothing there is in progress.
func (s *Store) cleanStale(ctx context.Context, name string) {
	// A valid name holds no glob metacharacters.
	if temps := atomicfile.Leftovers(filepath.Join(s.volDir(name), metaFile)); len(temps) > 0 {
		for _, p := range temps {
			_ = os.Remove(p) // a dead write's: one left is tried again by the next use
		}
		s.log.Info("volume: removed what an interrupted write left", "volume", name, "files", len(temps))
	}
	for _, pfx := range []string{tmpCreate, tmpRemove} {
		// A valid name holds no glob metacharacters.
		matches, _ := filepath.Glob(filepath.Join(s.tmp, pfx+name+"+*"))
		for _, d := range matches {
			if err := s.destroy(ctx, d); err != nil {
				s.log.Warn("volume: cannot clean what an interrupted operation left", "volume", name, "path", d, "err", err)
			} else {
				s.log.Info("volume: cleaned what an interrupted operation left", "volume", name, "path", d)
			}
		}
	}
}

// sweep cleans every stale TmpDir entry whose name is not locked now.
func (s *Store) sweep(ctx context.Context) {
	ents, err := os.ReadDir(s.tmp)
	if err != nil {
		return
	}
	seen := map[string]bool{}
	for _, e := range ents {
		n := e.Name()
		var rest string
		switch {
		case strings.HasPrefix(n, tmpCreate):
			rest = n[len(tmpCreate):]
		case strings.HasPrefix(n, tmpRemove):
			rest = n[len(tmpRemove):]
		default:
			continue
		}
		name, _, ok := strings.Cut(rest, "+")
		if !ok || !names.Valid(name) || seen[name] {
			continue
		}
		seen[name] = true
		lk, err := s.tryLockName(name)
		if err != nil {
			continue
		}
		s.cleanStale(ctx, name)
		s.unlockName(name, lk)
	}
}

// ownerAction is root keeping volume name with a quota, in its own
// default store, for this store's user.
func (s *Store) ownerAction(name string, quotaMiB int64) RootAction {
	return RootAction{Op: RootCreate, Owner: currentUser(), OwnerRoot: filepath.Dir(s.root), Volume: name, QuotaMiB: quotaMiB}
}

func currentUser() string {
	uid := strconv.Itoa(os.Getuid())
	if u, err := user.LookupId(uid); err == nil {
		return u.Username
	}
	return uid
}

func randSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error (it crashes the program instead)
	return hex.EncodeToString(b[:])
}

// readMeta reads name's meta.json; errdefs.ErrNotFound when the volume
// does not exist.
func (s *Store) readMeta(name string) (*meta, error) {
	data, err := os.ReadFile(filepath.Join(s.volDir(name), metaFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("volume %s: %w", name, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("volume %s: %w", name, err)
	}
	var md meta
	if err := json.Unmarshal(data, &md); err != nil {
		return nil, fmt.Errorf("volume %s: %s: %w", name, metaFile, err)
	}
	if md.Labels == nil {
		md.Labels = map[string]string{}
	}
	return &md, nil
}

func (s *Store) volume(name string, md *meta) *Volume {
	if md.Backend == backendDelegated && md.Delegated != nil {
		return &Volume{
			Name:       name,
			Labels:     maps.Clone(md.Labels),
			CreatedAt:  md.CreatedAt,
			LastUsedAt: md.LastUsedAt,
			QuotaMiB:   md.QuotaMiB,
			Backend:    md.Backend,
			DataDir:    md.Delegated.DataDir,
		}
	}
	return &Volume{
		Name:       name,
		Labels:     maps.Clone(md.Labels),
		CreatedAt:  md.CreatedAt,
		LastUsedAt: md.LastUsedAt,
		QuotaMiB:   md.QuotaMiB,
		Backend:    md.Backend,
		DataDir:    filepath.Join(s.volDir(name), dataDir),
	}
}

// usage fills v's usage from its backend, or by walking the tree when
// walk is set and the backend does not know.
func (s *Store) usage(ctx context.Context, v *Volume, md *meta, walk bool) {
	if md.Backend == backendDelegated {
		if md.Delegated != nil {
			v.UsedBytes, v.UsageKnown = refUsage(v.DataDir, md.Delegated.Backend)
		}
		return
	}
	b, err := s.backend(v.Backend)
	if err == nil {
		used, known, err := b.Usage(ctx, v.DataDir)
		if err == nil && known {
			v.UsedBytes, v.UsageKnown = used, true
			return
		}
	}
	if walk {
		v.UsedBytes, v.UsageKnown = duTree(v.DataDir)
	}
}

// Get returns the named volume with the usage its backend knows.
func (s *Store) Get(ctx context.Context, name string) (*Volume, error) {
	return s.Inspect(ctx, name, false)
}

// Inspect returns the named volume; withSize computes its usage by walking
// the tree where the backend does not know it.
func (s *Store) Inspect(ctx context.Context, name string, withSize bool) (*Volume, error) {
	if err := names.Check("volume", name); err != nil {
		return nil, err
	}
	md, err := s.readMeta(name)
	if err != nil {
		return nil, err
	}
	v := s.volume(name, md)
	s.usage(ctx, v, md, withSize)
	return v, nil
}

// List returns every volume, sorted by name. withSize computes usage by
// walking the tree where the backend does not know it.
func (s *Store) List(ctx context.Context, withSize bool) ([]Volume, error) {
	ents, err := os.ReadDir(s.root)
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	out := []Volume{}
	for _, e := range ents {
		if !e.IsDir() || !names.Valid(e.Name()) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("list volumes: %w", err)
		}
		md, err := s.readMeta(e.Name())
		if errors.Is(err, errdefs.ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("list volumes: %w", err)
		}
		v := s.volume(e.Name(), md)
		s.usage(ctx, v, md, withSize)
		out = append(out, *v)
	}
	slices.SortFunc(out, func(a, b Volume) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Lease keeps a volume from being removed while a sandbox uses it. It is a
// shared flock on the volume's lease file: hand File to the sandbox's
// init, which keeps the descriptor for the sandbox's life, so the lease
// dies with the sandbox whatever kills it. Close releases this process's
// descriptor.
type Lease struct {
	lk *lockfile.Lock
}

// File returns the lease's descriptor, to pass to the sandbox's init.
func (l *Lease) File() *os.File { return l.lk.File() }

// Close closes this process's descriptor; the lease lasts while any
// process still holds a duplicate of it.
func (l *Lease) Close() error { return l.lk.Close() }

// Acquire creates the volume on first use (with o), takes a lease on it,
// makes sure it is usable (mounted) and records the use in lastUsedAt.
func (s *Store) Acquire(ctx context.Context, name string, o CreateOptions) (*Lease, *Volume, error) {
	if err := s.validate(name, &o); err != nil {
		return nil, nil, err
	}
	lk, err := s.lockName(ctx, name)
	if err != nil {
		return nil, nil, fmt.Errorf("volume %s: %w", name, err)
	}
	defer s.unlockName(name, lk)
	l, v, _, err := s.acquireLocked(ctx, name, o)
	return l, v, err
}

// Fill is the right, and the duty, to fill a volume that was never filled
// with what a sandbox's image has at the volume's mount point (docker's
// and podman's copy-up of a new volume). AcquireToFill hands out one at a
// time per volume, across processes: it is an exclusive flock on the
// volume's fill lock, held until Done or Close.
type Fill struct {
	s      *Store
	name   string
	lk     *lockfile.Lock
	record []byte
}

// Record is what the process that fills the volume writes at the start
// of File once the volume is filled, so that the fill stands even when
// its caller is killed before Done: the next AcquireToFill finds it and
// records the volume filled (see AcquireToFill). It names the volume's
// creation, so that a record a removed volume of the same name left is
// not taken for this one's.
func (f *Fill) Record() []byte { return f.record }

// fillRecord is Fill.Record for the volume created at created.
func fillRecord(created time.Time) []byte {
	return []byte("filled " + created.UTC().Format(time.RFC3339Nano) + "\n")
}

// Done records that the volume was filled (it is never filled again, even
// once emptied) and releases the fill lock.
func (f *Fill) Done(ctx context.Context) error {
	defer func() { _ = f.Close() }() // a lock file's descriptor, nothing written through it
	lk, err := f.s.lockName(ctx, f.name)
	if err != nil {
		return fmt.Errorf("volume %s: record the fill: %w", f.name, err)
	}
	defer f.s.unlockName(f.name, lk)
	return f.s.recordFilled(f.name)
}

// recordFilled marks the volume filled in its meta.json (never filled
// again), under its name lock, which the caller holds.
func (s *Store) recordFilled(name string) error {
	md, err := s.readMeta(name)
	if err == nil && md.Unfilled {
		md.Unfilled = false
		err = atomicfile.WriteJSON(filepath.Join(s.volDir(name), metaFile), md, 0o644)
	}
	if err != nil {
		return fmt.Errorf("volume %s: record the fill: %w", name, err)
	}
	return nil
}

// File returns the fill lock's descriptor, for the process that fills
// the volume to hold while it copies (a sandbox's init), so that the
// lock outlives a caller killed meanwhile, and to write Record through
// once it has filled the volume.
func (f *Fill) File() *os.File { return f.lk.File() }

// Close releases the fill lock, leaving the volume unfilled unless Done
// ran: the next AcquireToFill of it gets the Fill. It may be called again.
func (f *Fill) Close() error {
	if f.lk == nil {
		return nil
	}
	lk := f.lk
	f.lk = nil
	return lk.Close()
}

// AcquireToFill is Acquire for a mount that fills a new volume from the
// sandbox's image: when the volume was never filled it returns a Fill
// too, and the caller fills the volume (if the image has something
// there and the volume is empty), then calls Done, or Close when it
// did not fill it. While one caller holds the Fill, another's
// AcquireToFill of the volume waits (for ctx), so that two sandboxes
// launched at once never both fill it: the second gets no Fill once
// the first's is Done, or the Fill the first gave back unused.
//
// A Fill whose filler wrote its Record but whose Done never ran (the
// caller was killed after the fill) is not handed out again: the
// volume is recorded filled here, and is never filled again, even once
// emptied.
func (s *Store) AcquireToFill(ctx context.Context, name string, o CreateOptions) (*Lease, *Volume, *Fill, error) {
	if err := s.validate(name, &o); err != nil {
		return nil, nil, nil, err
	}
	fillPath := filepath.Join(s.locks, name+"@fill.lock")
	for {
		lk, err := s.lockName(ctx, name)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("volume %s: %w", name, err)
		}
		l, v, unfilled, err := s.acquireLocked(ctx, name, o)
		if err != nil {
			s.unlockName(name, lk)
			return nil, nil, nil, err
		}
		if !unfilled {
			s.unlockName(name, lk)
			return l, v, nil, nil
		}
		// The fill lock is taken under the name lock but never waited
		// for under it: Done takes the name lock while holding the
		// fill lock.
		flk, err := lockfile.TryExclusive(fillPath)
		if err == nil {
			fill := &Fill{s: s, name: name, lk: flk, record: fillRecord(v.CreatedAt)}
			filled, err := s.takeRecord(name, fill)
			s.unlockName(name, lk)
			switch {
			case err != nil:
				_ = fill.Close() // a lock file's descriptor; the volume stays unfilled
				_ = l.Close()    // a shared flock's descriptor, nothing written
				return nil, nil, nil, err
			case filled:
				_ = fill.Close() // as above: Done's work is done
				return l, v, nil, nil
			}
			return l, v, fill, nil
		}
		s.unlockName(name, lk)
		_ = l.Close() // a shared flock's descriptor, nothing written
		if !errors.Is(err, lockfile.ErrLocked) {
			return nil, nil, nil, fmt.Errorf("volume %s: fill lock: %w", name, err)
		}
		s.log.Debug("volume: waiting for another sandbox to fill it", "volume", name)
		flk, err = lockfile.Exclusive(ctx, fillPath)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("volume %s: wait for another sandbox to fill it: %w", name, err)
		}
		_ = flk.Close() // the other's fill is over: look again
	}
}

// takeRecord, under the volume's name lock and with its fill lock,
// reads what an earlier Fill's filler wrote in the fill lock: when it is
// this volume's Record, the fill is recorded, as Done would have, and
// filled is true; else the lock file is emptied for fill's filler.
func (s *Store) takeRecord(name string, fill *Fill) (filled bool, _ error) {
	f := fill.lk.File()
	got := make([]byte, len(fill.record)+1)
	n, err := f.ReadAt(got, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("volume %s: read the fill lock: %w", name, err)
	}
	if bytes.Equal(got[:n], fill.record) {
		if err := s.recordFilled(name); err != nil {
			return false, err
		}
		s.log.Debug("volume: a fill its launcher did not record, recorded", "volume", name)
		return true, nil
	}
	if n > 0 {
		if err := f.Truncate(0); err != nil {
			return false, fmt.Errorf("volume %s: empty the fill lock: %w", name, err)
		}
	}
	return false, nil
}

// Unfilled reports whether AcquireToFill would hand out a Fill for the
// volume now: it was never filled, or does not exist yet (a volume is
// made unfilled). Read without the name lock: a hint.
func (s *Store) Unfilled(name string) (bool, error) {
	if err := names.Check("volume", name); err != nil {
		return false, err
	}
	md, err := s.readMeta(name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return md.Unfilled, nil
}

// acquireLocked is Acquire under the name lock; unfilled is the volume's
// meta's (see AcquireToFill).
func (s *Store) acquireLocked(ctx context.Context, name string, o CreateOptions) (_ *Lease, _ *Volume, unfilled bool, _ error) {
	v, _, err := s.ensureLocked(ctx, name, o)
	if err != nil {
		return nil, nil, false, err
	}
	// Only an InUse probe (under the name lock too) or Remove can hold it
	// exclusively, and both hold the name lock: this does not wait.
	l, err := lockfile.Shared(ctx, filepath.Join(s.volDir(name), leaseFile))
	if err != nil {
		return nil, nil, false, fmt.Errorf("volume %s: lease: %w", name, err)
	}
	md, err := s.readMeta(name)
	if err == nil {
		md.LastUsedAt = time.Now().UTC()
		err = atomicfile.WriteJSON(filepath.Join(s.volDir(name), metaFile), md, 0o644)
	}
	if err != nil {
		l.Close()
		return nil, nil, false, fmt.Errorf("volume %s: record use: %w", name, err)
	}
	v.LastUsedAt = md.LastUsedAt
	return &Lease{lk: l}, v, md.Unfilled, nil
}

// InUse reports whether any lease on the volume is held.
func (s *Store) InUse(ctx context.Context, name string) (bool, error) {
	if err := names.Check("volume", name); err != nil {
		return false, err
	}
	lk, err := s.lockName(ctx, name)
	if err != nil {
		return false, fmt.Errorf("volume %s: %w", name, err)
	}
	defer s.unlockName(name, lk)
	if _, err := s.readMeta(name); err != nil {
		return false, err
	}
	return lockfile.IsLocked(filepath.Join(s.volDir(name), leaseFile))
}

// Remove deletes the volume and its contents. It fails with
// errdefs.ErrInUse while a lease is held and errdefs.ErrNotFound for an
// unknown volume. The volume leaves the namespace (renamed into TmpDir)
// before anything is deleted; if freeing it then fails, the name is free
// and the error says what is left, which the next operation on the name
// retries.
func (s *Store) Remove(ctx context.Context, name string) error {
	if err := names.Check("volume", name); err != nil {
		return err
	}
	lk, err := s.lockName(ctx, name)
	if err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	defer s.unlockName(name, lk)
	s.cleanStale(ctx, name)
	md, err := s.readMeta(name)
	if err != nil {
		return fmt.Errorf("remove %w", err)
	}
	if err := s.checkRemovable(name, md); err != nil {
		return err
	}
	lease, err := lockfile.TryExclusive(filepath.Join(s.volDir(name), leaseFile))
	if errors.Is(err, lockfile.ErrLocked) {
		return fmt.Errorf("remove volume %s: %w", name, errdefs.ErrInUse)
	}
	if err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	trash := filepath.Join(s.tmp, tmpRemove+name+"+"+randSuffix())
	err = os.Rename(s.volDir(name), trash)
	lease.Close()
	if err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	if err := syncDir(s.root); err != nil {
		// The rename stands; only its durability across a power cut is at stake.
		s.log.Warn("volume: removal not yet durable", "volume", name, "err", err)
	}
	if err := s.destroy(ctx, trash); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	s.log.Info("volume removed", "volume", name)
	return nil
}

// Prune removes the unused volumes that match f and returns their names
// (with dryRun, only the names).
func (s *Store) Prune(ctx context.Context, f PruneFilter, dryRun bool) ([]string, error) {
	for _, l := range f.Labels {
		if err := CheckLabelFilter(l); err != nil {
			return nil, fmt.Errorf("prune volumes: %w", err)
		}
	}
	vols, err := s.List(ctx, false)
	if err != nil {
		return nil, err
	}
	var out []string
	var errs []error
	for _, v := range vols {
		if !MatchLabels(v.Labels, f.Labels) || (!f.Until.IsZero() && !v.CreatedAt.Before(f.Until)) {
			continue
		}
		if dryRun {
			used, err := s.InUse(ctx, v.Name)
			if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
				errs = append(errs, err)
			}
			if err == nil && !used {
				out = append(out, v.Name)
			}
			continue
		}
		err := s.Remove(ctx, v.Name)
		switch {
		case err == nil:
			out = append(out, v.Name)
		case errors.Is(err, errdefs.ErrInUse), errors.Is(err, errdefs.ErrNotFound):
		default:
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// MatchLabels reports whether labels has every filter: "K" (any value)
// or "K=V".
func MatchLabels(labels map[string]string, filters []string) bool {
	for _, f := range filters {
		k, want, hasV := strings.Cut(f, "=")
		got, ok := labels[k]
		if !ok || (hasV && got != want) {
			return false
		}
	}
	return true
}

func (s *Store) lockPath(name string) string { return filepath.Join(s.locks, name+".lock") }

// LockCacheWriter waits for, and takes, volume name's writer lock: a
// build step that mounts the volume as a cache with sharing=locked holds
// it while it runs, so such steps (of any process) use the cache in
// turn, as apt's caches need; waiting, when not nil, is called before it
// waits for another holder. The volume need not exist; the lock file
// (named with an '@', which no volume name has) stays for the next one.
func (s *Store) LockCacheWriter(ctx context.Context, name string, waiting func()) (*lockfile.Lock, error) {
	if err := names.Check("volume", name); err != nil {
		return nil, err
	}
	p := filepath.Join(s.locks, name+"@writer.lock")
	lk, err := lockfile.TryExclusive(p)
	if errors.Is(err, lockfile.ErrLocked) {
		if waiting != nil {
			waiting()
		}
		lk, err = lockfile.Exclusive(ctx, p)
	}
	if err != nil {
		return nil, fmt.Errorf("volume %s: writer lock: %w", name, err)
	}
	return lk, nil
}

// lockName takes the per-name lock. Remove deletes the lock file while
// holding it, so a lock on a file that is no longer the one at the path is
// dropped and taken again.
func (s *Store) lockName(ctx context.Context, name string) (*lockfile.Lock, error) {
	for {
		lk, err := lockfile.Exclusive(ctx, s.lockPath(name))
		if err != nil {
			return nil, err
		}
		if sameFile(lk.File(), s.lockPath(name)) {
			return lk, nil
		}
		lk.Close()
	}
}

// unlockName releases the per-name lock. When no volume has the name, the
// lock file goes too, while held: lockName notices and retries.
func (s *Store) unlockName(name string, lk *lockfile.Lock) {
	if _, err := os.Lstat(s.volDir(name)); errors.Is(err, fs.ErrNotExist) {
		_ = os.Remove(s.lockPath(name)) // an empty file; one left is reused by the next lockName of the name
	}
	lk.Close()
}

func (s *Store) tryLockName(name string) (*lockfile.Lock, error) {
	lk, err := lockfile.TryExclusive(s.lockPath(name))
	if err != nil {
		return nil, err
	}
	if !sameFile(lk.File(), s.lockPath(name)) {
		lk.Close()
		return nil, lockfile.ErrLocked
	}
	return lk, nil
}

func sameFile(f *os.File, path string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Stat(path)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // a directory opened read-only: Sync's error is the one that counts
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
