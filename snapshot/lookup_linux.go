package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/beamhop/lightbox/internal/reexec"
	"github.com/beamhop/lightbox/internal/sys"
)

// Owner finds target (an absolute path inside a sandbox) in layers
// (bottom first, as Snapshot.Layers) the way the overlay shows it, top
// layer first, and returns its owner when it is a directory there; nil
// when it is missing or not a directory. Each lookup is resolved inside
// its layer (RESOLVE_IN_ROOT): a symlink in a layer never leads to a host
// path. Rootless with a subordinate range, a layer directory the caller
// cannot search (one of another id of the range) is searched by the
// helper (HelperRole) inside a user namespace with the store's mapping.
func (s *Store) Owner(ctx context.Context, layers []string, target string) (*DirOwner, error) {
	o, err := lookupInLayers(layers, target)
	if err == nil || !errors.Is(err, unix.EACCES) || !s.mapping.Subordinate {
		return o, err
	}
	var out strings.Builder
	cmd := reexec.Command("", HelperRole, s.mapping, 0, append([]string{"lookup", target}, layers...)...)
	cmd.Stdout = &out
	if err := s.runChild(ctx, cmd, nil); err != nil {
		return nil, fmt.Errorf("look up %s in the snapshot: %w", target, err)
	}
	if strings.TrimSpace(out.String()) == "none" {
		return nil, nil
	}
	var uid, gid, mode uint32
	if _, err := fmt.Sscan(out.String(), &uid, &gid, &mode); err != nil {
		return nil, fmt.Errorf("look up %s in the snapshot: %q: %w", target, out.String(), err)
	}
	hu, ok1 := s.mapping.HostUID(uid)
	hg, ok2 := s.mapping.HostGID(gid)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("look up %s in the snapshot: owner %d:%d is not mapped", target, uid, gid)
	}
	return &DirOwner{UID: int(hu), GID: int(hg), Mode: fs.FileMode(mode)}, nil
}

// lookupMain is the helper's "lookup TARGET LAYER…": it prints "none" or
// "UID GID MODE" as the namespace sees them.
func lookupMain(args []string) error {
	if len(args) < 2 {
		return errors.New("usage: lookup TARGET LAYER…")
	}
	o, err := lookupInLayers(args[1:], args[0])
	switch {
	case err != nil:
		return err
	case o == nil:
		_, err = fmt.Println("none")
	default:
		_, err = fmt.Println(o.UID, o.GID, uint32(o.Mode))
	}
	return err
}

// lookupInLayers is Owner in this process, with the ids it sees. An
// error is returned only when a layer could not be searched (EACCES: a
// directory owned by another id of a rootless range).
func lookupInLayers(layers []string, target string) (*DirOwner, error) {
	fd, name, err := openInLayers(layers, target, unix.O_PATH|unix.O_CLOEXEC)
	if err != nil || fd < 0 {
		return nil, err
	}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	_ = unix.Close(fd) // an O_PATH descriptor: nothing to flush
	if err != nil {
		return nil, &os.PathError{Op: "fstat", Path: name, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, nil // a file (or whiteout) hides what is below
	}
	return &DirOwner{UID: int(st.Uid), GID: int(st.Gid), Mode: sys.FileMode(st.Mode)}, nil
}

// maxReadFile is how much of a file ReadFile returns at the most.
const maxReadFile = 4 << 20

// ReadFile reads file p (an absolute path inside a sandbox) of layers
// (bottom first, as Snapshot.Layers) from the topmost layer that has it,
// resolved inside that layer (RESOLVE_IN_ROOT) as Owner resolves, never
// following a symlink at its end: its first 4 MiB. A whiteout, or
// anything but a regular file, hides what is below: an error wrapping
// os.ErrNotExist, as when no layer has it.
func (s *Store) ReadFile(ctx context.Context, layers []string, p string) ([]byte, error) {
	fd, name, err := openInLayers(layers, p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK)
	if err != nil {
		return nil, err
	}
	if fd < 0 {
		return nil, fmt.Errorf("%s: %w", p, os.ErrNotExist)
	}
	f := os.NewFile(uintptr(fd), name)
	defer func() { _ = f.Close() }() // read-only
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w", p, os.ErrNotExist) // a whiteout, or not a file
	}
	return io.ReadAll(io.LimitReader(f, maxReadFile))
}

// IsRegularFile reports whether the topmost of layers that has p has a
// regular file there (a whiteout or a directory hides what is below),
// resolved inside that layer as openInLayers does.
func (s *Store) IsRegularFile(layers []string, p string) (bool, error) {
	fd, name, err := openInLayers(layers, p, unix.O_PATH|unix.O_CLOEXEC)
	if err != nil || fd < 0 {
		return false, err
	}
	defer func() { _ = unix.Close(fd) }() // an O_PATH descriptor: nothing to flush
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, &os.PathError{Op: "fstat", Path: name, Err: err}
	}
	return st.Mode&unix.S_IFMT == unix.S_IFREG, nil
}

// openInLayers opens p in the topmost of layers that has it, resolved
// inside that layer (RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS), with flags.
// It returns the descriptor and its host path, or -1 when no layer has
// it.
func openInLayers(layers []string, p string, flags int) (int, string, error) {
	rel := strings.TrimPrefix(path.Clean(p), "/")
	for i := len(layers) - 1; i >= 0; i-- {
		root, err := unix.Open(layers[i], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, "", &os.PathError{Op: "open", Path: layers[i], Err: err}
		}
		fd, err := sys.OpenInRoot(root, rel, flags, 0)
		_ = unix.Close(root) // an O_PATH descriptor: nothing to flush
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			continue
		}
		name := filepath.Join(layers[i], rel)
		if err != nil {
			return -1, "", &os.PathError{Op: "openat2", Path: name, Err: errors.Unwrap(err)}
		}
		return fd, name, nil
	}
	return -1, "", nil
}
