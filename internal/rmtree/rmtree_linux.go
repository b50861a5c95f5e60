package rmtree

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
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
	return RemoveSmall(ctx, path, m, -1)
}

// ErrTooLarge is what RemoveSmall returns for a tree of more entries than
// it was allowed to remove.
var ErrTooLarge = errors.New("tree larger than the removal's limit")

// RemoveSmall is RemoveAll for a tree of at most n entries (n < 0: no
// limit): past n removed entries it stops, leaves the rest where it is and
// returns ErrTooLarge, so that the caller may hand what is left to a
// process of its own (internal/reap) rather than wait for it. One walk
// both counts and removes: no tree is read twice.
func RemoveSmall(ctx context.Context, path string, m idmap.Mapping, n int) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	err := removeInProcess(path, n)
	if err == nil || errors.Is(err, ErrTooLarge) {
		return err
	}
	if os.Geteuid() == 0 || m.Single() || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	return removeInNamespace(ctx, path, m)
}

// RemoveContents removes what the directory path holds but its entries
// named in keep, as RemoveSmall does (past n entries it stops with
// ErrTooLarge), and leaves path and those. It works in this process only: what it may
// not remove (EACCES, EPERM: rootless, the files of other ids) it leaves,
// for RemoveAll, which may use a user namespace, to finish.
func RemoveContents(path string, n int, keep ...string) error {
	path = filepath.Clean(path)
	pdir, name := filepath.Split(path)
	if pdir == "" {
		pdir = "."
	}
	pfd, err := openDir(unix.AT_FDCWD, pdir)
	if err != nil {
		return &os.PathError{Op: "open", Path: pdir, Err: err}
	}
	defer unix.Close(pfd)
	w := &walk{top: pfd, left: n}
	fd, err := w.openInMount(pfd, name)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	return w.removeEntries(&dir{fd: fd}, path, keep)
}

// walk is one removal: the mount it stays on, what is left of its limit
// and the buffer it reads directories with.
type walk struct {
	top   int    // the parent of the tree, open for the walk's life
	mnt   uint64 // top's mount (set once needed: without openat2)
	mntOK bool
	left  int // entries it may still remove; < 0: no limit
	buf   []byte
}

// dir is a directory of the walk, open as fd; fixed once it was given
// rwx for its owner (or must not be: the tree's parent).
type dir struct {
	fd    int
	fixed bool
}

// removeInProcess removes path without following symlinks or crossing
// mount points, giving the owner rwx on a directory whose mode refuses
// what the removal needs (a no-op where it lacks the right to, so the
// removal reports the real error). It keeps going past a failure and
// returns the first one; past limit entries (limit >= 0) it stops with
// ErrTooLarge.
func removeInProcess(path string, limit int) error {
	path = filepath.Clean(path)
	pdir, name := filepath.Split(path)
	if pdir == "" {
		pdir = "."
	}
	pfd, err := openDir(unix.AT_FDCWD, pdir)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "open", Path: pdir, Err: err}
	}
	defer unix.Close(pfd)
	w := &walk{top: pfd, left: limit}
	// What is removed is a directory, mostly; the tree's parent is not ours
	// to chmod.
	return w.removeAt(&dir{fd: pfd, fixed: true}, name, path, fs.ModeDir)
}

func openDir(dirfd int, name string) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

// noOpenat2 is set once openat2 proved missing (Linux < 5.6, or a seccomp
// filter that refuses it): the walk then checks each directory's mount
// with a statx of its own.
var noOpenat2 atomic.Bool

// openInMount opens the directory name in dirfd for the walk, refusing one
// on another mount (a mount point: EBUSY, never descended into). openat2's
// RESOLVE_NO_XDEV does in one call what openat and a statx of the mount
// id do otherwise.
func (w *walk) openInMount(dirfd int, name string) (int, error) {
	if !noOpenat2.Load() {
		how := unix.OpenHow{
			Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		}
		fd, err := unix.Openat2(dirfd, name, &how)
		for errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) { // EAGAIN: a rename raced the lookup
			fd, err = unix.Openat2(dirfd, name, &how)
		}
		switch {
		case errors.Is(err, unix.EXDEV):
			return -1, unix.EBUSY
		case !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM):
			// EPERM is a seccomp filter refusing the call: a directory's
			// permissions give EACCES.
			return fd, err
		}
		noOpenat2.Store(true)
	}
	if !w.mntOK {
		id, _, err := mountID(w.top)
		if err != nil {
			return -1, err
		}
		w.mnt, w.mntOK = id, true
	}
	fd, err := openDir(dirfd, name)
	if err != nil {
		return fd, err
	}
	id, _, err := mountID(fd)
	if err == nil && id != w.mnt {
		err = unix.EBUSY
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// mountID returns the id of the mount fd is on, and its mode.
func mountID(fd int) (uint64, uint32, error) {
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID|unix.STATX_MODE, &st); err != nil {
		return 0, 0, err
	}
	return st.Mnt_id, uint32(st.Mode), nil
}

// fix gives d's owner rwx on it, once, keeping its other bits; false when
// it was done already (or must not be), so the caller's retry would fail
// the same way.
func (d *dir) fix() bool {
	if d.fixed {
		return false
	}
	d.fixed = true
	var st unix.Stat_t
	if unix.Fstat(d.fd, &st) != nil {
		return false
	}
	// Best effort: the removal's retry reports what stays refused.
	return unix.Fchmod(d.fd, st.Mode&0o7777|0o700) == nil
}

// count takes one entry off the walk's limit: ErrTooLarge when none is
// left.
func (w *walk) count() error {
	if w.left < 0 {
		return nil
	}
	if w.left == 0 {
		return ErrTooLarge
	}
	w.left--
	return nil
}

// removeAt removes name in parent (full is its path, for errors); typ is
// name's type as its directory listed it (d_type), which saves a failing
// call per entry: a directory is first removed with one rmdir, which
// takes an empty one (a sandbox's rootfs/, an unused upper/, the overlay's
// work/work, mode 000 or not) and refuses anything else (a mount point of
// ours, EBUSY; a non-empty directory), which the walk below then handles;
// anything else is unlinked. A call refused for want of the parent's
// write or search right (EACCES) is made again once the parent is fixed.
func (w *walk) removeAt(parent *dir, name, full string, typ fs.FileMode) error {
	if err := w.count(); err != nil {
		return err
	}
	if typ.IsDir() {
		err := unlinkat(parent, name, unix.AT_REMOVEDIR)
		switch {
		case err == nil || errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.ENOTDIR):
			typ = 0 // not a directory (replaced since it was listed): unlinked below
		}
	}
	if !typ.IsDir() {
		err := unlinkat(parent, name, 0)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EISDIR) {
			return &os.PathError{Op: "unlinkat", Path: full, Err: err}
		}
	}
	fd, err := w.openInMount(parent.fd, name)
	if errors.Is(err, unix.EACCES) {
		// Mode 000 (an overlay work/work), or a parent we may not
		// search: make them ours to read.
		if parent.fix() {
			fd, err = w.openInMount(parent.fd, name)
		}
		if errors.Is(err, unix.EACCES) {
			_ = unix.Fchmodat(parent.fd, name, 0o700, 0) // best effort: the open below reports what stays refused
			fd, err = w.openInMount(parent.fd, name)
		}
	}
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if errors.Is(err, unix.EBUSY) {
		return &os.PathError{Op: "remove mount point", Path: full, Err: unix.EBUSY}
	}
	if err != nil {
		return &os.PathError{Op: "openat", Path: full, Err: err}
	}
	d := &dir{fd: fd}
	first := w.removeEntries(d, full, nil)
	unix.Close(fd)
	if first != nil {
		return first
	}
	if err := unlinkat(parent, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "rmdir", Path: full, Err: err}
	}
	return nil
}

// unlinkat is unix.Unlinkat in parent, once more after fixing parent's
// mode when it refused (EACCES).
func unlinkat(parent *dir, name string, flags int) error {
	err := unix.Unlinkat(parent.fd, name, flags)
	if errors.Is(err, unix.EACCES) && parent.fix() {
		err = unix.Unlinkat(parent.fd, name, flags)
	}
	return err
}

// removeEntries removes what directory d (full) holds but the names in
// keep, reading it with
// getdents64 straight into the walk's buffer (no os.File: its fcntl per
// directory, and a last read for the end the rmdir that follows tells
// anyway). It keeps going past a failure and returns the first one;
// ErrTooLarge ends it at once.
func (w *walk) removeEntries(d *dir, full string, keep []string) error {
	if w.buf == nil {
		w.buf = make([]byte, 8192)
	}
	var first error
	for {
		n, err := unix.Getdents(d.fd, w.buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EACCES) && d.fix() {
			continue
		}
		if errors.Is(err, unix.ENOENT) {
			// The directory was removed since we opened it: by another
			// remover of the same tree (two processes collecting one
			// .rm- entry), and an rmdir takes only an empty directory.
			return first
		}
		if err != nil {
			if first == nil {
				first = &os.PathError{Op: "readdir", Path: full, Err: err}
			}
			return first
		}
		if n == 0 {
			return first
		}
		// The names are copied out before the walk goes down (and reuses
		// the buffer).
		ents := parseDirents(w.buf[:n])
		for _, e := range ents {
			if slices.Contains(keep, e.name) {
				continue
			}
			if err := w.removeAt(d, e.name, full+"/"+e.name, e.typ); err != nil {
				if errors.Is(err, ErrTooLarge) {
					return err
				}
				if first == nil {
					first = err
				}
			}
		}
	}
}

type dirent struct {
	name string
	typ  fs.FileMode
}

// parseDirents decodes linux_dirent64 records (d_ino u64, d_off s64,
// d_reclen u16, d_type u8, d_name NUL-terminated), skipping . and ..; a
// type the filesystem did not give (DT_UNKNOWN) is left 0, which
// removeAt treats as a file and corrects on EISDIR.
func parseDirents(b []byte) []dirent {
	var out []dirent
	for len(b) >= 19 {
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen < 19 || reclen > len(b) {
			break
		}
		name := b[19:reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if s := string(name); s != "." && s != ".." && s != "" {
			var typ fs.FileMode
			if b[18] == unix.DT_DIR {
				typ = fs.ModeDir
			}
			out = append(out, dirent{s, typ})
		}
		b = b[reclen:]
	}
	return out
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
		return removeInProcess(args[0], -1)
	case len(args) == 3 && args[0] == "--chown":
		var uid, gid int
		if _, err := fmt.Sscanf(args[1], "%d:%d", &uid, &gid); err != nil {
			return fmt.Errorf("rmtree: bad ids %q: %w", args[1], err)
		}
		return os.Lchown(args[2], uid, gid)
	}
	return fmt.Errorf("rmtree: bad arguments %q", args)
}
