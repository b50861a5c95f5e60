package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/beamhop/lightbox/internal/reexec"
	"github.com/beamhop/lightbox/internal/sys"
)

// DirOwner is the owner and mode of a directory of a snapshot, in host
// ids: what a new volume mounted over it starts with.
type DirOwner struct {
	UID, GID int
	Mode     fs.FileMode // permission bits, setuid/setgid/sticky included
}

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
	rel := strings.TrimPrefix(path.Clean(target), "/")
	for i := len(layers) - 1; i >= 0; i-- {
		root, err := unix.Open(layers[i], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: layers[i], Err: err}
		}
		fd, err := unix.Openat2(root, rel, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		})
		_ = unix.Close(root) // an O_PATH descriptor: nothing to flush
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "openat2", Path: filepath.Join(layers[i], rel), Err: err}
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		_ = unix.Close(fd) // an O_PATH descriptor: nothing to flush
		if err != nil {
			return nil, &os.PathError{Op: "fstat", Path: filepath.Join(layers[i], rel), Err: err}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return nil, nil // a file (or whiteout) hides what is below
		}
		return &DirOwner{UID: int(st.Uid), GID: int(st.Gid), Mode: sys.FileMode(st.Mode)}, nil
	}
	return nil, nil
}
