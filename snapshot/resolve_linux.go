package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/beamhop/lightbox/internal/sys"
)

// Resolve returns p (an absolute path inside the image that layers make,
// bottom first as Snapshot.Layers) with the symlinks on its way resolved
// as a sandbox of the image sees them, across layers: on a merged-/usr
// image "/bin/tool" is "/usr/bin/tool". A symlink never leads out of the
// image (an absolute target starts again at its root, ".." stops there);
// the components after the first one the image lacks are kept as
// written. A build writes a COPY's or a WORKDIR's entries at the path
// this returns: an entry at "bin/tool" would make a directory "bin" in
// its layer that hides the image's /bin symlink, and with it every
// program under /usr/bin. Layers are read through descriptors,
// following no symlink on the host; a directory the caller cannot search
// (rootless, another id of the range) is taken as a plain directory.
func (s *Store) Resolve(layers []string, p string) (string, error) {
	pending := splitPath(p)
	var cur []string
	links := 0
	for len(pending) > 0 {
		comp := pending[0]
		pending = pending[1:]
		if comp == ".." {
			if len(cur) > 0 {
				cur = cur[:len(cur)-1]
			}
			continue
		}
		next := append(append([]string{}, cur...), comp)
		kind, target, err := entryInLayers(layers, path.Join(next...))
		if err != nil {
			return "", fmt.Errorf("resolve %s in the image: %w", p, err)
		}
		switch kind {
		case entryMissing:
			return path.Join(append([]string{"/"}, append(next, pending...)...)...), nil
		case entrySymlink:
			if links++; links > 40 {
				return "", fmt.Errorf("resolve %s in the image: %w", p, unix.ELOOP)
			}
			if path.IsAbs(target) {
				cur = nil
			}
			pending = append(splitPath(target), pending...)
		default:
			cur = next
		}
	}
	return "/" + path.Join(cur...), nil
}

type entryKind int

const (
	entryMissing entryKind = iota
	entrySymlink
	entryOther // a directory, or a file that ends the path
)

// entryInLayers finds rel (no symlink in its parent, as Resolve walks it)
// in the topmost layer that has it, as overlayfs looks it up: a whiteout
// is missing, and a layer where rel's parent is not a directory or is an
// opaque one hides the layers below. It returns a symlink's target.
func entryInLayers(layers []string, rel string) (entryKind, string, error) {
	for i := len(layers) - 1; i >= 0; i-- {
		root, err := unix.Open(layers[i], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return 0, "", &os.PathError{Op: "open", Path: layers[i], Err: err}
		}
		kind, target, hides, err := entryInLayer(root, rel)
		_ = unix.Close(root) // an O_PATH descriptor: nothing to flush
		if err != nil {
			return 0, "", fmt.Errorf("%s: %w", filepath.Join(layers[i], rel), err)
		}
		if kind != entryMissing || hides {
			return kind, target, nil
		}
	}
	return entryMissing, "", nil
}

// entryInLayer looks rel up in one layer (root, an O_PATH descriptor):
// its kind, a symlink's target, and whether the layer hides the layers
// below at rel when it lacks it.
func entryInLayer(root int, rel string) (kind entryKind, target string, hides bool, err error) {
	fd, err := sys.OpenBeneath(root, rel, unix.O_PATH|unix.O_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
		// Missing here: an opaque parent hides what is below.
		pfd, err := sys.OpenBeneath(root, parentOf(rel), unix.O_RDONLY|unix.O_DIRECTORY)
		switch {
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.EACCES):
			return entryMissing, "", false, nil // this layer has no such parent, or says nothing we can read
		case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP):
			return entryMissing, "", true, nil // as below
		case err != nil:
			return 0, "", false, err
		}
		v, err := fdGetxattr(pfd, "user.overlay.opaque")
		_ = unix.Close(pfd) // read-only
		return entryMissing, "", err == nil && string(v) == "y", nil
	case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP):
		// A parent here is no directory (a file, a whiteout, a
		// symlink) under a directory of a layer above: it hides the
		// layers below.
		return entryMissing, "", true, nil
	case errors.Is(err, unix.EACCES):
		// A parent the caller cannot search: taken as a directory.
		return entryOther, "", true, nil
	case err != nil:
		return 0, "", false, err
	}
	defer func() { _ = unix.Close(fd) }() // an O_PATH descriptor: nothing to flush
	st, err := sys.Fstat(fd, rel)
	if err != nil {
		return 0, "", false, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return 0, "", false, &os.PathError{Op: "readlinkat", Path: rel, Err: err}
		}
		return entrySymlink, string(buf[:n]), true, nil
	case unix.S_IFCHR:
		if st.Rdev == 0 {
			return entryMissing, "", true, nil // a whiteout
		}
	}
	return entryOther, "", true, nil
}

func parentOf(rel string) string {
	if i := strings.LastIndex(rel, "/"); i >= 0 {
		return rel[:i]
	}
	return "."
}

// MountStubs returns what a sandbox of the image that layers make adds to
// its tree to mount on targets (absolute paths inside it) where the image
// lacks them: for each target, with the symlinks on its way resolved as
// Resolve (and the launch, which makes mount points through them) does,
// the path's components from the first one the image lacks down to the
// target, deepest first. A build leaves these out of a RUN's layer
// (BuildLayer.Stubs) as docker's buildkit removes its mount stubs: the
// directory or file made only to mount on is no change of the step's.
func (s *Store) MountStubs(layers []string, targets []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, t := range targets {
		r, err := s.Resolve(layers, t)
		if err != nil {
			return nil, err
		}
		parts := splitPath(r)
		for i := range parts {
			// Resolve left no symlink before the first missing one.
			kind, _, err := entryInLayers(layers, path.Join(parts[:i+1]...))
			if err != nil {
				return nil, fmt.Errorf("mount stubs of %s: %w", t, err)
			}
			if kind != entryMissing {
				continue
			}
			for j := len(parts); j > i; j-- {
				if p := "/" + path.Join(parts[:j]...); !seen[p] {
					seen[p] = true
					out = append(out, p)
				}
			}
			break
		}
	}
	return out, nil
}
