package lightbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// refuseUserStore keeps real root out of a store that another user
// controls: one whose directory, or a directory (or symlink) on the way
// to it, belongs to an ordinary user or can be written by one. Root would
// otherwise follow that user's paths (a volumes/ symlinked elsewhere, a
// volume's data/ symlinked onto a host directory, a loop image the user
// wrote) with root's rights. Root's one job in a user's store, keeping a
// volume with a quota for them, goes through VolumeOptions.Owner, which
// opens nothing there by a path it would follow.
func refuseUserStore(root string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	dir, why, uid, ok := userControlled(root)
	if !ok {
		return nil
	}
	name := "USER"
	if uid > 0 {
		name = strconv.Itoa(uid)
		why = fmt.Sprintf("belongs to uid %d", uid)
		if u, err := user.LookupId(name); err == nil {
			name = u.Username
			why = fmt.Sprintf("belongs to %s (uid %d)", u.Username, uid)
		}
	}
	return fmt.Errorf("open store %s: %s %s: root does not act in a store another user controls "+
		"(it would follow paths that user chose); run lightbox as that user, or, to give them a volume with a quota, as root: "+
		"lightbox volume create --quota-mib N --owner %s --owner-root %s NAME", root, dir, why, name, root)
}

// userControlled reports the first directory or symlink on the way to
// path (as written, and as its symlinks resolve) that a user other than
// root owns or may write into (group or others, without the sticky bit),
// with why and the owning user's uid (0 when it is root's but writable by
// others).
func userControlled(path string) (dir, why string, uid int, ok bool) {
	path = filepath.Clean(path)
	if dir, why, uid, ok = controlledPrefix(path); ok {
		return dir, why, uid, ok
	}
	// The deepest part that exists, with its symlinks resolved.
	existing := path
	for {
		if _, err := os.Lstat(existing); err == nil || !errors.Is(err, fs.ErrNotExist) || existing == "/" {
			break
		}
		existing = filepath.Dir(existing)
	}
	if real, err := filepath.EvalSymlinks(existing); err == nil && real != existing {
		return controlledPrefix(real)
	}
	return "", "", 0, false
}

// controlledPrefix checks each existing prefix of the clean absolute path p.
func controlledPrefix(p string) (string, string, int, bool) {
	prefixes := []string{p}
	for d := p; d != "/" && d != "."; {
		d = filepath.Dir(d)
		prefixes = append(prefixes, d)
	}
	for i := len(prefixes) - 1; i >= 0; i-- {
		var st unix.Stat_t
		if err := unix.Lstat(prefixes[i], &st); err != nil {
			return "", "", 0, false // missing: root makes the rest
		}
		if st.Uid != 0 {
			return prefixes[i], "", int(st.Uid), true
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK || st.Mode&unix.S_ISVTX != 0 {
			continue
		}
		if st.Mode&0o002 != 0 {
			return prefixes[i], "can be written by anyone", 0, true
		}
		if st.Mode&0o020 != 0 && st.Gid != 0 {
			return prefixes[i], fmt.Sprintf("can be written by group %d", st.Gid), 0, true
		}
	}
	return "", "", 0, false
}
