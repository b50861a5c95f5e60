package volstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/beamhop/lightbox/internal/atomicfile"
	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/lockfile"
	"github.com/beamhop/lightbox/internal/rmtree"
	"github.com/beamhop/lightbox/internal/sys"
)

// noQuotactlFd is set once quotactl_fd returned ENOSYS (kernels before
// 5.14): quotactl then goes through the block device.
var noQuotactlFd atomic.Bool

// XFSQuotaAvailable reports whether the XFS backend can work for a store
// in dir: dir is on XFS mounted with project quotas enforced (prjquota)
// and the process is root. It is false with a nil error when one of those
// is missing (CheckXFSQuota says which), and an error only when the
// checking itself failed.
func XFSQuotaAvailable(dir string) (bool, error) {
	err := CheckXFSQuota(dir)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, errdefs.ErrQuotaUnsupported):
		return false, nil
	default:
		return false, err
	}
}

// CheckXFSQuota returns nil when XFS project quotas can be set on dir, an
// error wrapping errdefs.ErrQuotaUnsupported that says why and what to do
// when they cannot, or another error when the check itself failed.
func CheckXFSQuota(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return &fs.PathError{Op: "statfs", Path: dir, Err: err}
	}
	if st.Type != unix.XFS_SUPER_MAGIC {
		return fmt.Errorf("%w: %s is not on XFS (project quotas need an XFS filesystem mounted with -o prjquota)", errdefs.ErrQuotaUnsupported, dir)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: setting XFS project quotas needs root", errdefs.ErrQuotaUnsupported)
	}
	notEnforced := fmt.Errorf("%w: the XFS filesystem of %s does not enforce project quotas: mount it with -o prjquota (in /etc/fstab; a remount cannot turn quotas on)", errdefs.ErrQuotaUnsupported, dir)
	flags, err := xfsQuotaFlags(dir)
	switch {
	case errors.Is(err, unix.ENOSYS):
		// Both a kernel without quotactl and an XFS mounted without
		// any quota say ENOSYS; the mount options tell them apart.
		if _, opts, merr := mountEntry(dir); merr == nil && !hasProjectQuotaOption(opts) {
			return notEnforced
		}
		return fmt.Errorf("%w: the kernel has no quota support (CONFIG_QUOTACTL, CONFIG_XFS_QUOTA)", errdefs.ErrQuotaUnsupported)
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH), errors.Is(err, unix.EINVAL):
		flags = 0
	case err != nil:
		return err
	}
	if flags&fsQuotaPdqEnfd == 0 {
		return notEnforced
	}
	return nil
}

// hasProjectQuotaOption reports whether XFS super options (as in
// /proc/self/mountinfo) turn project quotas on.
func hasProjectQuotaOption(opts string) bool {
	for _, o := range strings.Split(opts, ",") {
		switch o {
		case "prjquota", "pquota", "pqnoenforce":
			return true
		}
	}
	return false
}

// XFSBackend is the "xfs" Backend: each volume with a limit gets its own
// XFS project id on its data directory (inherited by everything created
// under it) with a block hard limit; writes past it fail with ENOSPC.
// Project ids belong to the filesystem, not to a store, so they are
// allocated under a machine-wide lock and registered in /etc/projects and
// /etc/projid (which makes `xfs_quota -x -c 'report -p'` show them by name,
// "lightbox-<store hash>-<volume>"); an id is never handed out while it is
// registered or while its quota shows use or limits on the filesystem, so
// two stores (or a crash between steps) cannot make two directories share
// one. Remove frees the id. Volumes without a limit are plain directories.
//
// XFSBackend is safe for concurrent use, also by several processes.
type XFSBackend struct {
	root     string
	tag      string // "lightbox-<hash of root>-"
	projects string
	projid   string
	lockPath string
	minID    uint32
}

const xfsNamePrefix = "lightbox-"

// NewXFSBackend returns the XFS backend for directories under root (the
// store's directory); it fails with an error wrapping
// errdefs.ErrQuotaUnsupported when CheckXFSQuota(root) does.
func NewXFSBackend(root string, opts XFSOptions) (*XFSBackend, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("xfs backend: %w", err)
	}
	if err := CheckXFSQuota(abs); err != nil {
		return nil, fmt.Errorf("xfs backend: %w", err)
	}
	sum := sha256.Sum256([]byte(abs))
	b := &XFSBackend{
		root:     abs,
		tag:      xfsNamePrefix + hex.EncodeToString(sum[:4]) + "-",
		projects: opts.ProjectsFile,
		projid:   opts.ProjidFile,
		minID:    opts.MinProjectID,
	}
	if b.projects == "" {
		b.projects = "/etc/projects"
	}
	if b.projid == "" {
		b.projid = "/etc/projid"
	}
	if b.minID == 0 {
		b.minID = 100000
	}
	b.lockPath = filepath.Join(filepath.Dir(b.projid), ".lightbox-projid.lock")
	return b, nil
}

// Name implements Backend.
func (b *XFSBackend) Name() string { return "xfs" }

// Create implements Backend.
func (b *XFSBackend) Create(ctx context.Context, dataDir string, limitBytes int64, uid, gid int, perm uint32) error {
	if limitBytes < 0 {
		return fmt.Errorf("create %s: negative limit %d", dataDir, limitBytes)
	}
	if limitBytes == 0 {
		return makeDataDir(dataDir, uid, gid, perm)
	}
	if limitBytes < MinXFSLimit {
		return fmt.Errorf("create %s: limit %d bytes is below the minimum of %d", dataDir, limitBytes, MinXFSLimit)
	}
	return b.limit(ctx, dataDir, limitBytes, func() error { return makeDataDir(dataDir, uid, gid, perm) })
}

func makeDataDir(dataDir string, uid, gid int, perm uint32) error {
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		return fmt.Errorf("create volume data: %w", err)
	}
	if err := os.Lchown(dataDir, uid, gid); err != nil {
		_ = os.Remove(dataDir) // the chown's error is returned; an empty data dir left here goes with its volume's temp dir (Create's undo or sweep)
		return fmt.Errorf("create volume data: %w", err)
	}
	if err := os.Chmod(dataDir, sys.FileMode(perm)); err != nil {
		_ = os.Remove(dataDir) // the chmod's error is returned; an empty data dir left here goes with its volume's temp dir (Create's undo or sweep)
		return fmt.Errorf("create volume data: %w", err)
	}
	return nil
}

// SetDirQuota caps an existing, empty directory at limitBytes with a
// project of its own: for a sandbox's writable layer, a directory that
// will hold both the overlay's upper and work dirs. Both must be inside
// it: XFS refuses renames into a project from outside it (EXDEV), and
// overlayfs copies files up by renaming them from the work dir. release
// removes dir with everything in it and frees the project; after a crash,
// Remove(dir) does the same from any process.
func (b *XFSBackend) SetDirQuota(ctx context.Context, dir string, limitBytes int64) (release func(context.Context) error, err error) {
	if limitBytes < MinXFSLimit {
		return nil, fmt.Errorf("quota %s: limit %d bytes is below the minimum of %d", dir, limitBytes, MinXFSLimit)
	}
	if err := b.limit(ctx, dir, limitBytes, nil); err != nil {
		return nil, err
	}
	return func(ctx context.Context) error { return b.Remove(ctx, dir) }, nil
}

// limit allocates and registers a project id for dir, runs mkdir (when
// not nil) and applies the id and the limit, all under the registry lock.
// On failure nothing stays behind.
func (b *XFSBackend) limit(ctx context.Context, dir string, limitBytes int64, mkdir func() error) (err error) {
	dir, err = filepath.Abs(dir)
	if err != nil {
		return err
	}
	if strings.ContainsAny(dir, "\n") {
		return fmt.Errorf("quota %q: a path with a newline cannot be registered in %s", dir, b.projects)
	}
	lk, err := lockfile.Exclusive(ctx, b.lockPath)
	if err != nil {
		return fmt.Errorf("quota %s: %w", dir, err)
	}
	defer lk.Close()
	reg, err := b.readRegistry()
	if err != nil {
		return fmt.Errorf("quota %s: %w", dir, err)
	}
	// statfs makes XFS finish inactivating deleted inodes (background
	// inodegc since Linux 5.15), so quota counts are current.
	var st unix.Statfs_t
	_ = unix.Statfs(b.root, &st) // called for its side effect only; a failure leaves counts that reclaimStale and allocate read as in use, which is safe
	if err := b.reclaimStale(reg); err != nil {
		return fmt.Errorf("quota %s: %w", dir, err)
	}
	id, err := b.allocate(reg)
	if err != nil {
		return fmt.Errorf("quota %s: %w", dir, err)
	}
	reg.add(id, b.projectName(dir, reg, id), dir)
	if err := b.writeRegistry(reg); err != nil {
		return fmt.Errorf("quota %s: %w", dir, err)
	}
	made := false
	defer func() {
		if err == nil {
			return
		}
		// Undo, newest first; the registry entry goes last so that a
		// crash here leaves it for reclaimStale.
		// What the undo cannot do is returned with the error: a
		// registration left behind is reclaimStale's once its directory
		// is gone, a directory left behind is the caller's to remove.
		var undo []error
		if made {
			if rerr := os.RemoveAll(dir); rerr != nil {
				undo = append(undo, rerr)
			}
		}
		if qerr := xfsSetBlockLimit(b.root, id, 0); qerr != nil {
			undo = append(undo, fmt.Errorf("clear the limit of project %d: %w", id, qerr))
		}
		reg.remove(id)
		if werr := b.writeRegistry(reg); werr != nil {
			undo = append(undo, werr)
		}
		if len(undo) > 0 {
			err = fmt.Errorf("%w (and undoing it: %w)", err, errors.Join(undo...))
		}
	}()
	if mkdir != nil {
		if err := mkdir(); err != nil {
			return err
		}
		made = true
	}
	if err := xfsSetBlockLimit(dir, id, limitBytes); err != nil {
		return fmt.Errorf("quota %s: %w", dir, err)
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("quota %s: %w", dir, err)
	}
	defer func() { _ = f.Close() }() // a directory opened read-only: the fsxattr ioctls' errors are checked, Close has nothing to flush
	attr, err := getFsxattr(f)
	if err != nil {
		return fmt.Errorf("quota %s: %w", dir, err)
	}
	if attr.Projid != 0 {
		return fmt.Errorf("quota %s: already in project %d", dir, attr.Projid)
	}
	attr.Projid = id
	attr.Xflags |= fsXflagProjinherit
	if err := setFsxattr(f, attr); err != nil {
		return fmt.Errorf("quota %s: %w", dir, err)
	}
	return nil
}

// allocate picks the lowest id from minID up that is in neither registry
// file and whose quota on this filesystem has no use and no limits (an id
// someone uses without registering it, or one whose registration a crash
// lost while its directory lives on).
func (b *XFSBackend) allocate(reg *registry) (uint32, error) {
	for id := uint64(b.minID); id < 1<<32-1; id++ {
		if reg.used(uint32(id)) {
			continue
		}
		q, err := xfsGetQuota(b.root, uint32(id))
		if errors.Is(err, unix.ENOENT) {
			return uint32(id), nil
		}
		if err != nil {
			return 0, err
		}
		if dquotEmpty(q) {
			return uint32(id), nil
		}
	}
	return 0, errors.New("no free XFS project id")
}

func dquotEmpty(q fsDiskQuota) bool {
	return q.Bcount == 0 && q.Icount == 0 && q.BlkHardlimit == 0 && q.BlkSoftlimit == 0 &&
		q.InoHardlimit == 0 && q.InoSoftlimit == 0 && q.Rtbcount == 0
}

// reclaimStale drops this store's registrations whose directory is gone
// and whose quota shows no use: what a crash between removing a directory
// and freeing its id leaves behind.
func (b *XFSBackend) reclaimStale(reg *registry) error {
	changed := false
	for _, e := range reg.ours(b.tag) {
		if e.path == "" {
			continue
		}
		if _, err := os.Lstat(e.path); !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		q, err := xfsGetQuota(b.root, e.id)
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
		if err == nil && (q.Bcount != 0 || q.Icount != 0) {
			continue // still in use (renamed? or not yet garbage-collected)
		}
		if err == nil && q.BlkHardlimit != 0 {
			if err := xfsSetBlockLimit(b.root, e.id, 0); err != nil {
				return err
			}
		}
		reg.remove(e.id)
		changed = true
	}
	if changed {
		return b.writeRegistry(reg)
	}
	return nil
}

// projectName is "lightbox-<store hash>-<dir relative to the store>" with
// a trailing "/data" dropped and slashes made dashes: for a volume,
// "lightbox-1a2b3c4d-volumes-npm-cache".
func (b *XFSBackend) projectName(dir string, reg *registry, id uint32) string {
	label, err := filepath.Rel(b.root, dir)
	if err != nil || label == "." || strings.HasPrefix(label, "..") {
		label = filepath.Base(dir)
	}
	label = strings.TrimSuffix(label, "/data")
	label = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '-'
	}, label)
	name := b.tag + label
	if reg.nameTaken(name) {
		name += "-" + strconv.FormatUint(uint64(id), 10)
	}
	return name
}

// Activate implements Backend: a volume with a project needs its
// filesystem to still enforce project quotas (an XFS mounted without
// prjquota would silently not); its registration is renewed (restored if
// lost, its path updated if the directory moved).
func (b *XFSBackend) Activate(ctx context.Context, dataDir string) error {
	id, err := dirProject(dataDir)
	if err != nil || id == 0 {
		return err
	}
	if err := CheckXFSQuota(dataDir); err != nil {
		return fmt.Errorf("activate %s (XFS project %d): %w", dataDir, id, err)
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	lk, err := lockfile.Exclusive(ctx, b.lockPath)
	if err != nil {
		return fmt.Errorf("activate %s: %w", dataDir, err)
	}
	defer lk.Close()
	reg, err := b.readRegistry()
	if err != nil {
		return fmt.Errorf("activate %s: %w", dataDir, err)
	}
	name, path, found := reg.lookup(id)
	switch {
	case found && !strings.HasPrefix(name, xfsNamePrefix) && name != "":
		return fmt.Errorf("activate %s: its XFS project id %d is registered to %q in %s", dataDir, id, name, b.projid)
	case found && path == abs && name != "":
		return nil
	}
	reg.remove(id)
	reg.add(id, b.projectName(abs, reg, id), abs)
	if err := b.writeRegistry(reg); err != nil {
		return fmt.Errorf("activate %s: %w", dataDir, err)
	}
	return nil
}

// Remove implements Backend: it deletes dataDir, clears its project's
// limit and frees the id (dropping its registration).
func (b *XFSBackend) Remove(ctx context.Context, dataDir string) error {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	id, err := dirProject(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		id = 0 // gone already: free what the registry holds for its path
	case err != nil:
		return fmt.Errorf("remove %s: %w", dataDir, err)
	}
	// rmtree refuses (EBUSY) to descend into a mount left under the tree
	// (a sandbox's rootfs, a bind-mounted volume) instead of emptying it.
	if err := rmtree.RemoveAll(ctx, abs, idmap.Identity()); err != nil {
		return fmt.Errorf("remove %s: %w", dataDir, err)
	}
	lk, err := lockfile.Exclusive(ctx, b.lockPath)
	if err != nil {
		return fmt.Errorf("remove %s: %w", dataDir, err)
	}
	defer lk.Close()
	reg, err := b.readRegistry()
	if err != nil {
		return fmt.Errorf("remove %s: %w", dataDir, err)
	}
	var ids []uint32
	if id != 0 {
		if name, _, found := reg.lookup(id); !found || strings.HasPrefix(name, xfsNamePrefix) || name == "" {
			ids = append(ids, id)
		}
	} else {
		for _, e := range reg.ours(xfsNamePrefix) {
			if e.path == abs {
				ids = append(ids, e.id)
			}
		}
	}
	for _, id := range ids {
		if err := xfsSetBlockLimit(b.root, id, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove %s: %w", dataDir, err)
		}
		reg.remove(id)
	}
	if len(ids) > 0 {
		if err := b.writeRegistry(reg); err != nil {
			return fmt.Errorf("remove %s: %w", dataDir, err)
		}
	}
	return nil
}

// Usage implements Backend: the project's block count (Q_XGETQUOTA) as
// root; otherwise (EPERM) what statfs reports for the directory, which XFS
// answers with the project's limit and use. A directory without a project
// is unknown.
func (b *XFSBackend) Usage(ctx context.Context, dataDir string) (int64, bool, error) {
	id, err := dirProject(dataDir)
	if err != nil || id == 0 {
		return 0, false, err
	}
	q, err := xfsGetQuota(dataDir, id)
	if err == nil {
		return int64(q.Bcount) * 512, true, nil
	}
	if !errors.Is(err, unix.EPERM) {
		return 0, false, fmt.Errorf("usage %s: %w", dataDir, err)
	}
	return statfsUsage(b.root, dataDir)
}

// statfsUsage is the project's use as statfs shows it; unknown when the
// directory reports the whole filesystem (a project without a limit).
func statfsUsage(root, dir string) (int64, bool, error) {
	var sd, sr unix.Statfs_t
	if err := unix.Statfs(dir, &sd); err != nil {
		return 0, false, &fs.PathError{Op: "statfs", Path: dir, Err: err}
	}
	if err := unix.Statfs(root, &sr); err != nil {
		return 0, false, &fs.PathError{Op: "statfs", Path: root, Err: err}
	}
	if sd.Blocks == sr.Blocks && sd.Bfree == sr.Bfree {
		return 0, false, nil
	}
	return int64(sd.Blocks-sd.Bfree) * sd.Bsize, true, nil
}

// dirProject returns the XFS project id of dir (0: none).
func dirProject(dir string) (uint32, error) {
	f, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }() // a directory opened read-only: nothing to flush
	a, err := getFsxattr(f)
	if err != nil {
		return 0, err
	}
	if a.Xflags&fsXflagProjinherit == 0 {
		return 0, nil
	}
	return a.Projid, nil
}

// blockDevice finds the device node of the filesystem holding dir, for
// quotactl(2) without quotactl_fd.
func blockDevice(dir string) (string, error) {
	src, _, err := mountEntry(dir)
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(src, "/") {
		return "", fmt.Errorf("quota %s: the filesystem's source %q is not a device", dir, src)
	}
	return src, nil
}

// mountEntry returns the source and the super options of the filesystem
// holding dir, from /proc/self/mountinfo.
func mountEntry(dir string) (source, superOpts string, err error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return "", "", &fs.PathError{Op: "stat", Path: dir, Err: err}
	}
	major, minor := int(unix.Major(st.Dev)), int(unix.Minor(st.Dev))
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return m.Major != major || m.Minor != minor, false
	})
	if err != nil {
		return "", "", fmt.Errorf("quota %s: %w", dir, err)
	}
	if len(mounts) == 0 {
		return "", "", fmt.Errorf("quota %s: filesystem %d:%d not in /proc/self/mountinfo", dir, major, minor)
	}
	return mounts[0].Source, mounts[0].VFSOptions, nil
}

// registry is the content of /etc/projects and /etc/projid: lines kept as
// they are (comments, other tools' entries) except the ones lightbox adds
// and removes.
type registry struct {
	projects []string // "id:path" lines and others
	projid   []string // "name:id" lines and others
}

type regEntry struct {
	id   uint32
	name string
	path string
}

func (b *XFSBackend) readRegistry() (*registry, error) {
	read := func(path string) ([]string, error) {
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n"), nil
	}
	p, err := read(b.projects)
	if err != nil {
		return nil, err
	}
	n, err := read(b.projid)
	if err != nil {
		return nil, err
	}
	return &registry{projects: p, projid: n}, nil
}

func (b *XFSBackend) writeRegistry(r *registry) error {
	join := func(lines []string) []byte {
		if len(lines) == 0 {
			return nil
		}
		return []byte(strings.Join(lines, "\n") + "\n")
	}
	// projects first: an id in either file is taken, so a crash between
	// the two writes wastes nothing and collides with nothing.
	if err := atomicfile.Write(b.projects, join(r.projects), 0o644); err != nil {
		return err
	}
	return atomicfile.Write(b.projid, join(r.projid), 0o644)
}

// parseIDLine splits "a:b" at its first colon and parses the id side.
func parseProjectsLine(line string) (id uint32, path string, ok bool) {
	if strings.HasPrefix(strings.TrimSpace(line), "#") {
		return 0, "", false
	}
	a, p, found := strings.Cut(line, ":")
	if !found {
		return 0, "", false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(a), 10, 32)
	if err != nil {
		return 0, "", false
	}
	return uint32(n), strings.TrimSpace(p), true
}

func parseProjidLine(line string) (name string, id uint32, ok bool) {
	if strings.HasPrefix(strings.TrimSpace(line), "#") {
		return "", 0, false
	}
	nm, a, found := strings.Cut(line, ":")
	if !found {
		return "", 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(a), 10, 32)
	if err != nil {
		return "", 0, false
	}
	return strings.TrimSpace(nm), uint32(n), true
}

func (r *registry) used(id uint32) bool {
	_, _, found := r.lookup(id)
	return found
}

// lookup returns id's name and path as far as each file has them.
func (r *registry) lookup(id uint32) (name, path string, found bool) {
	for _, l := range r.projects {
		if i, p, ok := parseProjectsLine(l); ok && i == id {
			path, found = p, true
		}
	}
	for _, l := range r.projid {
		if n, i, ok := parseProjidLine(l); ok && i == id {
			name, found = n, true
		}
	}
	return name, path, found
}

func (r *registry) nameTaken(name string) bool {
	for _, l := range r.projid {
		if n, _, ok := parseProjidLine(l); ok && n == name {
			return true
		}
	}
	return false
}

// ours lists the registered ids whose name starts with prefix.
func (r *registry) ours(prefix string) []regEntry {
	var out []regEntry
	for _, l := range r.projid {
		n, id, ok := parseProjidLine(l)
		if !ok || !strings.HasPrefix(n, prefix) {
			continue
		}
		_, p, _ := r.lookup(id)
		out = append(out, regEntry{id: id, name: n, path: p})
	}
	return out
}

func (r *registry) add(id uint32, name, path string) {
	r.projects = append(r.projects, fmt.Sprintf("%d:%s", id, path))
	r.projid = append(r.projid, fmt.Sprintf("%s:%d", name, id))
}

// remove drops every line of id from both files.
func (r *registry) remove(id uint32) {
	keep := r.projects[:0]
	for _, l := range r.projects {
		if i, _, ok := parseProjectsLine(l); !ok || i != id {
			keep = append(keep, l)
		}
	}
	r.projects = keep
	keepN := r.projid[:0]
	for _, l := range r.projid {
		if _, i, ok := parseProjidLine(l); !ok || i != id {
			keepN = append(keepN, l)
		}
	}
	r.projid = keepN
}
