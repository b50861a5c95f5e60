package nsinit

import (
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/beamhop/lightbox/internal/procidmap"
	"github.com/beamhop/lightbox/internal/sys"
	"golang.org/x/sys/unix"
)

// setup builds the sandbox's root and pivots into it. It closes the
// descriptors the runtime passed (fds) before it returns.
func setup(cfg *Config, fds received) error {
	defer fds.closeAll(nil)
	if err := sys.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if cfg.Network != "host" {
		allowPingSockets()
	}
	if err := fds.resolve(cfg); err != nil {
		return fmt.Errorf("mount root: %w", err)
	}
	parent, err := fds.fd(cfg.RootParentFD)
	if err != nil {
		return fmt.Errorf("mount root: %w", err)
	}
	etc, etcFiles, err := mountEtc(cfg.Etc, rootTarget(cfg, parent))
	if err != nil {
		return fmt.Errorf("mount etc files: %w", err)
	}
	cfg.etcFiles = etcFiles
	root, err := mountRoot(cfg, parent)
	if err != nil {
		return err
	}
	defer unix.Close(root)
	if err := mountProc(root); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	if err := mountSys(root, cfg.Network == "host"); err != nil {
		return fmt.Errorf("mount /sys: %w", err)
	}
	if err := protectKernelPaths(root); err != nil {
		return err
	}
	if len(cfg.Cgroup) > 0 || cfg.Network == "host" {
		if err := mountCgroup(root, cfg.Cgroup); err != nil {
			return fmt.Errorf("mount /sys/fs/cgroup: %w", err)
		}
	}
	if err := mountDev(root, cfg.DevptsGID5, cfg.ShmBytes); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	mounts := parentsFirst(cfg.Mounts)
	// The mounts over a directory an etc file is in (-v vol:/etc) go
	// before the etc files' binds, which go on them, and the rest after
	// (as docker's, sorted by depth): the sandbox keeps its own files, a
	// new volume is filled with the image's, and a mount exactly at an
	// etc file's target still covers the sandbox's. The first ones are
	// the ancestors of a path: parents first still.
	under, rest := splitAbove(mounts, cfg.Etc)
	for _, m := range under {
		if err := mountOne(cfg, root, m, fds); err != nil {
			return err
		}
	}
	if etc != nil {
		if err := bindEtc(root, etc, cfg.Etc, under); err != nil {
			return err
		}
	}
	for _, m := range rest {
		if err := mountOne(cfg, root, m, fds); err != nil {
			return err
		}
	}
	if cfg.Workdir != "" {
		fd, err := ensure(root, cfg.Workdir, true)
		if err != nil {
			return fmt.Errorf("workdir %s: %w", cfg.Workdir, err)
		}
		unix.Close(fd)
	}
	if err := unix.Sethostname([]byte(cfg.Name)); err != nil {
		return fmt.Errorf("sethostname: %w", err)
	}
	return pivot(root)
}

// mountOne makes the user's mount m inside root (bind) and records a
// fill in cfg.
func mountOne(cfg *Config, root int, m Mount, fds received) error {
	filled, err := bind(root, m, fds)
	if m.FillLock > 0 {
		unix.Close(m.FillLock) // a lock file's: the fill is over, whatever its end
	}
	if err != nil {
		return fmt.Errorf("mount %s: %w", m.Target, err)
	}
	if filled {
		cfg.filled = append(cfg.filled, m.Target)
	}
	return nil
}

// parentsFirst returns a copy of mounts sorted parents before children
// (/a before /a/b), the given order kept among equals: the order setup
// and take mount them in.
func parentsFirst(mounts []Mount) []Mount {
	mounts = slices.Clone(mounts)
	slices.SortStableFunc(mounts, func(a, b Mount) int { return strings.Count(a.Target, "/") - strings.Count(b.Target, "/") })
	return mounts
}

// splitAbove splits mounts, in order, into those whose target is a
// directory above one of files' targets and the others.
func splitAbove(mounts []Mount, files []File) (above, others []Mount) {
	for _, m := range mounts {
		if slices.ContainsFunc(files, func(f File) bool { return isBelow(f.Target, m.Target) }) {
			above = append(above, m)
		} else {
			others = append(others, m)
		}
	}
	return above, others
}

// isBelow says whether the clean absolute path p is strictly below dir.
func isBelow(p, dir string) bool {
	if dir == "/" {
		return p != "/"
	}
	return strings.HasPrefix(p, dir+"/")
}

// mountRoot mounts the root filesystem on cfg.RootDir and returns the
// mounted root, opened. When parent >= 0 it is RootDir's parent, opened
// by the runtime (the path to it is not ours to walk), and RootDir is
// found below it.
func mountRoot(cfg *Config, parent int) (int, error) {
	target := rootTarget(cfg, parent)
	mfd, err := sys.FSMount(cfg.Root.FSType, cfg.Root.Params, 0, "/")
	if err != nil && cfg.Root.FSType == "overlay" && errors.Is(err, unix.EINVAL) && sys.HasLowerdirPlus(cfg.Root.Params) {
		// A kernel before 6.8 (no "lowerdir+"): see internal/sys/overlay.go.
		if lerr := sys.MountOverlayLegacy(cfg.Root.Params, target); lerr != nil {
			return -1, fmt.Errorf("mount root: %w; with a lowerdir= list (for kernels before 6.8): %w", err, lerr)
		}
		root, err := sys.Openat(unix.AT_FDCWD, target, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return -1, fmt.Errorf("open root: %w", err)
		}
		return root, nil
	}
	if err != nil {
		return -1, fmt.Errorf("mount root: %w", err)
	}
	t, err := sys.Openat(unix.AT_FDCWD, target, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		unix.Close(mfd)
		return -1, fmt.Errorf("mount root: %w", err)
	}
	defer unix.Close(t)
	if err := sys.MoveMount(mfd, t, cfg.RootDir); err != nil {
		unix.Close(mfd)
		return -1, fmt.Errorf("mount root: %w", err)
	}
	// The mount's descriptor now names the root of the attached overlay.
	return mfd, nil
}

// rootTarget is where the root is mounted: RootDir, or below parent
// (see mountRoot).
func rootTarget(cfg *Config, parent int) string {
	if parent >= 0 {
		return "/proc/self/fd/" + strconv.Itoa(parent) + "/" + path.Base(cfg.RootDir)
	}
	return cfg.RootDir
}

// attach moves the detached mount mfd onto target inside root, creating
// the target (a directory when dir) if it is missing, and closes mfd.
func attach(root, mfd int, target string, dir bool) error {
	defer unix.Close(mfd)
	return moveOnto(root, mfd, target, dir)
}

// moveOnto is attach without closing mfd.
func moveOnto(root, mfd int, target string, dir bool) error {
	t, err := ensure(root, target, dir)
	if err != nil {
		return err
	}
	defer unix.Close(t)
	return sys.MoveMount(mfd, t, target)
}

const nosuidNodevNoexec = unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC

func mountProc(root int) error {
	mfd, err := sys.FSMount("proc", nil, nosuidNodevNoexec, "/proc")
	if err != nil {
		return err
	}
	return attach(root, mfd, "/proc", true)
}

// mountSys mounts a read-only sysfs. A fresh sysfs needs a network
// namespace owned by our user namespace; with the host's network (or if
// the kernel refuses) it is a recursive bind of the host's /sys, made
// read-only recursively.
func mountSys(root int, hostNet bool) error {
	if !hostNet {
		mfd, err := sys.FSMount("sysfs", nil, nosuidNodevNoexec|unix.MOUNT_ATTR_RDONLY, "/sys")
		if err == nil {
			return attach(root, mfd, "/sys", true)
		}
	}
	mfd, err := sys.OpenTree(unix.AT_FDCWD, "/sys", unix.OPEN_TREE_CLONE|unix.AT_RECURSIVE)
	if err != nil {
		return err
	}
	if err := sys.SetAttr(mfd, unix.MOUNT_ATTR_RDONLY|nosuidNodevNoexec, 0, true, "/sys"); err != nil {
		unix.Close(mfd)
		return err
	}
	return attach(root, mfd, "/sys", true)
}

// mountDev makes /dev a small tmpfs holding binds of the host's harmless
// device nodes (a user namespace cannot mknod), a private devpts and
// /dev/shm. Each bind is read-only: reading and writing a device goes to
// its driver and still works, but its inode is the host's, so a chmod,
// chown or utimes through it would change the host's /dev (and succeeds
// wherever the host's root is mapped in the sandbox: an identity store).
func mountDev(root int, gid5 bool, shmBytes int64) error {
	mfd, err := sys.FSMount("tmpfs", []sys.Param{{Key: "mode", Value: "755"}, {Key: "size", Value: "64k"}}, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC, "/dev")
	if err != nil {
		return err
	}
	if err := attach(root, mfd, "/dev", true); err != nil {
		return err
	}
	dev, err := sys.OpenInRoot(root, "/dev", unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dev)
	for _, n := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		// The file just made is the bind's target: no lookup again.
		f, err := sys.Openat(dev, n, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW, 0o666)
		if err != nil {
			return err
		}
		src, err := sys.OpenTree(unix.AT_FDCWD, "/dev/"+n, unix.OPEN_TREE_CLONE)
		if err == nil {
			err = sys.SetAttr(src, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC, 0, false, "/dev/"+n)
			if err == nil {
				err = sys.MoveMount(src, f, "/dev/"+n)
			}
			unix.Close(src)
		}
		unix.Close(f)
		if err != nil {
			return err
		}
	}
	pts := []sys.Param{{Key: "newinstance"}, {Key: "ptmxmode", Value: "0666"}, {Key: "mode", Value: "0620"}}
	if gid5 {
		pts = append(pts, sys.Param{Key: "gid", Value: "5"})
	}
	mfd, err = sys.FSMount("devpts", pts, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC, "/dev/pts")
	if err != nil {
		return err
	}
	if err := attach(dev, mfd, "/pts", true); err != nil {
		return err
	}
	shm := []sys.Param{{Key: "mode", Value: "1777"}}
	if shmBytes > 0 {
		shm = append(shm, sys.Param{Key: "size", Value: strconv.FormatInt(shmBytes, 10)})
	}
	mfd, err = sys.FSMount("tmpfs", shm, nosuidNodevNoexec, "/dev/shm")
	if err != nil {
		return err
	}
	if err := attach(dev, mfd, "/shm", true); err != nil {
		return err
	}
	for _, l := range [][2]string{{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}} {
		if err := unix.Symlinkat(l[0], dev, l[1]); err != nil {
			return &os.PathError{Op: "symlink", Path: "/dev/" + l[1], Err: err}
		}
	}
	return nil
}

// bindAttrs are the attributes of every bind: a host path or a volume
// never carries setuid bits or device nodes into the sandbox, nor out of
// it.
const bindAttrs = unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV

// bind mounts the host path m.Source on m.Target inside root: recursively,
// nosuid and nodev, and read-only recursively when asked. A bind the
// runtime made ready (m.FD, as real root) is only moved into place, and
// made read-only then when it came writable to be filled. With m.Fill
// the volume is filled from root first (fillVolume), and filled says
// whether it was.
func bind(root int, m Mount, fds received) (filled bool, _ error) {
	pfd, err := fds.fd(m.FD)
	if err != nil {
		return false, err
	}
	if pfd >= 0 {
		var st unix.Stat_t
		if err := unix.Fstat(pfd, &st); err != nil {
			return false, &os.PathError{Op: "stat", Path: m.Source, Err: err}
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if m.Fill && isDir {
			if filled, err = fillVolume(root, m.Target, pfd, m.recordFill); err != nil {
				return false, err
			}
		}
		if err := moveOnto(root, pfd, m.Target, isDir); err != nil {
			return false, err
		}
		if m.Fill && m.ReadOnly {
			// In place, in this mount namespace: the runtime passed it
			// writable for the fill (see Mount.Fill).
			return filled, sys.SetAttr(pfd, unix.MOUNT_ATTR_RDONLY, 0, true, m.Target)
		}
		return filled, nil
	}
	if m.Overlay != nil {
		return false, copyOnWrite(root, m)
	}
	var st unix.Stat_t
	if err := unix.Stat(m.Source, &st); err != nil {
		return false, fmt.Errorf("source: %w", &os.PathError{Op: "stat", Path: m.Source, Err: err})
	}
	mfd, err := sys.OpenTree(unix.AT_FDCWD, m.Source, unix.OPEN_TREE_CLONE|unix.AT_RECURSIVE)
	if err != nil {
		return false, err
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if m.Fill && isDir {
		if filled, err = fillVolume(root, m.Target, mfd, m.recordFill); err != nil {
			unix.Close(mfd)
			return false, err
		}
	}
	attrs := uint64(bindAttrs)
	if m.ReadOnly {
		attrs |= unix.MOUNT_ATTR_RDONLY
	}
	if err := sys.SetAttr(mfd, attrs, 0, true, m.Source); err != nil {
		unix.Close(mfd)
		return false, err
	}
	return filled, attach(root, mfd, m.Target, isDir)
}

// recordFill writes m.FillRecord at the start of the fill lock's file
// (see Mount.FillRecord). It is called once the volume is filled; a
// record that cannot be written is no reason to fail the sandbox: the
// launcher records the fill too when it hears of it.
func (m *Mount) recordFill() {
	if m.FillLock <= 0 || m.FillRecord == "" {
		return
	}
	for {
		_, err := unix.Pwrite(m.FillLock, []byte(m.FillRecord), 0)
		if !errors.Is(err, unix.EINTR) {
			return // see above: the launcher's record is the other one
		}
	}
}

// ensure opens p inside root (O_PATH), resolving every component inside
// it, and creates what is missing: parents as directories, the last one as
// a directory when dir, else as an empty file. An existing p of the other
// kind is an error.
// A dangling symlink on the way is followed inside root, as the kernel
// would, and what it points to is created.
func ensure(root int, p string, dir bool) (int, error) {
	return ensureN(root, p, dir, 0)
}

func ensureN(root int, p string, dir bool, links int) (int, error) {
	if !path.IsAbs(p) || path.Clean(p) != p {
		return -1, fmt.Errorf("%q is not a clean absolute path", p)
	}
	if links > 40 {
		return -1, &os.PathError{Op: "open", Path: p, Err: unix.ELOOP}
	}
	fd, err := sys.OpenInRoot(root, p, unix.O_PATH, 0)
	if errors.Is(err, unix.ENOENT) && p != "/" {
		parent, perr := ensureN(root, path.Dir(p), true, links)
		if perr != nil {
			return -1, perr
		}
		base := path.Base(p)
		if dir {
			err = sys.Mkdirat(parent, base, 0o755)
		} else {
			var f int
			f, err = sys.Openat(parent, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW, 0o644)
			if err == nil {
				unix.Close(f)
			}
		}
		if errors.Is(err, unix.EEXIST) {
			// A dangling symlink: create what it points to, inside root.
			buf := make([]byte, 4096)
			n, lerr := unix.Readlinkat(parent, base, buf)
			unix.Close(parent)
			if lerr != nil {
				return -1, err
			}
			link := string(buf[:n])
			if !path.IsAbs(link) {
				link = path.Join(path.Dir(p), link)
			}
			return ensureN(root, path.Clean(link), dir, links+1)
		}
		unix.Close(parent)
		if err != nil {
			return -1, err
		}
		fd, err = sys.OpenInRoot(root, p, unix.O_PATH, 0)
	}
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, &os.PathError{Op: "stat", Path: p, Err: err}
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	switch {
	case dir && !isDir:
		unix.Close(fd)
		return -1, &os.PathError{Op: "open", Path: p, Err: unix.ENOTDIR}
	case !dir && isDir:
		unix.Close(fd)
		return -1, &os.PathError{Op: "open", Path: p, Err: unix.EISDIR}
	}
	return fd, nil
}

func loopbackUp() error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr)
}

// pivot makes root the root and detaches the host's tree.
func pivot(root int) error {
	if err := unix.Fchdir(root); err != nil {
		return fmt.Errorf("pivot_root: fchdir: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := sys.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("pivot_root: detach the old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	return nil
}

// copyOnWrite mounts the overlay m.Overlay describes on m.Target inside
// root, its lower dir m.Source opened here and named by descriptor.
func copyOnWrite(root int, m Mount) error {
	lower, err := sys.Openat(unix.AT_FDCWD, m.Source, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer unix.Close(lower)
	params := slices.Clone(m.Overlay)
	for i := range params {
		if params[i].Key == "lowerdir" {
			params[i].Value = "/proc/self/fd/" + strconv.Itoa(lower)
		}
	}
	mfd, err := sys.FSMount("overlay", params, bindAttrs, m.Target)
	if err != nil {
		return fmt.Errorf("copy-on-write overlay of %s: %w", m.Source, err)
	}
	return attach(root, mfd, m.Target, true)
}

// allowPingSockets lets every group of the sandbox open ICMP echo
// sockets (SOCK_DGRAM, IPPROTO_ICMP) in its own network namespace, as
// docker and podman set net.ipv4.ping_group_range in theirs: ping works
// without CAP_NET_RAW, which sandboxes do not get. Written before /proc
// is the sandbox's and read-only; the namespace's sysctl belongs to its
// user namespace's root. Its groups are those gid_map maps. Best effort:
// a kernel without the sysctl leaves ping as it was.
func allowPingSockets() {
	m, err := procidmap.Read("/proc/self/gid_map")
	if err != nil {
		return
	}
	var top uint64
	for _, r := range m {
		if r.Count > 0 {
			top = max(top, r.Inside+r.Count-1)
		}
	}
	_ = os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte("0 "+strconv.FormatUint(min(top, 2147483647), 10)), 0) // best effort, above
}
