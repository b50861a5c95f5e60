package lightbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beamhop/lightbox/internal/atomicfile"
	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/jsonlite"
	"github.com/beamhop/lightbox/internal/lockfile"
	"github.com/beamhop/lightbox/runtime"
	"github.com/beamhop/lightbox/snapshot"
	"github.com/beamhop/lightbox/volstore"
	"golang.org/x/sys/unix"
)

// Options configure Open. The zero value is the default store.
type Options struct {
	// Root is the store's directory. "" means $LIGHTBOX_ROOT, else
	// /var/lib/lightbox as root and $XDG_DATA_HOME/lightbox (or
	// ~/.local/share/lightbox) otherwise.
	Root string
	// Logger receives structured records; nil discards them.
	Logger *slog.Logger
	// Progress, when non-nil, is told how large transfers go (importing,
	// exporting, unpacking a blob of 16 MiB or more), to draw them as the
	// caller likes (the CLI draws bars on stderr when it is a terminal).
	// It is called from the goroutines doing the work, maybe for two
	// transfers at once: it must be safe for concurrent use. nil: no
	// reports.
	Progress func(TransferProgress)
	// IDMapping chooses, as real root, how a new store maps its
	// sandboxes' ids; "" (IDMappingDefault) gives a new store a private
	// range and takes an existing store's recorded mapping as it is.
	// Asking for one mapping on a store that records the other is an
	// error that names the recorded one. Rootless stores always map the
	// caller (and its subordinate range); asking for either is an error.
	IDMapping IDMapping
}

// TransferProgress is a report on a large transfer (see Options.Progress).
type TransferProgress = snapshot.Progress

// IDMapping is how a store made by real root maps its sandboxes' ids.
type IDMapping string

const (
	// IDMappingDefault: a new store gets a private range; an existing
	// store keeps what it recorded.
	IDMappingDefault IDMapping = ""
	// IDMappingRange: a private range of 65536 ids picked for the store
	// (like systemd-nspawn --private-users=pick), overlapping no
	// /etc/subuid or /etc/subgid entry and no other store's range. What a
	// sandbox's root writes outside a bind mount is owned by nobody on
	// the host.
	IDMappingRange IDMapping = "range"
	// IDMappingIdentity: a sandbox's root is the host's root (ids map to
	// themselves). It trades isolation for convenience: a sandbox that
	// gets out of its namespaces, or writes a setuid file anywhere the
	// host runs it from, acts as host root. Only at store creation.
	IDMappingIdentity IDMapping = "identity"
)

// Runtime is an open store. It is safe for concurrent use; several
// processes may open one store at once.
type Runtime struct {
	root    string
	log     *slog.Logger
	mapping idmap.Mapping
	opts    Options

	snaps *snapshot.Store
	vols  *volstore.Store
	disks *volstore.Disks
	mgr   *runtime.Manager

	pool pool // sandboxes started ahead of need (Prewarm)

	closeOnce sync.Once
	closed    atomic.Bool // Close has begun: launches are ErrClosed
}

// storeFile is $ROOT/store.json.
type storeFile struct {
	Version   int           `json:"version"`
	Mapping   idmap.Mapping `json:"mapping"`
	CreatedAt time.Time     `json:"createdAt"`
	// IdentityMapping is true when real root made the store with the
	// identity mapping on purpose; a store with the identity and without
	// it predates private ranges.
	IdentityMapping bool `json:"identityMapping,omitempty"`
}

// unmarshalStoreFile decodes store.json as json.Unmarshal does; the
// files Open writes go without encoding/json, whose first use is ~0.1 ms
// of a short command such as exec (package jsonlite).
func unmarshalStoreFile(b []byte, sf *storeFile) error {
	if handStoreFile(b, sf) {
		return nil
	}
	return json.Unmarshal(b, sf)
}

// handStoreFile decodes b into sf when jsonlite and the fields below take
// it all; sf is untouched otherwise.
func handStoreFile(b []byte, sf *storeFile) bool {
	v, ok := jsonlite.Parse(b)
	if !ok {
		return false
	}
	var got storeFile
	ok = v.Fields(func(key string, v jsonlite.Value) bool {
		switch key {
		case "version":
			var n int64
			n, ok = v.Int(strconv.IntSize)
			got.Version = int(n)
		case "mapping":
			got.Mapping, ok = idmap.MappingFromJSON(v)
		case "createdAt":
			got.CreatedAt, ok = v.Time()
		case "identityMapping":
			got.IdentityMapping, ok = v.Bool, v.Kind == jsonlite.Bool
		default:
			return false
		}
		return ok
	})
	if ok {
		*sf = got
	}
	return ok
}

// ranges is the registry of private ranges; tests point it elsewhere.
var ranges = &idmap.Registry{}

// DefaultRoot returns the store root Open uses when Options.Root is "".
func DefaultRoot() (string, error) {
	if r := os.Getenv("LIGHTBOX_ROOT"); r != "" {
		return r, nil
	}
	if os.Geteuid() == 0 {
		return "/var/lib/lightbox", nil
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "lightbox"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("store root: set --root or LIGHTBOX_ROOT: %w", err)
	}
	return filepath.Join(home, ".local", "share", "lightbox"), nil
}

// Open creates the store at opts.Root, or checks the one there. It refuses
// a root on overlayfs or NFS, or on a filesystem without d_type or user
// xattrs, and a store whose recorded id mapping differs from the one this
// process would use.
func Open(opts Options) (*Runtime, error) {
	root := opts.Root
	if root == "" {
		var err error
		if root, err = DefaultRoot(); err != nil {
			return nil, err
		}
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := refuseUserStore(root); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch opts.IDMapping {
	case IDMappingDefault, IDMappingRange, IDMappingIdentity:
	default:
		return nil, fmt.Errorf("open store %s: id mapping %q: want %q or %q", root, opts.IDMapping, IDMappingRange, IDMappingIdentity)
	}
	if opts.IDMapping != IDMappingDefault && os.Geteuid() != 0 {
		return nil, fmt.Errorf("open store %s: id mapping %q: only real root chooses a store's mapping; "+
			"rootless, a store maps the caller and its /etc/subuid range", root, opts.IDMapping)
	}
	mapping, err := idmap.Detect()
	if err != nil {
		return nil, fmt.Errorf("open store %s: id mapping: %w", root, err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("open store %s: %w", root, err)
	}
	for _, d := range []string{"tmp", "snapshots", "volumes", "sandboxes"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, fmt.Errorf("open store %s: %w", root, err)
		}
	}
	r := &Runtime{root: root, log: log, mapping: mapping, opts: opts}
	if err := r.checkStore(); err != nil {
		return nil, err
	}
	if err := r.openParts(); err != nil {
		return nil, err
	}
	return r, nil
}

// checkStore records the mapping of a new store, or compares it, and
// checks the filesystem once.
func (r *Runtime) checkStore() error {
	ctx := context.Background() // a short local lock wait; Open takes no context by contract
	lk, err := lockfile.Exclusive(ctx, filepath.Join(r.root, "store.lock"))
	if err != nil {
		return fmt.Errorf("open store %s: %w", r.root, err)
	}
	defer lk.Close()
	path := filepath.Join(r.root, "store.json")
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		var sf storeFile
		if err := unmarshalStoreFile(data, &sf); err != nil {
			return fmt.Errorf("open store %s: store.json: %w", r.root, err)
		}
		return r.useRecorded(sf)
	case errors.Is(err, os.ErrNotExist):
		if err := checkFilesystem(r.root); err != nil {
			return err
		}
		sf := storeFile{Version: 1, Mapping: r.mapping, CreatedAt: time.Now().UTC()}
		if os.Geteuid() != 0 {
			return atomicfile.WriteJSON(path, sf, 0o600)
		}
		if r.opts.IDMapping == IDMappingIdentity {
			sf.IdentityMapping = true
			return atomicfile.WriteJSON(path, sf, 0o600)
		}
		m, err := ranges.Allocate(r.root, storeHoldsRange, func(m idmap.Mapping) error {
			sf.Version, sf.Mapping = 2, m
			return atomicfile.WriteJSON(path, sf, 0o600)
		})
		if err != nil {
			return fmt.Errorf("open store %s: %w", r.root, err)
		}
		r.mapping = m
		return nil
	default:
		return fmt.Errorf("open store %s: %w", r.root, err)
	}
}

// useRecorded takes the mapping an existing store recorded, or refuses
// it.
func (r *Runtime) useRecorded(sf storeFile) error {
	rec := sf.Mapping
	_, isRange := rec.PrivateRange()
	switch {
	case r.opts.IDMapping == IDMappingIdentity && !rec.IsIdentity():
		return fmt.Errorf("open store %s: identity mapping asked for, but the store was made with id mapping %q: "+
			"a store's mapping is chosen once, when it is made; use another --root for an identity-mapped store", r.root, rec.String())
	case r.opts.IDMapping == IDMappingRange && !isRange:
		return fmt.Errorf("open store %s: a private id range asked for, but the store was made with id mapping %q: "+
			"a store's mapping is chosen once, when it is made; use another --root for a store with a private range", r.root, rec.String())
	}
	if os.Geteuid() == 0 && rec.IsIdentity() {
		r.mapping = rec
		if !sf.IdentityMapping {
			r.log.Warn("this store predates private id ranges: its sandboxes' root is the host's root (identity mapping); "+
				"a new store gets a private range", "store", r.root)
		}
		return nil
	}
	if os.Geteuid() == 0 && isRange {
		r.mapping = rec
		base, _ := rec.PrivateRange()
		if holder, err := ranges.Register(r.root, base); err != nil {
			r.log.Warn("record the store's id range", "store", r.root, "err", err)
		} else if holder != r.root {
			r.log.Warn("the store's id range is recorded for another store too: sandboxes of both share host ids",
				"store", r.root, "other", holder, "range", rec.String())
		}
		return nil
	}
	if !rec.Equal(r.mapping) && r.administers(rec) {
		// Root acting on an ordinary user's store (e.g. creating a
		// volume with a quota for them) uses that store's mapping.
		r.mapping = rec
		return nil
	}
	if !rec.Equal(r.mapping) {
		return fmt.Errorf("open store %s: it was made with id mapping %q but this process maps %q "+
			"(was /etc/subuid or /etc/subgid edited, or newuidmap installed or removed?): "+
			"its layers and volumes would be owned by nobody; use the mapping it was made with, or another --root",
			r.root, rec.String(), r.mapping.String())
	}
	return nil
}

// storeHoldsRange reports whether the store at root still records the
// private range at base: the registry reclaims a range once not.
func storeHoldsRange(root string, base uint32) bool {
	data, err := os.ReadFile(filepath.Join(root, "store.json"))
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		return true // unreadable is not gone: keep the range
	}
	var sf storeFile
	if unmarshalStoreFile(data, &sf) != nil {
		return true
	}
	b, ok := sf.Mapping.PrivateRange()
	return ok && b == base
}

// administers reports whether this process is real root acting on the
// store of the ordinary user whose mapping m is: the store's directory
// belongs to the user that m maps to root.
func (r *Runtime) administers(m idmap.Mapping) bool {
	if os.Geteuid() != 0 || len(m.UIDs) == 0 || m.UIDs[0].ContainerID != 0 {
		return false
	}
	var st unix.Stat_t
	if err := unix.Stat(r.root, &st); err != nil {
		return false
	}
	return st.Uid != 0 && st.Uid == m.UIDs[0].HostID
}

// Filesystem magic numbers (statfs f_type) of filesystems a store cannot
// live on.
const (
	overlayfsMagic = 0x794c7630
	nfsMagic       = 0x6969
)

// checkFilesystem refuses, saying why, a store root where sandboxes cannot
// work.
func checkFilesystem(root string) (err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return fmt.Errorf("open store %s: statfs: %w", root, err)
	}
	switch st.Type {
	case overlayfsMagic:
		return fmt.Errorf("open store %s: the store is on overlayfs, which cannot hold a sandbox's upper directory: use --root on another filesystem", root)
	case nfsMagic:
		return fmt.Errorf("open store %s: the store is on NFS, which lacks the locking and xattrs lightbox needs: use --root on a local filesystem", root)
	}
	probe, err := os.MkdirTemp(filepath.Join(root, "tmp"), "probe-")
	if err != nil {
		return fmt.Errorf("open store %s: %w", root, err)
	}
	defer func() {
		// Nothing else removes a probe-* dir: one that stays is reported.
		if rerr := os.RemoveAll(probe); rerr != nil {
			err = errors.Join(err, fmt.Errorf("open store %s: remove the probe: %w", root, rerr))
		}
	}()
	f := filepath.Join(probe, "f")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		return fmt.Errorf("open store %s: %w", root, err)
	}
	if err := unix.Setxattr(f, "user.lightbox.probe", []byte("1"), 0); err != nil {
		return fmt.Errorf("open store %s: the filesystem does not support user xattrs (%w), which overlayfs in a user namespace needs: use --root on ext4, xfs or btrfs", root, err)
	}
	d, err := os.Open(probe)
	if err != nil {
		return fmt.Errorf("open store %s: %w", root, err)
	}
	defer func() { _ = d.Close() }() // a directory opened read-only: nothing to flush
	buf := make([]byte, 4096)
	n, err := unix.ReadDirent(int(d.Fd()), buf)
	if err != nil {
		return fmt.Errorf("open store %s: readdir: %w", root, err)
	}
	if !direntTypesKnown(buf[:n]) {
		return fmt.Errorf("open store %s: the filesystem does not report d_type, which overlayfs needs: use --root on ext4, xfs (ftype=1) or btrfs", root)
	}
	return nil
}

// Root returns the store's directory.
func (r *Runtime) Root() string { return r.root }

// Close releases what the Runtime holds. Sandboxes it launched and did not
// detach keep running until their handles are destroyed or the process
// exits; a launch after Close (or racing it) fails with ErrClosed. It
// waits for the launches under way and for the removals Destroy left to
// the background (the destroyed sandboxes' cgroups and directories) and
// returns what they failed to do (each failure is logged as it happens,
// and gc removes what is left).
func (r *Runtime) Close() error {
	var err error
	r.closeOnce.Do(func() {
		r.closed.Store(true)
		err = r.closeParts()
	})
	return err
}

var (
	defaultOnce sync.Once
	defaultRT   *Runtime
	defaultErr  error
)

// Default returns the Runtime that the package-level functions use,
// opened once with Options{}.
func Default() (*Runtime, error) {
	defaultOnce.Do(func() { defaultRT, defaultErr = Open(Options{}) })
	return defaultRT, defaultErr
}

// openParts opens the snapshot store, the volume store and the sandbox
// manager over their directories of the store.
func (r *Runtime) openParts() error {
	tmp := filepath.Join(r.root, "tmp")
	var err error
	r.snaps, err = snapshot.Open(snapshot.Options{
		Root: filepath.Join(r.root, "snapshots"), TmpDir: tmp, Mapping: r.mapping,
		Logger: r.log, Progress: r.opts.Progress,
	})
	if err != nil {
		return fmt.Errorf("open store %s: %w", r.root, err)
	}
	r.vols, err = volstore.Open(context.Background(), volstore.Options{
		Root: filepath.Join(r.root, "volumes"), TmpDir: tmp, Mapping: r.mapping, Logger: r.log,
	})
	if err != nil {
		return fmt.Errorf("open store %s: %w", r.root, err)
	}
	r.disks = r.vols.Disks(filepath.Join(r.root, "disks"))
	r.mgr, err = runtime.Open(runtime.Options{
		Root: filepath.Join(r.root, "sandboxes"), TmpDir: tmp, Mapping: r.mapping, Logger: r.log,
		AttachNetwork: r.attachNetwork,
	})
	if err != nil {
		return fmt.Errorf("open store %s: %w", r.root, err)
	}
	return nil
}

func (r *Runtime) closeParts() error {
	if r.mgr == nil {
		return nil
	}
	perr := r.pool.close()
	return errors.Join(perr, r.mgr.Close())
}
