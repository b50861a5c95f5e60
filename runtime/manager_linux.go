package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/initbin"
	"github.com/beamhop/lightbox/internal/lockfile"
	"github.com/beamhop/lightbox/internal/names"
	"github.com/beamhop/lightbox/internal/rmtree"
	"github.com/beamhop/lightbox/internal/sys"
	"github.com/beamhop/lightbox/nsinit"
	"github.com/beamhop/lightbox/overlay"
	"golang.org/x/sys/unix"
)

// Manager launches and finds the sandboxes under one root. It is safe for
// concurrent use, and several processes may use one root at once.
type Manager struct {
	root    string
	tmp     string
	mapping idmap.Mapping
	log     *slog.Logger
	opts    Options

	exeOnce sync.Once
	exeFD   *os.File // read-only detached bind of the init's binary (root only)
	exePath string   // the lean init's file ("" = this binary)
	exeHold *os.File // shared lock on exePath until Close: gc leaves it (initbin.Hold)
	exeErr  error

	bg bgWork // removals of destroyed sandboxes' directories

	bgMu   sync.Mutex
	bgErrs []error // what those removals failed to do (Close returns it)

	usernsMu sync.Mutex
	userns   map[[2]uint32]*os.File // idmapped binds' user namespaces, by owner (idmapUserns)
	closed   bool                   // Close has run: no namespace is kept any more

	// launchMu is held for reading by each Launch and for writing by
	// Close, which then sets shut: Close waits for the launches under
	// way before it closes what they start the init from (exeFD), and a
	// Launch after Close is ErrClosed, not an exec of a closed (or
	// reused) descriptor.
	launchMu sync.RWMutex
	shut     bool

	nullOnce  sync.Once
	nullOwned bool // nullMapped's answer
}

// Open returns the Manager of opts.Root, creating the directory.
func Open(opts Options) (*Manager, error) {
	if opts.Root == "" {
		return nil, errors.New("open sandboxes: no root directory")
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("open sandboxes: %w", err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("open sandboxes: %w", err)
	}
	tmp := opts.TmpDir
	if tmp == "" {
		tmp = root
	}
	if len(opts.Mapping.UIDs) == 0 {
		return nil, errors.New("open sandboxes: no id mapping")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = 10 * time.Second
	}
	return &Manager{root: root, tmp: tmp, mapping: opts.Mapping, log: log, opts: opts}, nil
}

// state is $ROOT/sandboxes/<name>/state.json.
type state struct {
	Version   int       `json:"version"`
	Name      string    `json:"name"`
	Snapshot  string    `json:"snapshot,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	Volumes   []string  `json:"volumes,omitempty"`
	Command   []string  `json:"command,omitempty"`
	Network   string    `json:"network"`
	// WritableDir holds upper/ and work/ when the caller gave one.
	WritableDir string `json:"writableDir,omitempty"`
	// Cgroup is the sandbox's cgroup, recorded before it is made.
	Cgroup *cgroupState `json:"cgroup,omitempty"`
	// Limits says how each limit holds.
	Limits LimitsApplied `json:"limits,omitempty"`
	// NetPids are the network helper's processes (outside the sandbox's
	// pid namespace): destroy waits for them too, so that a published
	// port is free again when it returns. The first is the stack itself:
	// while the sandbox runs, its exit means the network is gone.
	NetPids []procRef `json:"netPids,omitempty"`
	// StopSignal is Spec.StopSignal (0 = SIGTERM).
	StopSignal int `json:"stopSignal,omitempty"`
	// Pid and PidStart name the init. Last: the launch adds them to
	// the state it wrote before the clone in place (updateState), so the
	// file's bytes up to them do not change.
	Pid      int    `json:"pid,omitempty"`
	PidStart uint64 `json:"pidStart,omitempty"`
}

// procRef names one process for good: its pid and start time.
type procRef struct {
	Pid   int    `json:"pid"`
	Start uint64 `json:"start"`
}

func (m *Manager) dir(name string) string { return filepath.Join(m.root, name) }

// globalLock serialises creating and removing sandbox directories.
func (m *Manager) globalLock(ctx context.Context) (*lockfile.Lock, error) {
	return lockfile.Exclusive(ctx, filepath.Join(m.root, ".lock"))
}

// exe returns what the init is executed from, worked out once: the lean
// init of package initbin (written once into the root, read-only, named by
// its content), or this binary when the build carries none. As real root
// it is a read-only detached bind of that file (file != nil; path ""), so
// that /proc/1/exe cannot be written from inside; rootless it is the
// file's path (nsinit protects itself; path "" = /proc/self/exe).
// The installed file is held (initbin.Hold) until Close, so that no gc,
// of this build or another, removes it while this Manager may launch.
func (m *Manager) exe() (file *os.File, path string) {
	m.exeOnce.Do(func() {
		src := "/proc/self/exe"
		p, err := initbin.Install(m.root)
		if err == nil {
			// Held until Close: a gc of another build, in any process,
			// leaves the file while this Manager may launch from it.
			m.exeHold, err = initbin.Hold(p)
		}
		switch {
		case err == nil:
			src, m.exePath = p, p
		case errors.Is(err, initbin.ErrNone):
		default:
			m.log.Warn("lean init not installed; sandboxes start from this binary", "err", err)
		}
		if os.Geteuid() != 0 {
			return
		}
		fd, err := sys.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE)
		if err != nil {
			m.exeErr = err
			return
		}
		if err := sys.SetAttr(fd, unix.MOUNT_ATTR_RDONLY, 0, false, src); err != nil {
			unix.Close(fd)
			m.exeErr = err
			return
		}
		m.exeFD = os.NewFile(uintptr(fd), "exe")
	})
	if m.exeErr != nil {
		m.log.Debug("no read-only bind of the binary; the init protects itself", "err", m.exeErr)
	}
	if m.exeFD != nil {
		return m.exeFD, ""
	}
	return nil, m.exePath
}

// Close waits for the removals of the sandboxes this Manager destroyed
// (Destroy leaves them to the background) and releases what the Manager
// holds (the read-only bind of the binary). It returns what those
// removals failed to do (each was logged too; gc finishes it). Sandboxes
// it launched are not affected: their handles still run commands in them
// and destroy them (a Destroy after Close removes the sandbox before it
// returns: nobody would wait for a removal in the background). A Launch
// after Close fails with ErrClosed; Close waits for the launches under
// way.
func (m *Manager) Close() error {
	m.launchMu.Lock()
	m.shut = true
	m.launchMu.Unlock()
	m.bg.close()
	m.exeOnce.Do(func() {}) // no bind made after Close
	m.bgMu.Lock()
	err := errors.Join(m.bgErrs...)
	m.bgErrs = nil
	m.bgMu.Unlock()
	if m.exeFD != nil {
		err = errors.Join(err, m.exeFD.Close())
	}
	if m.exeHold != nil {
		_ = m.exeHold.Close() // read-only; closing releases the hold: no launch of ours is under way
	}
	m.usernsMu.Lock()
	for _, ns := range m.userns {
		_ = ns.Close() // a user namespace fd: the idmapped mounts made with it hold their own reference
	}
	m.userns, m.closed = nil, true
	m.usernsMu.Unlock()
	return err
}

// randomHex returns n random bytes in hex, for names nobody else picks.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// generateName makes a sandbox name like "lb-3f9a1c2e": the one place
// names are generated (Spec.Name ""), retried by Launch when taken.
func generateName() string { return "lb-" + randomHex(4) }

// Launch starts a sandbox and returns once its init is ready (and its main
// command started). The sandbox dies with the calling process unless
// Detach is called. On error nothing is left behind.
func (m *Manager) Launch(ctx context.Context, spec Spec) (*Sandbox, error) {
	m.launchMu.RLock()
	defer m.launchMu.RUnlock()
	if m.shut {
		return nil, fmt.Errorf("launch sandbox: %w", ErrClosed)
	}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("launch sandbox: %w", err)
	}
	if err := spec.checkPaths(); err != nil {
		return nil, fmt.Errorf("launch sandbox: %w", err)
	}
	spec.normalize()
	if spec.Network == NetworkPrivate && m.opts.AttachNetwork == nil {
		return nil, fmt.Errorf("launch sandbox: network %q is not available in this build: use none or host", spec.Network)
	}
	plan, err := planLimits(spec.Limits)
	if err != nil {
		return nil, fmt.Errorf("launch sandbox: %w", err)
	}
	if plan.nproc > 0 && !m.mapping.Single() {
		// The kernel counts RLIMIT_NPROC per uid: with more than one id
		// mapped, a workload that changes uid (it has CAP_SETUID) starts
		// a new count. Said, not hidden.
		plan.applied["pids"] += rlimitPerUID
	}
	name := spec.Name
	generated := name == ""
	var (
		lk      *lockfile.Lock
		garbage []string
	)
	defer func() { m.removeGarbage(context.WithoutCancel(ctx), garbage) }()
	for try := 0; ; try++ {
		if generated {
			name = generateName()
		}
		var g []string
		lk, g, err = m.create(ctx, name, spec.Takeable)
		garbage = append(garbage, g...)
		if errors.Is(err, errdefs.ErrExists) && generated && try < 5 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("launch sandbox %s: %w", name, err)
		}
		break
	}
	sb, err := m.start(ctx, name, spec, plan, lk)
	if err != nil {
		lk.Close()
		if rerr := m.remove(context.WithoutCancel(ctx), name); rerr != nil {
			m.log.Warn("clean up after a failed launch", "sandbox", name, "err", rerr)
		}
		return nil, fmt.Errorf("launch sandbox %s: %w", name, err)
	}
	return sb, nil
}

// create makes the sandbox's directory and takes its name lock; ErrExists
// when a sandbox of that name is running or exited. A dead one's leftovers
// are removed first. A pooled sandbox (Spec.Takeable) is marked so before
// it shows as running, until the pool hands it out (Sandbox.Unpool).
//
// Cheaply, it also sets aside what crashed processes left (dead
// sandboxes, half-removed directories): the caller removes the returned
// paths once its own launch is done.
func (m *Manager) create(ctx context.Context, name string, pooled bool) (*lockfile.Lock, []string, error) {
	g, err := m.globalLock(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer g.Close()
	garbage := m.setAside()
	// The first launch of this process installs the lean init under the
	// global lock, so that Collect, under it too, can tell the temporary
	// file of an install that was killed from one under way.
	m.exe()
	if _, err := m.targetsLayer(); err != nil {
		return nil, garbage, err
	}
	lk, err := m.createLocked(ctx, name, pooled)
	return lk, garbage, err
}

// setAside renames dead sandboxes' directories to .rm- entries, under the
// global lock, and returns those and any .rm- entries a crash left.
func (m *Manager) setAside() []string {
	ents, err := os.ReadDir(m.root)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".rm-") {
			if removing(filepath.Join(m.root, n)) {
				continue // a live process (maybe this one) is removing it
			}
			out = append(out, filepath.Join(m.root, n))
			continue
		}
		if !e.IsDir() || !names.Valid(n) {
			continue
		}
		// Every launch looks at every sandbox here, under the global
		// lock: a running one (its init holds the lock) costs one probe.
		if locked, err := held(filepath.Join(m.root, n, "lock")); err != nil || locked {
			continue
		}
		if info, err := m.statusOf(n, false); err != nil || info.Status != StatusDead {
			continue
		}
		lk, err := lockBriefly(filepath.Join(m.root, n, "lock"))
		if err != nil {
			continue
		}
		aside := filepath.Join(m.root, ".rm-"+n+"-"+randomHex(5))
		if os.Rename(filepath.Join(m.root, n), aside) == nil {
			m.log.Info("removing dead sandbox", "sandbox", n)
			out = append(out, aside)
		}
		lk.Close()
	}
	return out
}

// removeGarbage removes what setAside returned.
func (m *Manager) removeGarbage(ctx context.Context, paths []string) {
	for _, p := range paths {
		if err := m.removeDir(ctx, p); err != nil {
			m.log.Warn("remove a dead sandbox's directory", "path", p, "err", err)
		}
	}
}

func (m *Manager) createLocked(ctx context.Context, name string, pooled bool) (*lockfile.Lock, error) {
	dir := m.dir(name)
	if _, err := os.Lstat(dir); err == nil {
		st, _ := m.statusOf(name, false)
		if st.Status != StatusDead {
			return nil, fmt.Errorf("sandbox %s: %w (%s)", name, errdefs.ErrExists, st.Status)
		}
		if err := m.removeLocked(ctx, name, true); err != nil {
			return nil, err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("sandbox %s: %w", name, errdefs.ErrExists)
		}
		return nil, err
	}
	var err error
	if pooled {
		err = os.WriteFile(filepath.Join(dir, pooledFile), nil, 0o600)
	}
	var lk *lockfile.Lock
	if err == nil {
		lk, err = lockfile.TryExclusive(filepath.Join(dir, "lock"))
	}
	if err != nil {
		// Nobody else holds the lock yet: the directory is ours to
		// remove. One left is a dead sandbox, which gc removes; say so.
		if rerr := os.RemoveAll(dir); rerr != nil {
			m.log.Warn("remove a sandbox directory after a failed lock", "path", dir, "err", rerr)
		}
		return nil, err
	}
	return lk, nil
}

// start does the launch proper in a created directory.
func (m *Manager) start(ctx context.Context, name string, spec Spec, plan *limitPlan, lk *lockfile.Lock) (*Sandbox, error) {
	dir := m.dir(name)
	rw := dir
	if spec.WritableDir != "" {
		rw = spec.WritableDir
	}
	for _, d := range []string{filepath.Join(rw, "upper"), filepath.Join(rw, "work"), filepath.Join(dir, "rootfs")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	// The overlay is mounted by the sandbox's root: with a private range
	// it owns the upper and work dirs (and what the sandbox writes there
	// is owned by range ids, never by host root).
	if err := m.chownToRoot(filepath.Join(rw, "upper"), filepath.Join(rw, "work")); err != nil {
		return nil, err
	}
	// After the chown, which clears set-id bits.
	if err := os.Chmod(filepath.Join(rw, "upper"), rootMode(spec.Layers)); err != nil {
		return nil, err
	}
	if err := m.letRootSearch(dir); err != nil {
		return nil, err
	}
	st := state{Version: 1, Name: name, Snapshot: spec.Snapshot, CreatedAt: time.Now().UTC(), Volumes: spec.Volumes, Command: spec.Command, Network: spec.Network, WritableDir: spec.WritableDir, Limits: plan.applied, StopSignal: int(spec.StopSignal)}
	if plan.cgroup != nil {
		// Recorded before it is made: removing the directory removes it.
		st.Cgroup = plan.cgroup.join(name + "-" + randomHex(5))
	}
	if err := createState(dir, st); err != nil {
		return nil, err
	}
	if st.Cgroup != nil {
		if err := st.Cgroup.create(spec.Limits); err != nil {
			return nil, err
		}
	}
	hostname := spec.Hostname
	if hostname == "" {
		hostname = name
	}
	cfg := nsinit.Config{
		Version: nsinit.Version,
		Name:    hostname,
		RootDir: filepath.Join(dir, "rootfs"),
		// On the init's own tmpfs, not in the sandbox's directory.
		Etc:        etcFiles(hostname, spec.Network),
		Env:        spec.Env,
		Workdir:    spec.Workdir,
		User:       spec.User,
		Network:    spec.Network,
		Timeout:    spec.Timeout,
		DevptsGID5: gidMapped(m.mapping, 5),
		Nproc:      plan.nproc,
		ShmBytes:   spec.Limits.ShmBytes,
		Cgroup:     st.Cgroup.mounts(),
		// At the memory limit the OOM killer takes a workload, not
		// the init.
		WorkloadOOMScore: workloadOOMScore(st.Cgroup),

		AllowUserNamespaces: spec.AllowUserNamespaces,
		Pooled:              spec.Takeable,
		// A sandbox that may stay once ended (not one its launcher
		// removes at once: DetachedTeardown, as the caller asked it,
		// whether or not it applies) has its upper synced before its
		// status is recorded, for a commit after a power cut: the
		// filesystem of the lock file, the store's, and first that of
		// the upper when it is another (a WritableDir on a loop-mounted
		// image: spawnInit's openUpperFS).
		SyncOnEnd: !spec.DetachedTeardown,
	}
	// The store's targets layer at the bottom (made by create).
	layers := append([]string{filepath.Join(m.root, targetsName)}, spec.Layers...)
	ov := overlaySpec(layers, rw)
	if err := ov.Validate(); err != nil {
		return nil, err
	}
	cfg.Root = nsinit.FSMount{FSType: "overlay", Params: ov.Params()}
	for i, mt := range spec.Mounts {
		nm := nsinit.Mount{Source: mt.Source, Target: mt.Target, ReadOnly: mt.ReadOnly, Fill: mt.Fill, FillRecord: string(mt.FillRecord)}
		if mt.Overlay {
			upper, work, err := m.copyOnWriteDirs(rw, i, mt.Source)
			if err != nil {
				return nil, fmt.Errorf("mount %s: %w", mt.Target, err)
			}
			// The lower dir's value is a placeholder: whoever mounts it
			// names Source by the descriptor it opened.
			nm.Overlay = overlay.CopyOnWrite(mt.Source, upper, work)
		}
		cfg.Mounts = append(cfg.Mounts, nm)
	}
	var h hostSide
	defer h.close()
	if hostPrepares() {
		if err := h.newPasser(); err != nil {
			return nil, err
		}
		if err := m.prepareBinds(&cfg, spec.Mounts, &h); err != nil {
			return nil, err
		}
	}
	return m.spawnInit(ctx, name, spec, cfg, st, lk, &h)
}

// copyOnWriteDirs makes the upper and work dirs of the i-th mount, a
// copy-on-write bind of source, under the sandbox's writable directory
// rw (removed with it). The upper dir is the merged root of the mount, so
// it gets source's permissions and the owner source shows as inside: the
// sandbox's root with a private range (the lower is idmapped that way),
// source's own owner with the identity mapping, the caller rootless.
func (m *Manager) copyOnWriteDirs(rw string, i int, source string) (upper, work string, _ error) {
	var st unix.Stat_t
	if err := unix.Stat(source, &st); err != nil {
		return "", "", &os.PathError{Op: "stat", Path: source, Err: err}
	}
	dir := filepath.Join(rw, "binds", strconv.Itoa(i))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	upper, work = filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	if err := os.Mkdir(upper, 0o700); err != nil {
		return "", "", err
	}
	if err := os.Mkdir(work, 0o700); err != nil {
		return "", "", err
	}
	if os.Geteuid() == 0 {
		uid, gid := st.Uid, st.Gid
		if base, isRange := m.mapping.PrivateRange(); isRange {
			uid, gid = base, base
			if g, ok := m.mapping.HostGID(0); ok {
				gid = g
			}
		}
		if err := os.Lchown(upper, int(uid), int(gid)); err != nil {
			return "", "", err
		}
	}
	// After the chown, which clears set-id bits.
	if err := os.Chmod(upper, fileModeOf(st.Mode)); err != nil {
		return "", "", err
	}
	return upper, work, nil
}

// rootMode is the mode of the sandbox's "/": its top layer's root's (as
// the image has it), else 0755. overlayfs shows the upper dir's own mode
// as the merged root, and a Mkdir's 0755 is cut by the launcher's umask:
// under umask 077 every sandbox's root was 0700, closed to all its users
// but root.
func rootMode(layers []string) os.FileMode {
	if len(layers) > 0 {
		var st unix.Stat_t
		if err := unix.Stat(layers[len(layers)-1], &st); err == nil {
			return fileModeOf(st.Mode)
		}
	}
	return 0o755
}

// fileModeOf turns a stat mode's permission bits (set-id and sticky
// included) into an os.FileMode.
func fileModeOf(m uint32) os.FileMode {
	fm := os.FileMode(m & 0o777)
	if m&unix.S_ISUID != 0 {
		fm |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		fm |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		fm |= os.ModeSticky
	}
	return fm
}

// chownToRoot gives paths to the host id of the sandbox's root, as real
// root (with the identity mapping that is root itself). Rootless, the
// caller already is the sandbox's root.
// mapsOwner reports whether a sandbox of the store maps the owner of the
// file st describes: its root may then chmod or chown it, and reopen it
// for writing, through a descriptor it holds.
func (m *Manager) mapsOwner(st *unix.Stat_t) bool {
	return m.mapping.MapsHostUID(st.Uid)
}

// rootOwner returns the host ids of the sandboxes' root when it is not
// this process's own (real root with a private range): what the
// workload's end of a stdio pipe is chowned to.
func (m *Manager) rootOwner() (uid, gid int, ok bool) {
	if os.Geteuid() != 0 {
		return 0, 0, false
	}
	u, ok1 := m.mapping.HostUID(0)
	g, ok2 := m.mapping.HostGID(0)
	if !ok1 || !ok2 || (u == 0 && g == 0) {
		return 0, 0, false
	}
	return int(u), int(g), true
}

// nullMapped reports whether a sandbox of the store maps the owner of the
// host's /dev/null (root: the identity mapping).
func (m *Manager) nullMapped() bool {
	m.nullOnce.Do(func() {
		f, err := devNull()
		var st unix.Stat_t
		if err == nil && unix.Fstat(int(f.Fd()), &st) == nil {
			m.nullOwned = m.mapsOwner(&st)
		} else {
			m.nullOwned = true // cannot tell: the careful answer
		}
	})
	return m.nullOwned
}

func (m *Manager) chownToRoot(paths ...string) error {
	uid, gid, ok := m.rootOwner()
	if !ok {
		return nil
	}
	for _, p := range paths {
		if err := os.Lchown(p, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

func gidMapped(mp idmap.Mapping, gid uint32) bool {
	_, ok := mp.HostGID(gid)
	return ok
}

// etcFiles are the contents of a sandbox's /etc/hostname, /etc/hosts and
// /etc/resolv.conf (the last one replaced when a network is attached),
// which the init keeps on a tmpfs of its own (nsinit.Config.Etc).
func etcFiles(hostname, network string) []nsinit.File {
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + hostname + "\n"
	resolv := []byte("# lightbox: no network (--network none)\n")
	if network == NetworkHost {
		if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
			resolv = b
		}
		if b, err := os.ReadFile("/etc/hosts"); err == nil {
			hosts = string(b) + "127.0.1.1\t" + hostname + "\n"
		}
	}
	return []nsinit.File{
		{Target: "/etc/hostname", Data: []byte(hostname + "\n")},
		{Target: "/etc/hosts", Data: []byte(hosts)},
		{Target: "/etc/resolv.conf", Data: resolv},
	}
}

// pidStart reads a process's start time (field 22 of /proc/<pid>/stat),
// which tells a pid from a later reuse of it.
func pidStart(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, errors.New("bad /proc stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

func readState(dir string) (state, error) {
	var st state
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return st, err
	}
	err = unmarshalState(b, &st)
	return st, err
}

// status tells a sandbox's status from its lock and what the init wrote
// in it.
func (m *Manager) status(name string) (info Info, _ error) {
	return m.statusOf(name, true)
}

// statusOf is status; without usage, it leaves Usage and OOMKilled unset
// and reads no cgroup file (a dozen reads, memory.stat among them, that
// Attach, an exec or a destroy does not need).
func (m *Manager) statusOf(name string, usage bool) (Info, error) {
	info, _, err := m.statusState(name, usage)
	return info, err
}

// statusState is statusOf that also returns the state it read (zero when
// state.json could not be read or parsed).
func (m *Manager) statusState(name string, usage bool) (info Info, st state, _ error) {
	dir := m.dir(name)
	rs, serr := readState(dir)
	if serr == nil {
		st = rs
	}
	info = Info{Name: name, Snapshot: rs.Snapshot, CreatedAt: rs.CreatedAt, Volumes: rs.Volumes, Command: rs.Command, WritableDir: rs.WritableDir, Limits: rs.Limits}
	defer func() {
		if !usage || rs.Cgroup == nil || info.Status == StatusDead {
			return
		}
		if u, err := rs.Cgroup.usage(); err == nil {
			info.OOMKilled = u.OOMKills > 0
			if info.Status == StatusRunning {
				info.Usage = &u
			}
		}
	}()
	locked, err := held(filepath.Join(dir, "lock"))
	if err != nil {
		return info, st, err
	}
	if locked {
		info.Status = StatusRunning
		info.Pid = rs.Pid
		if usage && len(rs.NetPids) > 0 {
			// A killed (or crashed) stack leaves the sandbox running with
			// no network; nothing else would say so.
			if start, err := pidStart(rs.NetPids[0].Pid); err != nil || start != rs.NetPids[0].Start {
				info.NetworkLost = true
			}
		}
		return info, st, nil
	}
	if serr != nil {
		// No state and no holder of the lock: there may be no sandbox
		// at all (destroyed, its directory set aside for removal); that
		// is no dead sandbox.
		if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
			return info, st, err
		}
	}
	info.Status = StatusDead
	b, err := os.ReadFile(filepath.Join(dir, "lock"))
	// A status beside a state.json that is not there whole (a crash
	// of the machine lost or tore it) is no exited sandbox: what it ran,
	// its snapshot and its cgroups are unknown, so it could be neither
	// committed nor inspected; it is dead, and gc's.
	if err == nil && len(b) > 0 && serr == nil {
		if fs, err := nsinit.UnmarshalStatus(b); err == nil {
			info.Status, info.ExitCode, info.TimedOut = StatusExited, fs.ExitCode, fs.TimedOut
		}
	}
	if serr != nil && !errors.Is(serr, os.ErrNotExist) && !tornState(serr) {
		return info, st, serr
	}
	return info, st, nil
}

// tornState reports whether a state.json that would not parse was cut
// short: a launch killed while it wrote it in place (createState), before
// it made anything the state records. Its sandbox reads as dead.
func tornState(err error) bool {
	var se *json.SyntaxError
	return errors.As(err, &se) || errors.Is(err, io.ErrUnexpectedEOF)
}

// List describes every sandbox under the root, by name.
func (m *Manager) List(ctx context.Context) ([]Info, error) {
	ents, err := os.ReadDir(m.root)
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	var out []Info
	for _, e := range ents {
		if !e.IsDir() || !names.Valid(e.Name()) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		info, err := m.status(e.Name())
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // removed meanwhile
			}
			return nil, fmt.Errorf("list sandboxes: %s: %w", e.Name(), err)
		}
		if _, err := os.Lstat(filepath.Join(m.dir(e.Name()), detachedFile)); err == nil {
			info.Detached = true
		}
		if _, err := os.Lstat(filepath.Join(m.dir(e.Name()), pooledFile)); err == nil {
			info.Pooled = true
		}
		out = append(out, info)
	}
	return out, nil
}

// GC removes what crashed processes left: the directories (upper, work,
// socket, logs, lock) of dead sandboxes — whose init is gone without a
// recorded status — and scratch files. Running and exited sandboxes stay.
func (m *Manager) GC(ctx context.Context) error {
	_, err := m.Collect(ctx)
	return err
}

// Collect is GC that also says what it removed: the dead sandboxes, and
// the lean init programs of other lightbox builds that no process may
// still launch from (initbin.RemoveStale has the rule). On error, what
// was removed before it is still returned.
func (m *Manager) Collect(ctx context.Context) (*Collected, error) {
	m.bg.Wait() // this process's own removals first: GC leaves no .rm- entry it could finish
	c := &Collected{}
	g, err := m.globalLock(ctx)
	if err != nil {
		return c, fmt.Errorf("gc sandboxes: %w", err)
	}
	defer g.Close()
	ents, err := os.ReadDir(m.root)
	if err != nil {
		return c, fmt.Errorf("gc sandboxes: %w", err)
	}
	var errs []error
	// A launch killed while it installed the lean init left its
	// temporary file; under the global lock no install is under way.
	if tmps, err := initbin.RemoveTemps(m.root); err != nil {
		errs = append(errs, fmt.Errorf("remove what a killed install of the init left: %w", err))
	} else {
		for _, p := range tmps {
			m.log.Info("removed what a killed install of the init left", "path", p)
		}
	}
	// Under the global lock too: every process installs and holds its
	// program under it, so none is removed between the two.
	c.Inits, err = initbin.RemoveStale(m.root)
	if err != nil {
		errs = append(errs, err)
	}
	for _, n := range c.Inits {
		m.log.Info("removed the sandbox init of another lightbox build", "path", filepath.Join(m.root, n))
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return c, err
		}
		if strings.HasPrefix(e.Name(), ".rm-") {
			aside := filepath.Join(m.root, e.Name())
			if removing(aside) {
				continue // another process is removing it
			}
			errs = append(errs, m.removeDir(ctx, aside))
			continue
		}
		if isTargetsScratch(e.Name()) {
			errs = append(errs, os.RemoveAll(filepath.Join(m.root, e.Name())))
			continue
		}
		if !e.IsDir() || !names.Valid(e.Name()) {
			continue
		}
		info, err := m.status(e.Name())
		if err == nil && info.Status == StatusRunning {
			// A commit killed while the sandbox was frozen left its
			// processes stopped.
			if err := thawLeftover(m.dir(e.Name()), true); err != nil {
				errs = append(errs, fmt.Errorf("sandbox %s: resume stopped processes: %w", e.Name(), err))
			}
		}
		if err != nil || info.Status != StatusDead {
			continue
		}
		m.log.Info("removing dead sandbox", "sandbox", e.Name())
		if err := m.removeLocked(ctx, e.Name(), false); err != nil {
			errs = append(errs, err)
		} else {
			c.Sandboxes = append(c.Sandboxes, e.Name())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("gc sandboxes: %w", err)
	}
	return c, nil
}

// remove removes a sandbox that is not running.
func (m *Manager) remove(ctx context.Context, name string) error {
	g, err := m.globalLock(ctx)
	if err != nil {
		return err
	}
	defer g.Close()
	return m.removeLocked(ctx, name, true)
}

// removeLocked removes the directory of a sandbox that is not running
// (in the background when asked: see below), under the global lock: it takes the name lock (so a live init keeps its
// directory), renames the directory aside (so the name is free at once and
// a crash mid-removal leaves a .rm- entry for GC), and removes it.
func (m *Manager) removeLocked(ctx context.Context, name string, background bool) error {
	dir := m.dir(name)
	lk, err := lockBriefly(filepath.Join(dir, "lock"))
	if err != nil {
		if errors.Is(err, lockfile.ErrLocked) {
			return fmt.Errorf("remove sandbox %s: %w: it is running", name, errdefs.ErrInUse)
		}
		if _, serr := os.Lstat(dir); errors.Is(serr, os.ErrNotExist) {
			return nil
		}
		// No lock file (a crash before it was made): nothing holds it.
	}
	aside := filepath.Join(m.root, ".rm-"+name+"-"+randomHex(5))
	if err := os.Rename(dir, aside); err != nil {
		lk.Close()
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove sandbox %s: %w", name, err)
	}
	// The name is free now. The cgroup and the tree go after we return
	// (in the background), still holding the name lock that moved with
	// the directory, so that the caller waits for neither (bench/NOTES.md:
	// ~1 ms for the cgroups, ~1 ms of unlinking). The cgroup's name is the
	// sandbox's plus a random suffix, so a sandbox of the same name does
	// not meet it; what is left in it is killed then. The shared parents
	// go too when empty: a launch making its cgroup beside them meanwhile
	// tries again (retryParentGone). A crash leaves the .rm- entry, with
	// its state naming the cgroup, for GC, which skips one whose lock is
	// held; Close and GC wait for this process's removals.
	if background {
		if done, ok := m.bg.start(); ok {
			go func() {
				defer done()
				defer lk.Close()
				m.removeLater(ctx, name, aside)
			}()
			return nil
		}
		// Closed: nobody would wait for a removal in the background.
	}
	defer lk.Close()
	if err := m.removeDir(ctx, aside); err != nil {
		return fmt.Errorf("remove sandbox %s: %w", name, err)
	}
	return nil
}

// bgWork tracks the background removals. Unlike a sync.WaitGroup it lets
// one start while another goroutine waits (GC and Close wait while other
// goroutines Destroy: a WaitGroup's Wait panicked "WaitGroup is reused
// before previous Wait has returned"), and Wait waits for the removals
// under way when it was called, not until none runs (which, with Destroys
// coming steadily, might be never). Its zero value is ready.
type bgWork struct {
	mu     sync.Mutex
	jobs   map[chan struct{}]struct{}
	closed bool
}

// start records a removal; the returned function says it ended. ok is
// false once close was called: the caller removes in the foreground.
func (b *bgWork) start() (done func(), ok bool) {
	ch := make(chan struct{})
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, false
	}
	if b.jobs == nil {
		b.jobs = map[chan struct{}]struct{}{}
	}
	b.jobs[ch] = struct{}{}
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		delete(b.jobs, ch)
		b.mu.Unlock()
		close(ch)
	}, true
}

// close makes later removals the callers' own (start says !ok) and
// waits for those under way: after Manager.Close nobody would wait for a
// removal left to the background (the process may exit at once), so a
// Destroy then removes before it returns.
func (b *bgWork) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.Wait()
}

// Wait waits for the removals started before it was called.
func (b *bgWork) Wait() { waitAll(b.pending()) }

// pending returns the removals under way, each a channel closed when it
// ends.
func (b *bgWork) pending() []chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Collect(maps.Keys(b.jobs))
}

func waitAll(chs []chan struct{}) {
	for _, ch := range chs {
		<-ch
	}
}

// removeLater removes the set-aside directory of sandbox name in a
// background removal (remove's, removeGoing's): a failure is logged and
// kept for Close to report; gc retries it.
func (m *Manager) removeLater(ctx context.Context, name, aside string) {
	if err := m.removeDir(context.WithoutCancel(ctx), aside); err != nil {
		m.log.Warn("removing a destroyed sandbox; gc retries", "sandbox", name, "dir", aside, "err", err)
		m.bgMu.Lock()
		m.bgErrs = append(m.bgErrs, fmt.Errorf("remove sandbox %s (gc retries): %w", name, err))
		m.bgMu.Unlock()
	}
}

// removeGoing frees the name of a sandbox whose init said it is going
// (no other process of the sandbox left, its leases closed) but, until
// it exits, still holds the name lock: the directory is renamed aside
// under the global lock, and removed in the background once the init is
// reaped (initDone), with the name lock then taken (Close and GC wait for
// this process's removals). Until then the init's hold of the lock tells
// other processes' gc and set-aside that the entry is busy; after a
// crash they find the .rm- entry with its lock free and its state naming
// the cgroups.
func (m *Manager) removeGoing(ctx context.Context, name string, initDone <-chan struct{}) error {
	g, err := m.globalLock(ctx)
	if err != nil {
		return err
	}
	aside := filepath.Join(m.root, ".rm-"+name+"-"+randomHex(5))
	err = os.Rename(m.dir(name), aside)
	g.Close()
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove sandbox %s: %w", name, err)
	}
	earlyDestroys.Add(1)
	finish := func(later bool) error {
		<-initDone
		if removeGoingHook != nil {
			removeGoingHook()
		}
		lk, err := lockBriefly(filepath.Join(aside, "lock"))
		if errors.Is(err, lockfile.ErrLocked) {
			return nil // taken meanwhile by another process's gc or set-aside, which removes it
		}
		defer lk.Close() // nil when there is no lock file: removed meanwhile, or never made
		if later {
			m.removeLater(ctx, name, aside)
			return nil
		}
		if err := m.removeDir(ctx, aside); err != nil {
			return fmt.Errorf("remove sandbox %s: %w", name, err)
		}
		return nil
	}
	done, ok := m.bg.start()
	if !ok {
		return finish(false) // closed: nobody would wait for it in the background
	}
	go func() {
		defer done()
		_ = finish(true) // removeLater logs and keeps its error for Close
	}()
	return nil
}

// removeGoingHook, when set (tests), runs in removeGoing's background
// removal once the init is reaped; earlyDestroys counts the Destroys that
// returned on the init's word (tests).
var (
	removeGoingHook func()
	earlyDestroys   atomic.Int64
)

// removing reports whether a live process holds the name lock of a
// directory set aside for removal (.rm-): it is removing it in the
// background (removeLocked).
func removing(aside string) bool {
	held, err := held(filepath.Join(aside, "lock"))
	return err == nil && held
}

// removeDir removes a tree, including what other ids of the store's range
// own (internal/rmtree does that from inside the user namespace).
//
// The sandbox's cgroup goes first (what is left in it is killed).
func (m *Manager) removeDir(ctx context.Context, dir string) error {
	if st, err := readState(dir); err == nil && st.Cgroup != nil {
		if err := st.Cgroup.removeEmpty(ctx); err != nil {
			return err
		}
		st.Cgroup.removeParents()
	}
	// The lock goes last: while the rest goes, a probe of it (removing)
	// tells a launch's set-aside and gc in other processes that this one
	// is at work here. What this process may not remove (rootless, files
	// of other ids) RemoveAll finishes, in a user namespace if need be.
	_ = rmtree.RemoveContents(dir, -1, "lock") // best effort: RemoveAll reports what stays
	return rmtree.RemoveAll(ctx, dir, m.mapping)
}

// held reports whether the init holds a sandbox's lock (exclusively). The
// probe is a shared lock, so probes (List, status checks of other
// processes) never make each other see a lock that is not there; a
// missing file is not held.
func held(path string) (bool, error) { return lockfile.HeldExclusive(path) }

// lockBriefly takes a sandbox's lock exclusively, waiting a moment for
// concurrent probes (held) to let go: a live init holds it for good, and
// then the error wraps lockfile.ErrLocked.
func lockBriefly(path string) (*lockfile.Lock, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond) // bounded local wait, not a caller's operation
	defer cancel()
	lk, err := lockfile.Exclusive(ctx, path)
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("lock %s: %w", path, lockfile.ErrLocked)
	}
	return lk, err
}
