package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/lockfile"
	"github.com/beamhop/lightbox/internal/names"
	"github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/umoci/oci/cas/dir"
	"github.com/opencontainers/umoci/oci/casext"
	"golang.org/x/sys/unix"
)

// Options configure Open.
type Options struct {
	// Root is the store's directory ($ROOT/snapshots); required.
	Root string
	// TmpDir holds temporary directories; it must be on the same
	// filesystem as Root. "" = <Root>/tmp.
	TmpDir string
	// Mapping is the store's id mapping: which host ids the files of
	// unpacked layers are owned by. The zero value is idmap.Identity().
	Mapping idmap.Mapping
	// Logger receives structured records; nil discards them.
	Logger *slog.Logger
	// Progress, when non-nil, is told how transfers of blobs of 16 MiB
	// or more go while importing, exporting or unpacking (at most every
	// 100 ms per transfer, and at its end). It is called from the
	// goroutines doing the work, for two transfers at once when two
	// layers unpack in parallel, so it must be safe for concurrent use.
	Progress func(Progress)
}

// Store is an open snapshot store. It is safe for concurrent use.
type Store struct {
	root, tmp string
	mapping   idmap.Mapping
	log       *slog.Logger
	progress  func(Progress)
}

// Snapshot describes a snapshot in the store.
type Snapshot struct {
	// Name is the snapshot's name (its tag in the OCI layout).
	Name string `json:"name"`
	// Digest is the digest of its OCI image manifest.
	Digest string `json:"digest"`
	// Layers are the absolute paths of its unpacked layer directories,
	// bottom first (overlayfs wants them top first as lowerdir), each
	// once: a layer the image lists several times (two steps that changed
	// nothing, each an empty layer) is kept at its topmost place only,
	// for overlayfs refuses one directory as two layers (ELOOP) and a
	// lower copy shows nothing the upper one does not hide.
	Layers []string `json:"layers"`
	// LayerCount is the number of layers the image's manifest lists
	// (len(Layers) or more).
	LayerCount int `json:"layerCount"`
	// Config is the part of the image configuration a sandbox applies.
	Config Config `json:"config"`
	// CreatedAt is when the snapshot was imported into this store.
	CreatedAt time.Time `json:"createdAt"`
	// Size is its unpacked size in bytes: the sum of its layers'
	// uncompressed tar sizes, whatever form they are stored in.
	Size int64 `json:"size"`
	// StoredSize is the size in bytes of its blobs as the store holds
	// them (manifest, config and layers, compressed or not).
	StoredSize int64 `json:"storedSize"`
}

// Config is the runtime part of a snapshot's image configuration.
type Config struct {
	// Env is "KEY=value" entries for every process.
	Env []string `json:"env,omitempty"`
	// WorkingDir is the default working directory ("" = /).
	WorkingDir string `json:"workingDir,omitempty"`
	// User is the default user: "name", "uid", "uid:gid" ("" = root).
	User string `json:"user,omitempty"`
	// Entrypoint and Cmd make the default main process, as in docker.
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	// Labels are the image's labels.
	Labels map[string]string `json:"labels,omitempty"`
	// StopSignal is the image's STOPSIGNAL as written ("SIGINT", "2"; ""
	// = none): what `stop` sends the main command first.
	StopSignal string `json:"stopSignal,omitempty"`
}

// annotationCreated records, on a snapshot's index entry, when it was
// imported.
const annotationCreated = "dev.lightbox.snapshot.created"

// Open opens the store at opts.Root, creating it if needed. Off Linux it
// returns an error wrapping errors.ErrUnsupported.
func Open(opts Options) (*Store, error) {
	if err := checkPlatform(); err != nil {
		return nil, err
	}
	if opts.Root == "" {
		return nil, errors.New("open snapshot store: no root given")
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	tmp := opts.TmpDir
	if tmp == "" {
		tmp = filepath.Join(root, "tmp")
	}
	if tmp, err = filepath.Abs(tmp); err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	m := opts.Mapping
	if len(m.UIDs) == 0 {
		m = idmap.Identity()
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{root: root, tmp: tmp, mapping: m, log: log, progress: opts.Progress}
	for _, d := range []string{root, tmp, s.layersDir(), filepath.Join(root, "locks"), filepath.Join(root, "leases")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open snapshot store %s: %w", root, err)
		}
	}
	var rst, tst unix.Stat_t
	if err := unix.Stat(root, &rst); err != nil {
		return nil, fmt.Errorf("open snapshot store: stat %s: %w", root, err)
	}
	if err := unix.Stat(tmp, &tst); err != nil {
		return nil, fmt.Errorf("open snapshot store: stat %s: %w", tmp, err)
	}
	if rst.Dev != tst.Dev {
		return nil, fmt.Errorf("open snapshot store %s: temporary directory %s is on another filesystem: layers are renamed from it into place", root, tmp)
	}
	// The layout is created once, under the index lock.
	if _, err := os.Stat(filepath.Join(s.ociDir(), ispec.ImageLayoutFile)); errors.Is(err, os.ErrNotExist) {
		lk, err := lockfile.Exclusive(context.Background(), s.indexLock()) // a short local wait; Open takes no context
		if err != nil {
			return nil, fmt.Errorf("open snapshot store %s: %w", root, err)
		}
		defer lk.Close()
		if _, err := os.Stat(filepath.Join(s.ociDir(), ispec.ImageLayoutFile)); errors.Is(err, os.ErrNotExist) {
			// dir.Create refuses an existing directory: a crash may have
			// left a partial one, which holds nothing of value yet.
			if err := os.RemoveAll(s.ociDir()); err != nil {
				return nil, fmt.Errorf("open snapshot store %s: %w", root, err)
			}
			if err := dir.Create(s.ociDir()); err != nil {
				return nil, fmt.Errorf("open snapshot store %s: create OCI layout: %w", root, err)
			}
		}
	}
	return s, nil
}

func (s *Store) ociDir() string    { return filepath.Join(s.root, "oci") }
func (s *Store) layersDir() string { return filepath.Join(s.root, "layers") }
func (s *Store) indexLock() string { return filepath.Join(s.root, "index.lock") }
func (s *Store) gcLock() string    { return filepath.Join(s.root, "gc.lock") }
func (s *Store) tmpLock() string   { return filepath.Join(s.root, "tmp.lock") }
func (s *Store) leaseFile(name string) string {
	return filepath.Join(s.root, "leases", name+".lock")
}

// imageLeaseFile is the lease file of the image (tagged or a build-cache
// entry) with manifest digest d: a file name no snapshot name can take
// (names have no "@").
func (s *Store) imageLeaseFile(d digest.Digest) string {
	return filepath.Join(s.root, "leases", "@"+d.Encoded()+".lock")
}
func (s *Store) layerLock(d digest.Digest) string {
	return filepath.Join(s.root, "locks", d.Encoded()+".lock")
}

// LayerDir returns the directory layer blob d is unpacked into.
func (s *Store) LayerDir(d digest.Digest) string {
	return filepath.Join(s.layersDir(), d.Encoded())
}

// engine opens the store's OCI layout. Close it: until then umoci's log
// records go to the store's Logger too.
func (s *Store) engine() (casext.Engine, error) {
	e, err := dir.Open(s.ociDir())
	if err != nil {
		return casext.Engine{}, fmt.Errorf("open OCI layout %s: %w", s.ociDir(), err)
	}
	return casext.NewEngine(loggedEngine{Engine: e, release: useUmociLog(s.log)}), nil
}

// Get returns the snapshot called name; errdefs.ErrNotFound if there is
// none.
func (s *Store) Get(ctx context.Context, name string) (*Snapshot, error) {
	if err := names.Check("snapshot", name); err != nil {
		return nil, err
	}
	e, err := s.engine()
	if err != nil {
		return nil, err
	}
	defer func() { _ = e.Close() }() // every write was checked; Close removes the .umoci-* dir writes made, and one it leaves (unlocked by then) goes with the next gc's umoci GC
	idx, err := e.GetIndex(ctx)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", name, err)
	}
	for _, d := range idx.Manifests {
		if d.Annotations[ispec.AnnotationRefName] == name {
			return s.describe(ctx, e, name, d)
		}
	}
	return nil, fmt.Errorf("snapshot %s: %w", name, errdefs.ErrNotFound)
}

// List returns every snapshot, sorted by name.
func (s *Store) List(ctx context.Context) ([]Snapshot, error) {
	e, err := s.engine()
	if err != nil {
		return nil, err
	}
	defer func() { _ = e.Close() }() // every write was checked; Close removes the .umoci-* dir writes made, and one it leaves (unlocked by then) goes with the next gc's umoci GC
	idx, err := e.GetIndex(ctx)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	out := []Snapshot{}
	for _, d := range idx.Manifests {
		name, ok := d.Annotations[ispec.AnnotationRefName]
		if !ok || !names.Valid(name) {
			continue
		}
		sn, err := s.describe(ctx, e, name, d)
		if errors.Is(err, os.ErrNotExist) {
			continue // removed (and collected) since the index was read
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *sn)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// readJSON reads a blob of the store through a verifying reader into v.
func readJSON(ctx context.Context, e casext.Engine, d ispec.Descriptor, v any) error {
	r, err := e.GetVerifiedBlob(ctx, d)
	if err != nil {
		return fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	data, err := io.ReadAll(io.LimitReader(r, maxJSON+1))
	if cerr := r.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	if len(data) > maxJSON {
		return fmt.Errorf("blob %s: larger than %d bytes", d.Digest, maxJSON)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	return nil
}

// maxJSON caps manifests, configs and indexes that are read into memory.
const maxJSON = 32 << 20

func (s *Store) describe(ctx context.Context, e casext.Engine, name string, d ispec.Descriptor) (*Snapshot, error) {
	var m ispec.Manifest
	if err := readJSON(ctx, e, d, &m); err != nil {
		return nil, fmt.Errorf("snapshot %s: manifest: %w", name, err)
	}
	var c ispec.Image
	if err := readJSON(ctx, e, m.Config, &c); err != nil {
		return nil, fmt.Errorf("snapshot %s: config: %w", name, err)
	}
	r := recordOf(d.Digest, &m, &c)
	sn := s.snapshotOfRecord(name, d, r)
	if _, err := os.Lstat(s.launchFile(d.Digest)); errors.Is(err, os.ErrNotExist) {
		// Here too (an import ends here), so that the first launch reads
		// the record as well; describe records layer sizes likewise. One
		// there but torn is the next launch's to rewrite (resolve).
		if err := s.writeLaunchRecord(d.Digest, r); err != nil {
			s.log.Debug("record the snapshot for launches", "snapshot", name, "err", err) // a cache: the first launch writes it
		}
	}
	for _, l := range m.Layers {
		n, err := s.unpackedSize(ctx, e, l)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", name, err)
		}
		sn.Size += n
	}
	return sn, nil
}

// snapshotOfRecord is the Snapshot that the manifest with descriptor d
// makes, from its launch record r, without its unpacked Size.
func (s *Store) snapshotOfRecord(name string, d ispec.Descriptor, r *launchRecord) *Snapshot {
	sn := &Snapshot{
		Name:       name,
		Digest:     d.Digest.String(),
		Layers:     make([]string, 0, len(r.Layers)),
		Config:     r.Config.config(),
		StoredSize: d.Size + r.ConfigSize,
	}
	if t, err := time.Parse(time.RFC3339Nano, d.Annotations[annotationCreated]); err == nil {
		sn.CreatedAt = t
	}
	top := make(map[string]int, len(r.Layers)) // digest: its topmost index
	for i, l := range r.Layers {
		top[l.Digest] = i
	}
	for i, l := range r.Layers {
		if top[l.Digest] == i { // a blob is stored once, too
			sn.Layers = append(sn.Layers, s.LayerDir(digest.Digest(l.Digest)))
			sn.StoredSize += l.Size
		}
	}
	sn.LayerCount = len(r.Layers)
	return sn
}

// resolve is Get for a launch: the same index entry (through the names'
// cache, refs.go), then the manifest's launch record (launchrec.go) or,
// the first time, the manifest and config read straight from the
// layout's files (no umoci engine) with each blob's size and digest
// checked as umoci checks them; without the unpacked Size (which may mean
// reading every layer). Called under the index lock.
func (s *Store) resolve(name string) (*Snapshot, error) {
	d, err := s.lookupRef(name)
	if err != nil {
		return nil, err
	}
	if r, ok := s.readLaunchRecord(d.Digest); ok {
		return s.snapshotOfRecord(name, d, r), nil
	}
	var m ispec.Manifest
	if err := s.readBlobJSON(d, &m); err != nil {
		return nil, fmt.Errorf("snapshot %s: manifest: %w", name, err)
	}
	var c ispec.Image
	if err := s.readBlobJSON(m.Config, &c); err != nil {
		return nil, fmt.Errorf("snapshot %s: config: %w", name, err)
	}
	r := recordOf(d.Digest, &m, &c)
	if err := s.writeLaunchRecord(d.Digest, r); err != nil {
		s.log.Debug("record the snapshot for launches", "snapshot", name, "err", err) // a cache: the next launch writes it
	}
	return s.snapshotOfRecord(name, d, r), nil
}

// readBlobJSON reads blob d of the layout into v, checking its size and
// digest (what umoci's verified reader checks).
func (s *Store) readBlobJSON(d ispec.Descriptor, v any) error {
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	if d.Size < 0 || d.Size > maxJSON {
		return fmt.Errorf("blob %s: size %d: not 0 to %d bytes", d.Digest, d.Size, maxJSON)
	}
	path := filepath.Join(s.ociDir(), "blobs", string(d.Digest.Algorithm()), d.Digest.Encoded())
	data, err := readCapped(path)
	if err != nil {
		return err
	}
	if int64(len(data)) != d.Size {
		return fmt.Errorf("%s: %d bytes, want %d", path, len(data), d.Size)
	}
	if got := d.Digest.Algorithm().FromBytes(data); got != d.Digest {
		return fmt.Errorf("%s: digest %s, want %s", path, got, d.Digest)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Lease is a held claim on a snapshot: while any lease on it is held,
// Remove (and a replacing Import) fail with errdefs.ErrInUse. It is a
// shared flock on a file of the store; a sandbox's init keeps File open
// for the sandbox's life, so the claim outlives the process that took it
// and dies with the sandbox.
type Lease struct{ lk *lockfile.Lock }

// File returns the locked file to hand to the process that should keep
// the lease (as an inherited descriptor).
func (l *Lease) File() *os.File { return l.lk.File() }

// Close releases this process's hold of the lease (a child that inherited
// File keeps it).
func (l *Lease) Close() error { return l.lk.Close() }

// Lease takes a lease on the snapshot called name and returns it with the
// snapshot, less its Size (0 here: it may cost reading every layer; Get
// has it).
func (s *Store) Lease(ctx context.Context, name string) (*Lease, *Snapshot, error) {
	if err := names.Check("snapshot", name); err != nil {
		return nil, nil, err
	}
	// Under the index lock, so that Remove (which deletes lease files
	// under it) cannot race with the open. Shared: what changes the index
	// or removes lease files holds it exclusively, and launches need not
	// wait for each other.
	ilk, err := lockfile.Shared(ctx, s.indexLock())
	if err != nil {
		return nil, nil, fmt.Errorf("lease snapshot %s: %w", name, err)
	}
	defer ilk.Close()
	sn, err := s.resolve(name)
	if err != nil {
		return nil, nil, err
	}
	for _, l := range sn.Layers {
		if _, err := os.Stat(l); err != nil {
			return nil, nil, fmt.Errorf("lease snapshot %s: layer %s: %w", name, l, err)
		}
	}
	lk, err := lockfile.Shared(ctx, s.leaseFile(name))
	if err != nil {
		return nil, nil, fmt.Errorf("lease snapshot %s: %w", name, err)
	}
	return &Lease{lk: lk}, sn, nil
}

// checkUnleased fails with ErrInUse when a lease on name is held; called
// under the index lock. It removes an unheld lease file.
func (s *Store) checkUnleased(name string) error {
	held, err := leaseHeld(s.leaseFile(name))
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", name, err)
	}
	if held {
		return fmt.Errorf("snapshot %s: a sandbox or a build uses it: %w", name, errdefs.ErrInUse)
	}
	return nil
}

// leaseHeld says whether a lease on the lease file path is held; called
// under the index lock held exclusively, so that no lease is taken
// meanwhile. It removes an unheld lease file (an empty file: one left
// would be reused by the next lease).
func leaseHeld(path string) (bool, error) {
	lk, err := lockfile.TryExclusive(path)
	if errors.Is(err, lockfile.ErrLocked) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	_ = os.Remove(path) // see above: a file left is reused
	return false, lk.Close()
}

// gcImageLeases removes the lease files of images (LeaseImage: a build
// step's parent, by manifest digest) whose manifest the store no longer
// holds, unless held; called under the index lock held exclusively. The
// build cache's prune removes those of the entries it drops; a named
// image's file stays while the image does, and went nowhere after.
func (s *Store) gcImageLeases() error {
	dir := filepath.Join(s.root, "leases")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, ent := range ents {
		hex, ok := strings.CutPrefix(ent.Name(), "@")
		if !ok {
			continue // a name's lease: Remove's
		}
		hex, ok = strings.CutSuffix(hex, ".lock")
		d := digest.NewDigestFromEncoded(digest.SHA256, hex)
		if !ok || d.Validate() != nil || s.hasBlob(d) {
			continue
		}
		if _, err := leaseHeld(filepath.Join(dir, ent.Name())); err != nil { // removes it when not held
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Remove deletes the snapshot called name, then frees the blobs and layer
// directories no remaining snapshot uses (unless an import is running: the
// last import to finish collects them, as does GC). It fails with
// errdefs.ErrNotFound for an unknown name and errdefs.ErrInUse while a
// lease on it is held.
func (s *Store) Remove(ctx context.Context, name string) error {
	if err := names.Check("snapshot", name); err != nil {
		return err
	}
	if err := s.untag(ctx, name); err != nil {
		return err
	}
	s.log.Info("removed snapshot", "snapshot", name)
	if err := s.tryGC(ctx); err != nil {
		return fmt.Errorf("remove snapshot %s: %w", name, err)
	}
	return nil
}

func (s *Store) untag(ctx context.Context, name string) error {
	ilk, err := lockfile.Exclusive(ctx, s.indexLock())
	if err != nil {
		return fmt.Errorf("remove snapshot %s: %w", name, err)
	}
	defer ilk.Close()
	e, err := s.engine()
	if err != nil {
		return err
	}
	defer func() { _ = e.Close() }() // every write was checked; Close removes the .umoci-* dir writes made, and one it leaves (unlocked by then) goes with the next gc's umoci GC
	idx, err := e.GetIndex(ctx)
	if err != nil {
		return fmt.Errorf("remove snapshot %s: %w", name, err)
	}
	found := false
	for _, d := range idx.Manifests {
		found = found || d.Annotations[ispec.AnnotationRefName] == name
	}
	if !found {
		return fmt.Errorf("remove snapshot %s: %w", name, errdefs.ErrNotFound)
	}
	if err := s.checkUnleased(name); err != nil {
		return fmt.Errorf("remove %w", err)
	}
	if err := e.DeleteReference(ctx, name); err != nil {
		return fmt.Errorf("remove snapshot %s: %w", name, err)
	}
	return nil
}

// GC frees blobs and layer directories that no snapshot uses, and
// temporary directories that killed processes left behind. It waits for
// running imports to finish.
func (s *Store) GC(ctx context.Context) error {
	_, err := s.Collect(ctx)
	return err
}

// Collect is GC that also returns the digests of the unpacked layers it
// freed.
func (s *Store) Collect(ctx context.Context) ([]string, error) {
	lk, err := lockfile.Exclusive(ctx, s.gcLock())
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	defer lk.Close()
	return s.gcLocked(ctx)
}

// tryGC collects garbage unless an import is running.
func (s *Store) tryGC(ctx context.Context) error {
	lk, err := lockfile.TryExclusive(s.gcLock())
	if errors.Is(err, lockfile.ErrLocked) {
		s.log.Debug("gc skipped: an import is running")
		return nil
	}
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	defer lk.Close()
	_, err = s.gcLocked(ctx)
	return err
}

// gcLocked runs with the GC lock held exclusively: no import is running.
// It returns the digests of the layers it freed.
func (s *Store) gcLocked(ctx context.Context) ([]string, error) {
	s.cleanTmp(ctx)
	ilk, err := lockfile.Exclusive(ctx, s.indexLock())
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	defer ilk.Close()
	e, err := s.engine()
	if err != nil {
		return nil, err
	}
	defer func() { _ = e.Close() }() // every write was checked; Close removes the .umoci-* dir writes made, and one it leaves (unlocked by then) goes with the next gc's umoci GC
	idx, err := e.GetIndex(ctx)
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	used := map[string]bool{}
	for _, d := range idx.Manifests {
		var m ispec.Manifest
		if err := readJSON(ctx, e, d, &m); err != nil {
			return nil, fmt.Errorf("gc: manifest of %s: %w", d.Annotations[ispec.AnnotationRefName], err)
		}
		for _, l := range m.Layers {
			used[l.Digest.Encoded()] = true
		}
	}
	if err := e.GC(ctx); err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	if err := s.gcSizes(); err != nil {
		return nil, fmt.Errorf("gc: layer sizes: %w", err)
	}
	if err := s.gcLaunch(); err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	if err := s.gcImageLeases(); err != nil {
		return nil, fmt.Errorf("gc: image leases: %w", err)
	}
	ents, err := os.ReadDir(s.layersDir())
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	var errs []error
	var freed []string
	for _, ent := range ents {
		if used[ent.Name()] {
			continue
		}
		s.log.Info("freeing layer", "layer", ent.Name())
		if err := s.removeTree(ctx, filepath.Join(s.layersDir(), ent.Name())); err != nil {
			errs = append(errs, err)
			continue
		}
		freed = append(freed, digest.SHA256.String()+":"+ent.Name())
	}
	if err := s.gcLayerLocks(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return freed, fmt.Errorf("gc: %w", err)
	}
	return freed, nil
}

// gcLayerLocks removes the lock files of layers that have no directory:
// those gcLocked just freed, and those of unpacks a killed process left
// (ensureLayer takes the lock before it makes the directory; no layer
// directory would ever free those). It runs with the GC lock held
// exclusively: no import, commit or build runs, so nobody holds or waits
// for these locks.
func (s *Store) gcLayerLocks() error {
	dir := filepath.Join(s.root, "locks")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("layer locks: %w", err)
	}
	var errs []error
	for _, ent := range ents {
		enc, ok := strings.CutSuffix(ent.Name(), ".lock")
		if !ok {
			continue
		}
		if _, err := os.Lstat(filepath.Join(s.layersDir(), enc)); !errors.Is(err, os.ErrNotExist) {
			continue // the layer is there (or in doubt): its lock stays
		}
		if err := os.Remove(filepath.Join(dir, ent.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("layer lock: %w", err))
		}
	}
	return errors.Join(errs...)
}

// removeTree removes a directory tree of the store (a layer directory or a
// temporary one): first renamed into a locked temporary directory, so that
// it disappears at once and a crash leaves it for the next collection.
func (s *Store) removeTree(ctx context.Context, path string) error {
	t, err := s.newTemp(ctx, "rm")
	if err != nil {
		return err
	}
	defer t.close()
	target := filepath.Join(t.dir, "x")
	if err := s.rename(ctx, path, target); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return s.removeAll(ctx, t.dir)
}

// tempDir is a directory under TmpDir held by a flock on itself while in
// use; one found unlocked belongs to a dead process.
type tempDir struct {
	dir string
	f   *os.File
}

const tmpPrefix = "snapshot-"

// newTemp makes a locked temporary directory.
func (s *Store) newTemp(ctx context.Context, kind string) (*tempDir, error) {
	// The tmp lock makes create-and-lock atomic for cleanTmp.
	lk, err := lockfile.Exclusive(ctx, s.tmpLock()) // held for a mkdir only
	if err != nil {
		return nil, err
	}
	defer lk.Close()
	d, err := os.MkdirTemp(s.tmp, tmpPrefix+kind+"-")
	if err != nil {
		return nil, fmt.Errorf("make temporary directory: %w", err)
	}
	f, err := lockDir(d)
	if err != nil {
		_ = os.Remove(d) // the lock already failed: that error is returned; the temp dir is empty
		return nil, err
	}
	return &tempDir{dir: d, f: f}, nil
}

func (t *tempDir) close() {
	if t.f != nil {
		_ = t.f.Close() // drops the flock, which close(2) does even when it fails; nothing written through it
		t.f = nil
	}
}

// cleanTmp removes temporary directories of this store that no live
// process holds.
func (s *Store) cleanTmp(ctx context.Context) {
	s.cleanRefsTmp()
	ents, err := os.ReadDir(s.tmp)
	if err != nil {
		return
	}
	for _, ent := range ents {
		if !strings.HasPrefix(ent.Name(), tmpPrefix) || !ent.IsDir() {
			continue
		}
		p := filepath.Join(s.tmp, ent.Name())
		f := func() *os.File {
			lk, err := lockfile.Exclusive(ctx, s.tmpLock())
			if err != nil {
				return nil
			}
			defer lk.Close()
			f, err := lockDir(p)
			if err != nil {
				return nil
			}
			return f
		}()
		if f == nil {
			continue
		}
		s.log.Info("removing stale temporary directory", "path", p)
		if err := s.removeAll(ctx, p); err != nil {
			s.log.Warn("remove stale temporary directory", "path", p, "err", err)
		}
		_ = f.Close() // drops the flock, which close(2) does even when it fails; nothing written through it
	}
}
