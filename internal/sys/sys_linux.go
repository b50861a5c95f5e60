package sys

import (
	"errors"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// scopedRetries bounds how often openat2 is tried again after EAGAIN.
const scopedRetries = 128

// openat2 is openat2(2) tried again after EINTR and, up to scopedRetries
// times, after EAGAIN: with RESOLVE_IN_ROOT or RESOLVE_BENEATH the kernel
// fails a ".." step with EAGAIN when any rename or mount on the system
// raced the walk (it cannot then prove the walk stayed inside), and says
// the caller may retry (openat2(2)). A mount target reached through a
// symlink with ".." in it failed that way while other sandboxes were
// being set up.
func openat2(dir int, path string, how *unix.OpenHow) (int, error) {
	var fd int
	var err error
	for i := 0; i < scopedRetries; i++ {
		err = retry(func() (err error) { fd, err = unix.Openat2(dir, path, how); return })
		if !errors.Is(err, unix.EAGAIN) || how.Resolve&(unix.RESOLVE_IN_ROOT|unix.RESOLVE_BENEATH) == 0 {
			break
		}
	}
	return fd, err
}

// Mount is mount(2).
func Mount(source, target, fstype string, flags uintptr, data string) error {
	return pathErr("mount "+fstype, target, retry(func() error { return unix.Mount(source, target, fstype, flags, data) }))
}

// Unmount is umount2(2).
func Unmount(target string, flags int) error {
	return pathErr("umount", target, retry(func() error { return unix.Unmount(target, flags) }))
}

// FSMount creates a detached mount of a new fstype filesystem configured by
// params (fsopen, fsconfig, fsmount) and returns its fd (close-on-exec).
// attrs are MOUNT_ATTR_* flags. The kernel's own message for a rejected
// parameter ("overlay: failed to resolve …") is part of the error. name
// labels the error (the mount's target, say).
func FSMount(fstype string, params []Param, attrs int, name string) (int, error) {
	var fsfd int
	err := retry(func() (err error) { fsfd, err = unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC); return })
	if err != nil {
		return -1, pathErr("fsopen "+fstype, name, err)
	}
	defer unix.Close(fsfd)
	for _, p := range params {
		var err error
		if p.Value == "" {
			err = retry(func() error { return unix.FsconfigSetFlag(fsfd, p.Key) })
		} else {
			err = retry(func() error { return unix.FsconfigSetString(fsfd, p.Key, p.Value) })
		}
		if err != nil {
			return -1, pathErr("fsconfig "+fstype+" "+p.Key+kernelMsg(fsfd), name, err)
		}
	}
	if err := retry(func() error { return unix.FsconfigCreate(fsfd) }); err != nil {
		return -1, pathErr("create "+fstype+" mount"+kernelMsg(fsfd), name, err)
	}
	var mfd int
	err = retry(func() (err error) { mfd, err = unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, attrs); return })
	if err != nil {
		return -1, pathErr("fsmount "+fstype+kernelMsg(fsfd), name, err)
	}
	return mfd, nil
}

// kernelMsg reads the messages the kernel left on a filesystem context.
func kernelMsg(fsfd int) string {
	var msgs []string
	buf := make([]byte, 1024)
	for range 8 {
		n, err := unix.Read(fsfd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	if len(msgs) == 0 {
		return ""
	}
	return " (" + strings.Join(msgs, "; ") + ")"
}

// OpenTree is open_tree(2); with OPEN_TREE_CLONE it returns a detached copy
// of the mount (tree, with AT_RECURSIVE) at path.
func OpenTree(dirfd int, path string, flags uint) (int, error) {
	var fd int
	err := retry(func() (err error) { fd, err = unix.OpenTree(dirfd, path, flags|unix.OPEN_TREE_CLOEXEC); return })
	return fd, pathErr("open_tree", path, err)
}

// MoveMount attaches the detached mount mfd onto the file or directory
// that the fd target refers to. name labels the error.
func MoveMount(mfd, target int, name string) error {
	return pathErr("move_mount", name, retry(func() error {
		return unix.MoveMount(mfd, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
	}))
}

// SetAttr sets and clears MOUNT_ATTR_* flags on the mount fd refers to,
// and on every mount below it when recursive.
func SetAttr(fd int, set, clear uint64, recursive bool, name string) error {
	flags := uint(unix.AT_EMPTY_PATH)
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	attr := &unix.MountAttr{Attr_set: set, Attr_clr: clear}
	return pathErr("mount_setattr", name, retry(func() error { return unix.MountSetattr(fd, "", flags, attr) }))
}

// SetBindAttr sets MOUNT_ATTR_* flags on the detached tree fd refers to
// and every mount below it, makes them private (no propagation to or from
// the mounts they were cloned from) and, when userns >= 0, idmaps them
// with that user namespace's mapping (MOUNT_ATTR_IDMAP, Linux 5.12+, on
// filesystems that support it). name labels the error.
func SetBindAttr(fd int, set uint64, userns int, name string) error {
	attr := &unix.MountAttr{Attr_set: set, Propagation: unix.MS_PRIVATE}
	if userns >= 0 {
		attr.Attr_set |= unix.MOUNT_ATTR_IDMAP
		attr.Userns_fd = uint64(userns)
	}
	return pathErr("mount_setattr", name, retry(func() error {
		return unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr)
	}))
}

// OpenInRoot opens path as if root (an open directory) were "/": no ".."
// and no symlink leaves it, and magic links are refused (openat2 with
// RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS). flags gets O_CLOEXEC.
func OpenInRoot(root int, path string, flags int, mode uint32) (int, error) {
	how := &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Mode:    uint64(mode),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	if flags&unix.O_CREAT == 0 {
		how.Mode = 0
	}
	fd, err := openat2(root, path, how)
	return fd, pathErr("open", path, err)
}

// Syncfs is syncfs(2): it writes every dirty page and inode of the
// filesystem that holds fd (any descriptor but an O_PATH one, which it
// refuses with EBADF) to the disk, and reports a writeback that failed
// there since fd was opened (EIO, ENOSPC).
func Syncfs(fd int) error {
	return os.NewSyscallError("syncfs", retry(func() error { return unix.Syncfs(fd) }))
}

// Mkdirat is mkdirat(2).
func Mkdirat(dir int, path string, mode uint32) error {
	return pathErr("mkdir", path, retry(func() error { return unix.Mkdirat(dir, path, mode) }))
}

// Wait4 is wait4(2).
func Wait4(pid int, status *unix.WaitStatus, options int) (int, error) {
	var wpid int
	err := retry(func() (err error) { wpid, err = unix.Wait4(pid, status, options, nil); return })
	return wpid, err
}

// MountIn is Mount with relative paths in data resolved in dir: the
// process's working directory is dir for the call and is restored after
// it, whatever happens. Overlay mounts name their layers as descriptors
// relative to /proc/self/fd this way when the full paths would not fit in
// a page of options.
func MountIn(dir, source, target, fstype string, flags uintptr, data string) error {
	cwd, err := Openat(unix.AT_FDCWD, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: ".", Err: err}
	}
	defer unix.Close(cwd)
	if err := unix.Chdir(dir); err != nil {
		return &fs.PathError{Op: "chdir", Path: dir, Err: err}
	}
	merr := Mount(source, target, fstype, flags, data)
	if err := unix.Fchdir(cwd); err != nil && merr == nil {
		merr = &fs.PathError{Op: "fchdir", Path: ".", Err: err}
	}
	return merr
}
