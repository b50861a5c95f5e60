package nsinit

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/beamhop/lightbox/internal/sys"
	"golang.org/x/sys/unix"
)

// readonlyPaths and maskedPaths are runc's and podman's defaults, by the
// same names so that users can compare. Inside /proc and /sys only what
// belongs to the sandbox's own namespaces should be writable or readable;
// these reach the host's kernel: sysctls (core_pattern runs a program as
// host root), the sysrq trigger, IRQ affinity, kernel memory, keys of
// other users, timers and scheduler state of the whole machine, firmware.
//
// A read-only path is a bind of itself, remounted ro,nosuid,nodev,noexec;
// a masked one is covered by /dev/null (a file) or an empty read-only
// tmpfs (a directory). Workloads cannot undo either: they lack
// CAP_SYS_ADMIN, and in a user namespace of their own (only with
// Config.AllowUserNamespaces) every one of these mounts is locked to its
// place and its read-only flag by the kernel, and a fresh proc or sysfs
// mount is refused there because the existing one is not fully visible
// (fs/namespace.c mount_too_revealing). Paths this kernel does not have
// are skipped.
var (
	readonlyPaths = []string{
		"/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
	maskedPaths = []string{
		"/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
		"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap",
	}
)

// protectKernelPaths applies readonlyPaths and maskedPaths under root,
// whose /proc and /sys are already mounted. It runs before pivot_root:
// the masks of files are binds of the host's /dev/null.
func protectKernelPaths(root int) error {
	mounts := map[string]int{}
	for _, m := range []struct {
		dir   string
		magic int64
	}{{"/proc", unix.PROC_SUPER_MAGIC}, {"/sys", unix.SYSFS_MAGIC}} {
		fd, err := sys.OpenInRoot(root, m.dir, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		var st unix.Statfs_t
		if err := unix.Fstatfs(fd, &st); err != nil {
			return &os.PathError{Op: "statfs", Path: m.dir, Err: err}
		}
		if st.Type != m.magic {
			return fmt.Errorf("%s: filesystem type %#x, want %#x", m.dir, st.Type, m.magic)
		}
		mounts[m.dir] = fd
	}
	for _, p := range readonlyPaths {
		if err := protectPath(mounts, p, readOnly); err != nil {
			return fmt.Errorf("read-only %s: %w", p, err)
		}
	}
	for _, p := range maskedPaths {
		if err := protectPath(mounts, p, mask); err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	return nil
}

// protectPath opens p (below /proc or /sys, never through a symlink)
// and applies how to it; a p this kernel lacks is skipped.
func protectPath(mounts map[string]int, p string, how func(target int, p string, dir bool) error) error {
	top, _, _ := strings.Cut(p[1:], "/")
	top = "/" + top
	base, ok := mounts[top]
	if !ok {
		return fmt.Errorf("%q is not below /proc or /sys", p)
	}
	t, err := sys.OpenInRoot(base, p[len(top):], unix.O_PATH|unix.O_NOFOLLOW, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(t)
	var st unix.Stat_t
	if err := unix.Fstat(t, &st); err != nil {
		return &os.PathError{Op: "stat", Path: p, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return &os.PathError{Op: "open", Path: p, Err: unix.ELOOP}
	}
	return how(t, p, st.Mode&unix.S_IFMT == unix.S_IFDIR)
}

// readOnly binds target onto itself read-only, nosuid, nodev, noexec.
func readOnly(target int, p string, _ bool) error {
	mfd, err := sys.OpenTree(target, "", unix.OPEN_TREE_CLONE|unix.AT_RECURSIVE|unix.AT_EMPTY_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(mfd)
	if err := sys.SetAttr(mfd, unix.MOUNT_ATTR_RDONLY|nosuidNodevNoexec, 0, true, p); err != nil {
		return err
	}
	return sys.MoveMount(mfd, target, p)
}

// mask covers target: a directory with an empty read-only tmpfs, anything
// else with a read-only bind of /dev/null.
func mask(target int, p string, dir bool) error {
	var mfd int
	var err error
	if dir {
		mfd, err = sys.FSMount("tmpfs", []sys.Param{{Key: "mode", Value: "555"}}, unix.MOUNT_ATTR_RDONLY|nosuidNodevNoexec, p)
	} else {
		mfd, err = sys.OpenTree(unix.AT_FDCWD, "/dev/null", unix.OPEN_TREE_CLONE)
		if err == nil {
			// Not nodev: /dev/null must still open.
			err = sys.SetAttr(mfd, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC, 0, false, p)
			if err != nil {
				unix.Close(mfd)
			}
		}
	}
	if err != nil {
		return err
	}
	defer unix.Close(mfd)
	return sys.MoveMount(mfd, target, p)
}
