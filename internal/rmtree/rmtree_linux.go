package rmtree

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/reexec"
	"golang.org/x/sys/unix"
)

// RemoveAll deletes path and everything under it. A missing path is not an
// error. m is the store's id mapping; when it holds more than the caller's
// own id and the caller is not root, what the caller cannot delete on the
// host is deleted inside a user namespace with m. Errors unwrap to the
// errno of the failing call (e.g. unix.EBUSY for a mount point).
func RemoveAll(ctx context.Context, path string, m idmap.Mapping) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	err := removeInProcess(path)
	if err == nil {
		return nil
	}
	if os.Geteuid() == 0 || m.Single() || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	return removeInNamespace(ctx, path, m)
}

// removeInProcess removes path without following symlinks or crossing
// mount points, giving the owner rwx on each directory on the way down (a
// no-op where it lacks the right to, so the removal reports the real
// error). It keeps going past a failure and returns the first one.
func removeInProcess(path string) error {
	path = filepath.Clean(path)
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	pfd, err := openDir(unix.AT_FDCWD, dir)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(pfd)
	mnt, _, err := mountID(pfd)
	if err != nil {
		return &os.PathError{Op: "statx", Path: dir, Err: err}
	}
	return removeAt(pfd, name, path, mnt, fs.ModeDir) // what is removed is a directory, mostly
}

func openDir(dirfd int, name string) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

// mountID returns the id of the mount fd is on, and its mode.
func mountID(fd int) (uint64, uint32, error) {
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID|unix.STATX_MODE, &st); err != nil {
		return 0, 0, err
	}
	return st.Mnt_id, uint32(st.Mode), nil
}

// removeAt removes name in dirfd (full is its path, for errors); mnt is
// the mount the tree lives on; typ is name's type as its directory listed
// it (d_type), which saves a failing call per entry: a directory is first
// removed with one rmdir, which takes an empty one (a sandbox's rootfs/,
// an unused upper/, the overlay's work/work, mode 000 or not) and refuses
// anything else (a mount point of ours, EBUSY; a non-empty directory),
// which the walk below then handles; anything else is unlinked.
func removeAt(dirfd int, name, full string, mnt uint64, typ fs.FileMode) error {
	if typ.IsDir() {
		err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
		switch {
		case err == nil || errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.ENOTDIR):
			typ = 0 // not a directory (replaced since it was listed): unlinked below
		}
	}
	if !typ.IsDir() {
		err := unix.Unlinkat(dirfd, name, 0)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EISDIR) {
			return &os.PathError{Op: "unlinkat", Path: full, Err: err}
		}
	}
	fd, err := openDir(dirfd, name)
	if errors.Is(err, unix.EACCES) {
		// Mode 000 (an overlay work/work): make it ours to read.
		_ = unix.Fchmodat(dirfd, name, 0o700, 0) // best effort: the open below reports what stays refused
		fd, err = openDir(dirfd, name)
	}
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "openat", Path: full, Err: err}
	}
	id, mode, err := mountID(fd)
	if err != nil {
		unix.Close(fd)
		return &os.PathError{Op: "statx", Path: full, Err: err}
	}
	if id != mnt {
		unix.Close(fd)
		return &os.PathError{Op: "remove mount point", Path: full, Err: unix.EBUSY}
	}
	if mode&0o700 != 0o700 {
		_ = unix.Fchmod(fd, mode&0o7777|0o700) // best effort: the removal below reports what stays refused
	}
	f := os.NewFile(uintptr(fd), full)
	ents, rerr := f.ReadDir(-1)
	var first error
	if rerr != nil {
		first = &os.PathError{Op: "readdir", Path: full, Err: underlying(rerr)}
	}
	for _, e := range ents {
		if err := removeAt(fd, e.Name(), full+"/"+e.Name(), mnt, e.Type()); err != nil && first == nil {
			first = err
		}
	}
	_ = f.Close() // a directory opened read-only: nothing to flush
	if first != nil {
		return first
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "rmdir", Path: full, Err: err}
	}
	return nil
}

func underlying(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// result is what the remover child reports on stdout.
type result struct {
	Error string `json:"error"`
	Errno int    `json:"errno,omitempty"`
}

// childError is a failure reported by the remover child; it unwraps to the
// errno it carried.
type childError struct {
	msg   string
	errno syscall.Errno
}

func (e *childError) Error() string { return e.msg }
func (e *childError) Unwrap() error {
	if e.errno == 0 {
		return nil
	}
	return e.errno
}

// Chown gives path (not following a symlink) to host ids uid:gid. A
// rootless caller with a subordinate range cannot chown to the range's
// other ids on the host; that is done inside a user namespace with m.
func Chown(ctx context.Context, path string, uid, gid int, m idmap.Mapping) error {
	err := os.Lchown(path, uid, gid)
	if err == nil || os.Geteuid() == 0 || m.Single() || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	cu, ok1 := toContainer(m.UIDs, uint32(uid))
	cg, ok2 := toContainer(m.GIDs, uint32(gid))
	if !ok1 || !ok2 {
		return fmt.Errorf("chown %s to %d:%d: ids outside the store's mapping %s: %w", path, uid, gid, m, err)
	}
	return inNamespace(ctx, "chown", path, m, "--chown", fmt.Sprintf("%d:%d", cu, cg), path)
}

func toContainer(rs []idmap.Range, host uint32) (uint32, bool) {
	for _, r := range rs {
		if host >= r.HostID && uint64(host) < uint64(r.HostID)+uint64(r.Size) {
			return r.ContainerID + (host - r.HostID), true
		}
	}
	return 0, false
}

func removeInNamespace(ctx context.Context, path string, m idmap.Mapping) error {
	return inNamespace(ctx, "remove", path, m, path)
}

// inNamespace runs the rmtree role with args; op and path name the work in
// errors.
func inNamespace(ctx context.Context, op, path string, m idmap.Mapping, args ...string) error {
	c := reexec.Command("", Role, m, 0, args...)
	if os.Geteuid() == 0 && !m.Subordinate {
		// Real root with a sub-range: host root is not mapped, so become
		// the namespace's root explicitly.
		if h, ok := m.HostUID(0); !ok || h != 0 {
			c.SysProcAttr.Credential = &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true}
		}
	}
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Start(); err != nil {
		return fmt.Errorf("%s %s in a user namespace: %w", op, path, err)
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = c.Process.Kill() // the context ended: Wait returns and ctx.Err() is reported
		case <-done:
		}
	}()
	werr := c.Wait()
	close(done)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, path, err)
	}
	var r result
	if json.Unmarshal(stdout.Bytes(), &r) == nil && r.Error != "" {
		return fmt.Errorf("%s %s in a user namespace: %w", op, path, &childError{msg: r.Error, errno: syscall.Errno(r.Errno)})
	}
	if werr != nil {
		return fmt.Errorf("%s %s in a user namespace: %w: %s", op, path, werr, bytes.TrimSpace(stderr.Bytes()))
	}
	return nil
}

// Main runs the rmtree role inside the user namespace: "PATH" removes
// PATH, "--chown UID:GID PATH" chowns it (ids as seen inside). It exits,
// reporting a failure as JSON on stdout, and never returns.
func Main() {
	err := reexec.WaitMapped()
	if err == nil {
		err = runRole(os.Args[1:])
	}
	if err == nil {
		os.Exit(0)
	}
	r := result{Error: err.Error()}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		r.Errno = int(errno)
	}
	_ = json.NewEncoder(os.Stdout).Encode(r) // the exit status says it failed; stdout to the parent is all there is
	os.Exit(1)
}

func runRole(args []string) error {
	switch {
	case len(args) == 1:
		return removeInProcess(args[0])
	case len(args) == 3 && args[0] == "--chown":
		var uid, gid int
		if _, err := fmt.Sscanf(args[1], "%d:%d", &uid, &gid); err != nil {
			return fmt.Errorf("rmtree: bad ids %q: %w", args[1], err)
		}
		return os.Lchown(args[2], uid, gid)
	}
	return fmt.Errorf("rmtree: bad arguments %q", args)
}
