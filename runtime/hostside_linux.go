package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"syscall"

	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/sys"
	"github.com/beamhop/lightbox/nsinit"
	"golang.org/x/sys/unix"
)

// hostSide collects what the runtime prepares, as real root, for an init
// that cannot reach it itself, and sends it on the init's Passer socket:
// see "Descriptors from the host side" in nsinit/proto.go.
//
// With a socket (a launch), what it collects goes there openChunk at a
// time as it is made, before the init even runs (the socket queues it),
// and is closed here: this process never holds a launch's worth of
// binds at once. Its threads share one descriptor table, and a table
// they share grows only after an RCU grace period (initTableFor): a
// `lightbox run` with 30 binds held ~70 descriptors and waited ~9 ms for
// one, at every launch. Without a socket (a take) it holds them until
// they are sent.
type hostSide struct {
	files []*os.File // collected, not sent yet
	sent  int        // sent on sock already
	// sock is our end of the init's Passer socket, peer the init's.
	sock, peer *os.File
}

// newPasser makes the Passer socket pair h sends on.
func (h *hostSide) newPasser() error {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("descriptor socket: %w", err)
	}
	h.sock, h.peer = os.NewFile(uintptr(pair[0]), "passer"), os.NewFile(uintptr(pair[1]), "passer")
	return nil
}

// add collects f, to be sent; it returns the number the init knows it by.
func (h *hostSide) add(f *os.File) nsinit.PassedFD {
	h.files = append(h.files, f)
	return nsinit.PassedFD(h.sent + len(h.files))
}

// fds is the descriptors of what h collected and has not sent, in order.
func (h *hostSide) fds() []int {
	fds := make([]int, len(h.files))
	for i, f := range h.files {
		fds[i] = int(f.Fd())
	}
	return fds
}

// flush sends what h collected when it makes a chunk, if the socket takes
// it without waiting (with the default socket buffer it queues 278 such
// messages, ~4 400 descriptors: a launch with more holds the rest until
// the init reads, or until send).
func (h *hostSide) flush() error {
	if h.sock == nil || len(h.files) < openChunk {
		return nil
	}
	err := unix.Sendmsg(int(h.sock.Fd()), []byte{0}, unix.UnixRights(h.fds()...), nil, unix.MSG_DONTWAIT)
	switch {
	case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
		return nil // sent with the rest, once the init reads
	case err != nil:
		return fmt.Errorf("init: send descriptors: %w", err)
	}
	h.sent += len(h.files)
	h.closeFiles()
	return nil
}

func (h *hostSide) closeFiles() {
	for _, f := range h.files {
		_ = f.Close() // detached mounts and files we opened: once sent the init holds its own, unsent the launch failed
	}
	h.files = nil
}

func (h *hostSide) close() {
	h.closeFiles()
	for _, f := range []*os.File{h.sock, h.peer} {
		if f != nil {
			_ = f.Close() // a socket end for SCM_RIGHTS: what was queued is the init's, or goes with the socket
		}
	}
	h.sock, h.peer = nil, nil
}

// letRootSearch lets the sandbox's root search dir (a sandbox's own
// directory, root's, mode 0700): group search for the range's root gid.
// The init finds its root dir below it by name (see
// nsinit.Config.RootParentFD); nothing else in it is open to that group.
func (m *Manager) letRootSearch(dir string) error {
	if !hostPrepares() {
		return nil
	}
	gid, ok := m.mapping.HostGID(0)
	if !ok || gid == 0 {
		return nil
	}
	if err := os.Lchown(dir, 0, int(gid)); err != nil {
		return err
	}
	return os.Chmod(dir, 0o710)
}

// hostPrepares reports whether this process prepares the init's
// descriptors: as real root. Rootless, the caller is the sandbox's root
// and the init reaches its store and binds itself.
func hostPrepares() bool { return os.Geteuid() == 0 }

// prepareBinds makes every bind of cfg a detached mount, ready to be
// moved into place by the init: recursive, private, nosuid and nodev,
// read-only when asked, and — for host paths of a store with a private
// range — idmapped so that the sandbox's root acts as the source's owner.
// A read-only volume to fill is passed writable: the init fills it and
// makes it read-only before anything runs in the sandbox
// (nsinit.Mount.Fill).
// mounts are the specs cfg.Mounts were made from, in the same order.
func (m *Manager) prepareBinds(cfg *nsinit.Config, mounts []MountSpec, h *hostSide) error {
	for i := range cfg.Mounts {
		mt := &cfg.Mounts[i]
		bm := *mt
		if bm.Fill {
			bm.ReadOnly = false
		}
		f, err := m.bindFD(bm, false)
		if err != nil {
			return fmt.Errorf("mount %s: %w", mt.Target, err)
		}
		h.add(f) // closed with the rest, whatever happens next
		base, isRange := m.mapping.PrivateRange()
		if isRange && mounts[i].Volume == "" {
			if err := idmapBind(f, *mt, base, m.idmapUserns); err != nil {
				return fmt.Errorf("mount %s: %w", mt.Target, err)
			}
		}
		if mt.Overlay != nil {
			// The bind (idmapped as above) is the overlay's lower layer.
			// The overlay is ours: the sandbox's root could not use a
			// detached mount of the host's as a layer (overlayfs clones
			// it, which takes privilege over its mount namespace).
			ov, err := copyOnWrite(f, *mt)
			if err != nil {
				return fmt.Errorf("mount %s: %w", mt.Target, err)
			}
			h.add(ov)
			mt.Overlay = nil
		}
		mt.FD = nsinit.PassedFD(h.sent + len(h.files))
		if err := h.flush(); err != nil {
			return err
		}
	}
	return nil
}

// copyOnWrite mounts the overlay of mt.Overlay with the detached bind
// lower as its lower layer, and returns it detached (nosuid, nodev).
func copyOnWrite(lower *os.File, mt nsinit.Mount) (*os.File, error) {
	// The lower layer is never written through the overlay; read-only
	// all the same.
	if err := sys.SetAttr(int(lower.Fd()), unix.MOUNT_ATTR_RDONLY, 0, true, mt.Source); err != nil {
		return nil, err
	}
	params := slices.Clone(mt.Overlay)
	for i := range params {
		if params[i].Key == "lowerdir" {
			params[i].Value = "/proc/self/fd/" + strconv.Itoa(int(lower.Fd()))
		}
	}
	fd, err := sys.FSMount("overlay", params, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV, mt.Target)
	goruntime.KeepAlive(lower)
	if err != nil {
		return nil, fmt.Errorf("copy-on-write overlay of %s: %w", mt.Source, err)
	}
	return os.NewFile(uintptr(fd), mt.Target), nil
}

// bindFD makes a detached recursive bind of mt.Source with the bind
// attributes set (not yet idmapped).
func (m *Manager) bindFD(mt nsinit.Mount, _ bool) (*os.File, error) {
	fd, err := sys.OpenTree(unix.AT_FDCWD, mt.Source, unix.OPEN_TREE_CLONE|unix.AT_RECURSIVE)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), mt.Source)
	attrs := uint64(unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV)
	if mt.ReadOnly {
		attrs |= unix.MOUNT_ATTR_RDONLY
	}
	if err := sys.SetBindAttr(fd, attrs, -1, mt.Source); err != nil {
		_ = f.Close() // an open_tree fd, never written: SetBindAttr's error is returned
		return nil, err
	}
	return f, nil
}

// idmapBind idmaps the detached bind f so that the owner of its source
// (uid and gid of the directory or file cloned) is the sandbox's root,
// and every other id of the range (base…base+65535) is itself. userns
// returns the user namespace with those maps (and how to let it go).
func idmapBind(f *os.File, mt nsinit.Mount, base uint32, userns func(base, uid, gid uint32) (*os.File, func(), error)) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return &os.PathError{Op: "stat", Path: mt.Source, Err: err}
	}
	ns, done, err := userns(base, st.Uid, st.Gid)
	if err != nil {
		return fmt.Errorf("idmapped bind of %s: %w", mt.Source, err)
	}
	defer done()
	attrs := uint64(unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV)
	if mt.ReadOnly {
		attrs |= unix.MOUNT_ATTR_RDONLY
	}
	if err := sys.SetBindAttr(int(f.Fd()), attrs, int(ns.Fd()), mt.Source); err != nil {
		return fmt.Errorf("idmapped bind of %s (owner uid %d gid %d, shown as the sandbox's root): %w: "+
			"the kernel or the filesystem refuses idmapped mounts (they need Linux 5.12 or later and a filesystem "+
			"that supports them, such as ext4, xfs, btrfs or tmpfs); bind a directory on such a filesystem, or use a volume",
			mt.Source, st.Uid, st.Gid, err)
	}
	return nil
}

// OwnerExtents is the id mapping of an idmapped bind in a store whose
// private range starts at base, for a source owned by owner: on disk,
// owner is the range's first id (the sandbox's root) and each other id
// of the range is itself; every other on-disk id shows as nobody. Each
// Range maps ContainerID (the id on disk) to HostID (the id the sandbox's
// user namespace maps).
func OwnerExtents(base, owner uint32) []idmap.Range {
	if owner == base {
		return []idmap.Range{{ContainerID: base, HostID: base, Size: idmap.RangeSize}}
	}
	out := []idmap.Range{{ContainerID: owner, HostID: base, Size: 1}}
	end := uint64(base) + idmap.RangeSize // one past the range
	if uint64(owner) > uint64(base) && uint64(owner) < end {
		if n := owner - base - 1; n > 0 {
			out = append(out, idmap.Range{ContainerID: base + 1, HostID: base + 1, Size: n})
		}
		if n := uint32(end - uint64(owner) - 1); n > 0 {
			out = append(out, idmap.Range{ContainerID: owner + 1, HostID: owner + 1, Size: n})
		}
		return out
	}
	return append(out, idmap.Range{ContainerID: base + 1, HostID: base + 1, Size: idmap.RangeSize - 1})
}

// maxUserns bounds the user namespaces a Manager keeps for idmapped binds.
const maxUserns = 64

// idmapUserns returns the user namespace that idmaps a bind whose source
// is owned by uid:gid onto the sandbox's root (OwnerExtents), and what to
// call once the mount is idmapped. The namespaces are kept, by owner,
// until Close: making one is a fork of this process (newIdmapUserns), ~1
// ms for a small one and ~35 ms a GiB of its memory for a large one
// (bench/NOTES.md, 2026-12-01), and the maps of an owner never change.
// Past maxUserns owners a namespace is made for the one mount.
func (m *Manager) idmapUserns(base, uid, gid uint32) (*os.File, func(), error) {
	m.usernsMu.Lock()
	defer m.usernsMu.Unlock()
	key := [2]uint32{uid, gid}
	if ns := m.userns[key]; ns != nil {
		return ns, func() {}, nil
	}
	ns, err := newIdmapUserns(OwnerExtents(base, uid), OwnerExtents(base, gid))
	if err != nil {
		return nil, nil, err
	}
	if len(m.userns) >= maxUserns || m.closed {
		return ns, func() { _ = ns.Close() }, nil // a user namespace fd: an idmapped mount holds its own reference
	}
	if m.userns == nil {
		m.userns = map[[2]uint32]*os.File{}
	}
	m.userns[key] = ns
	return ns, func() {}, nil
}

// newIdmapUserns returns a user namespace with the given maps, to idmap
// mounts with: a child of ours is cloned into it and stopped by ptrace
// at its exec, before it runs a single instruction of its own; its
// namespace is opened and the child killed.
func newIdmapUserns(uids, gids []idmap.Range) (*os.File, error) {
	conv := func(rs []idmap.Range) []syscall.SysProcIDMap {
		out := make([]syscall.SysProcIDMap, len(rs))
		for i, r := range rs {
			out[i] = syscall.SysProcIDMap{ContainerID: int(r.ContainerID), HostID: int(r.HostID), Size: int(r.Size)}
		}
		return out
	}
	// ptrace ties the child to this thread: stay on it until it is reaped.
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	p, err := os.StartProcess("/proc/self/exe", []string{"lightbox-idmap"}, &os.ProcAttr{
		Env: []string{},
		Sys: &syscall.SysProcAttr{
			Cloneflags:                 unix.CLONE_NEWUSER,
			UidMappings:                conv(uids),
			GidMappings:                conv(gids),
			GidMappingsEnableSetgroups: true,
			Ptrace:                     true,
			Pdeathsig:                  syscall.SIGKILL,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("user namespace for an idmapped mount: %w", err)
	}
	ns, err := os.Open("/proc/" + strconv.Itoa(p.Pid) + "/ns/user")
	kerr := p.Kill()
	_, werr := p.Wait()
	if err != nil {
		return nil, fmt.Errorf("user namespace for an idmapped mount: %w", errors.Join(err, kerr, werr))
	}
	return ns, nil
}

// sendForInit sends the init, on h's socket, what h collected, then the
// directories it mounts its root from (RootDir's parent, and the
// overlay's layers, upper and work dirs), opened as real root in the
// init's own mount namespace (through /proc/<pid>/root, where overlayfs
// may use them), and names them in cfg. It returns how many descriptors
// it sent.
//
// The directories go openChunk at a time (flush), each chunk closed once
// sent: this process never holds a snapshot's worth of them at once. Its
// threads share one descriptor table, and the kernel grows a shared
// table only after an RCU grace period (see initTableFor): opening a
// 50-layer snapshot's 53 at once grew it, in every launch from a
// process started with few descriptors open (~7 ms here).
func sendForInit(pid int, cfg *nsinit.Config, h *hostSide) (int, error) {
	root := "/proc/" + strconv.Itoa(pid) + "/root"
	open := func(what, p string) (nsinit.PassedFD, error) {
		fd, err := sys.Openat(unix.AT_FDCWD, root+p, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return 0, fmt.Errorf("open %s for the init: %w", what, err)
		}
		at := h.add(os.NewFile(uintptr(fd), p))
		return at, h.flush()
	}
	at, err := open("the sandbox's directory", filepath.Dir(cfg.RootDir))
	if err != nil {
		return 0, err
	}
	cfg.RootParentFD = at
	for i, p := range cfg.Root.Params {
		if !openedForInit(p.Key) {
			continue
		}
		at, err := open(p.Key, p.Value)
		if err != nil {
			return 0, err
		}
		if cfg.Root.ParamFDs == nil {
			cfg.Root.ParamFDs = map[int]nsinit.PassedFD{}
		}
		cfg.Root.ParamFDs[i] = at
	}
	if err := h.send(); err != nil {
		return 0, err
	}
	return h.sent, nil
}

// openChunk is how many descriptors a launch collects (binds, the root's
// directories) before it sends them on.
const openChunk = 16

// openedForInit reports whether sendForInit opens the directory an
// overlay parameter with this key names.
func openedForInit(key string) bool {
	return key == "lowerdir+" || key == "upperdir" || key == "workdir"
}

// toSend is how many descriptors the init is sent in all: those collected
// so far (sent or not), and the root's directories sendForInit adds.
func (h *hostSide) toSend(cfg *nsinit.Config) int {
	n := h.sent + len(h.files) + 1 // RootDir's parent
	for _, p := range cfg.Root.Params {
		if openedForInit(p.Key) {
			n++
		}
	}
	return n
}

// send sends every collected descriptor not sent yet on h's socket, in
// order, waiting for room, and closes them.
func (h *hostSide) send() error {
	if err := nsinit.SendFDs(int(h.sock.Fd()), h.fds()); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	h.sent += len(h.files)
	h.closeFiles()
	return nil
}
