package lightbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/reexec"
	"golang.org/x/sys/unix"
)

// targetOwner is the owner and mode of a mount target as the snapshot has
// it (a directory), in host ids, for a new volume's root directory.
type targetOwner struct {
	uid, gid int
	mode     os.FileMode
}

// lookupInLayers finds target in layers (bottom first), top first, as the
// overlay would show it, and reports its owner when it is a directory
// there. Each lookup is resolved inside its layer (RESOLVE_IN_ROOT): a
// symlink in a layer never leads to a host path. An error is returned
// only when a layer could not be searched (EACCES: a directory owned by
// another id of a rootless range).
func lookupInLayers(layers []string, target string) (*targetOwner, error) {
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
		unix.Close(root)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "openat2", Path: filepath.Join(layers[i], rel), Err: err}
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		unix.Close(fd)
		if err != nil {
			return nil, err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return nil, nil // a file (or whiteout) hides what is below
		}
		return &targetOwner{uid: int(st.Uid), gid: int(st.Gid), mode: fileMode(st.Mode)}, nil
	}
	return nil, nil
}

// lookupRole runs lookupInLayers inside a user namespace with the store's
// mapping, where a rootless store can search directories that belong to
// other ids of its range.
const lookupRole = "lookup-target"

func lookupMain() {
	if err := reexec.WaitMapped(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	args := os.Args[1:]
	if len(args) < 2 {
		os.Exit(2)
	}
	o, err := lookupInLayers(args[1:], args[0])
	switch {
	case err != nil:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	case o == nil:
		fmt.Println("none")
	default:
		fmt.Println(o.uid, o.gid, uint32(o.mode))
	}
	os.Exit(0)
}

// ownerOfTarget is lookupInLayers, through the lookup role when the host
// cannot search a layer (rootless, a directory of another id).
func (r *Runtime) ownerOfTarget(ctx context.Context, layers []string, target string) (*targetOwner, error) {
	o, err := lookupInLayers(layers, target)
	if err == nil || !errors.Is(err, unix.EACCES) || !r.mapping.Subordinate {
		return o, err
	}
	c := reexec.Command("", lookupRole, r.mapping, 0, append([]string{target}, layers...)...)
	var out, errb strings.Builder
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("look up %s in the snapshot: %w", target, err)
	}
	if err := c.Wait(); err != nil {
		return nil, fmt.Errorf("look up %s in the snapshot: %w: %s", target, err, strings.TrimSpace(errb.String()))
	}
	if strings.TrimSpace(out.String()) == "none" {
		return nil, nil
	}
	var uid, gid, mode uint32
	if _, err := fmt.Sscan(out.String(), &uid, &gid, &mode); err != nil {
		return nil, fmt.Errorf("look up %s in the snapshot: %q: %w", target, out.String(), err)
	}
	return toHostOwner(r.mapping, uid, gid, mode)
}

// toHostOwner maps ids seen inside the namespace to the host's.
func toHostOwner(m idmap.Mapping, uid, gid, mode uint32) (*targetOwner, error) {
	hu, ok1 := m.HostUID(uid)
	hg, ok2 := m.HostGID(gid)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("owner %d:%d is not mapped", uid, gid)
	}
	return &targetOwner{uid: int(hu), gid: int(hg), mode: os.FileMode(mode)}, nil
}

// fileMode turns a stat mode's permission bits into an os.FileMode.
func fileMode(m uint32) os.FileMode {
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
