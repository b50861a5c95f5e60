package volstore

import (
	"errors"
	"os"

	"github.com/beamhop/lightbox/internal/sys"
	"golang.org/x/sys/unix"
)

// duTree sums the space used under dir (512-byte blocks, hard links once),
// as du does; known is false when part of the tree could not be read.
// The tree is a volume's, which a running sandbox changes as it likes (a
// directory swapped for a symlink to a host path between two looks):
// it is walked by descriptors, each directory opened beneath its parent's
// (sys.OpenBeneath: no symlink followed, no mount crossed), each entry
// described by fstatat of its name there, so the walk never leaves the
// volume; what changed under it is left out and makes known false.
func duTree(dir string) (used int64, known bool) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, false
	}
	w := duWalk{known: true, seen: map[[2]uint64]bool{}}
	w.dir(fd, dir)
	return w.used, w.known
}

type duWalk struct {
	used  int64
	known bool
	seen  map[[2]uint64]bool // hard-linked files counted, by device and inode
}

func (w *duWalk) add(st *unix.Stat_t) {
	if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		k := [2]uint64{st.Dev, st.Ino}
		if w.seen[k] {
			return
		}
		w.seen[k] = true
	}
	w.used += st.Blocks * 512
}

// dir counts the directory open at fd, and what is under it; it closes fd.
func (w *duWalk) dir(fd int, name string) {
	f := os.NewFile(uintptr(fd), name)
	defer func() { _ = f.Close() }() // a directory opened read-only
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		w.known = false
		return
	}
	w.add(&st)
	names, err := f.Readdirnames(-1)
	if err != nil {
		w.known = false
	}
	for _, n := range names {
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if !errors.Is(err, unix.ENOENT) {
				w.known = false
			}
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			w.add(&st)
			continue
		}
		sub, err := sys.OpenBeneath(fd, n, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			// Swapped for a symlink (ELOOP) or another mount (EXDEV)
			// since the fstatat: not ours to count. Gone is no loss.
			if !errors.Is(err, unix.ENOENT) {
				w.known = false
			}
			continue
		}
		w.dir(sub, name+"/"+n)
	}
}

// fsSize is the size of the filesystem holding path.
func fsSize(path string) (int64, error) {
	var st unix.Statfs_t
	if err := statfs(path, &st); err != nil {
		return 0, err
	}
	return int64(st.Blocks) * st.Bsize, nil
}

func statfs(path string, st *unix.Statfs_t) error {
	for {
		err := unix.Statfs(path, st)
		if !errors.Is(err, unix.EINTR) {
			if err != nil {
				return &os.PathError{Op: "statfs", Path: path, Err: err}
			}
			return nil
		}
	}
}

// isMountRoot reports whether path is the root of a mount.
func isMountRoot(path string) (bool, error) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &st); err != nil {
		return false, &os.PathError{Op: "statx", Path: path, Err: err}
	}
	if st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return false, &os.PathError{Op: "statx", Path: path, Err: errors.ErrUnsupported}
	}
	return st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
}
