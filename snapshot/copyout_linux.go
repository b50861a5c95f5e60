package snapshot

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	rootlesscontainers "github.com/rootless-containers/proto/go-proto"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/beamhop/lightbox/internal/reexec"
	"github.com/beamhop/lightbox/internal/sys"
)

// CopyOut streams an uncompressed layer tar of req's sources placed under
// req.Dest (COPY --from). The image's layers are stacked into a read-only
// overlay that is never attached to any path (a detached mount, gone with
// its last descriptor): nothing is mounted where anyone sees it, and
// nothing is left when the process dies. Rootless, the tree is read by the
// store's helper (HelperRole) inside a user namespace with the store's
// mapping and a mount namespace of its own (where it may mount). Owners,
// modes and times are kept as a sandbox of the image sees them, and so
// are the extended attributes a layer carries (user.* and file
// capabilities; see copiedXattr). Read the stream to its end: the copy's
// error, if any, is returned by the read that would have returned io.EOF
// (and by Close, from the helper).
func (s *Store) CopyOut(ctx context.Context, req CopyRequest) (io.ReadCloser, error) {
	if len(req.Layers) == 0 {
		return nil, errors.New("copy out: the image has no files (no layers)")
	}
	if os.Geteuid() == 0 {
		// Real root stacks the layers itself: a detached mount, attached
		// nowhere, gone with its last descriptor. (A helper mapped to the
		// store's private range could not even search the directories
		// above the store.) Owners are turned into the sandbox's ids.
		pr, pw := io.Pipe()
		go func() {
			pw.CloseWithError(copyOut(pw, req, func(uid, gid int) (int, int) {
				if c, ok := toContainer(s.mapping.UIDs, uint32(uid)); ok {
					uid = int(c)
				}
				if c, ok := toContainer(s.mapping.GIDs, uint32(gid)); ok {
					gid = int(c)
				}
				return uid, gid
			}))
		}()
		return pr, nil
	}
	arg, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	cmd := reexec.Command("", HelperRole, s.mapping, unix.CLONE_NEWNS, "copyout", string(arg))
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	wait, err := startChild(ctx, cmd, nil)
	if err != nil {
		_ = out.Close() // never read: the start's error is returned
		return nil, err
	}
	return &childReader{r: out, wait: wait}, nil
}

// childReader is a helper's stdout whose end reports the helper's exit.
type childReader struct {
	r    io.ReadCloser
	wait func() error
	done bool
	err  error
}

func (c *childReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		if werr := c.finish(); werr != nil {
			return n, werr
		}
	}
	return n, err
}

func (c *childReader) finish() error {
	if !c.done {
		c.done = true
		c.err = c.wait()
	}
	return c.err
}

// Close ends the stream; a helper stopped before its end (the pipe
// closed under it) reports that as its error.
func (c *childReader) Close() error {
	_ = c.r.Close() // the read side of a pipe: the helper's exit is what matters
	return c.finish()
}

// copyOutMain is the helper's "copyout REQUEST-JSON": it writes the layer
// tar of the request to stdout.
func copyOutMain(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: copyout REQUEST")
	}
	var req CopyRequest
	if err := json.Unmarshal([]byte(args[0]), &req); err != nil {
		return fmt.Errorf("copyout: %w", err)
	}
	// Inside the namespace: owners as the sandbox sees them.
	bw := bufio.NewWriterSize(os.Stdout, 1<<16)
	if err := copyOut(bw, req, nil); err != nil {
		return err
	}
	return bw.Flush()
}

// copyOut writes the layer tar of req to w; owner, when set, rewrites the
// ids the files show.
func copyOut(w io.Writer, req CopyRequest, owner func(uid, gid int) (int, int)) error {
	root, single, err := openImage(req.Layers)
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }() // read-only
	tw := tar.NewWriter(w)
	c := copier{root: root, tw: tw, single: single, owner: owner, makeDest: req.MakeDest}
	for _, src := range req.Sources {
		srcs, err := c.expand(src)
		if err != nil {
			return err
		}
		for _, s := range srcs {
			// What a pattern matches goes into Dest, as docker copies.
			if err := c.copySource(s, req.Dest, req.DestDir || hasPattern(src)); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

// openImage opens the merged view of layers (bottom first): the layer
// itself when there is one (single: its whiteouts are then skipped), else
// a read-only overlay of them, detached (never attached to a path).
func openImage(layers []string) (*os.Root, bool, error) {
	if len(layers) == 0 {
		return nil, false, errors.New("the image has no files (no layers)")
	}
	if len(layers) == 1 {
		r, err := os.OpenRoot(layers[0])
		return r, true, err
	}
	// The options a sandbox's root is mounted with (overlay.Spec.Params),
	// without an upper dir: read-only.
	ps := []sys.Param{{Key: "userxattr"}, {Key: "redirect_dir", Value: "nofollow"}, {Key: "metacopy", Value: "off"}}
	for i := len(layers) - 1; i >= 0; i-- {
		ps = append(ps, sys.Param{Key: "lowerdir+", Value: layers[i]})
	}
	mfd, err := sys.FSMount("overlay", ps, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV, "image")
	if err != nil {
		if errors.Is(err, unix.EINVAL) {
			return nil, false, fmt.Errorf("stack the image's layers: %w (COPY --from of a multi-layer image needs overlayfs's \"lowerdir+\", Linux 6.8 or later: %w)", err, errors.ErrUnsupported)
		}
		return nil, false, fmt.Errorf("stack the image's layers: %w", err)
	}
	defer func() { _ = unix.Close(mfd) }() // the root opened below holds the mount
	r, err := os.OpenRoot(fmt.Sprintf("/proc/self/fd/%d", mfd))
	return r, false, err
}

// errLeavesRoot is a source path that climbs above the image's root.
var errLeavesRoot = errors.New("leaves the image's root (through .. or a symlink)")

type copier struct {
	root   *os.Root
	tw     *tar.Writer
	single bool
	owner  func(uid, gid int) (int, int) // nil = as they are
	// makeDest: a directory source's own entry is written as dest, by
	// the first one (CopyRequest.MakeDest).
	makeDest bool
}

// splitPath splits p into its components, dropping empty ones and ".".
func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// resolve finds src in the image as a sandbox of it would, following
// symlinks (an absolute target starts again at the image's root), and
// returns the path with no symlink in it. A ".." above the root, written
// or reached through a symlink, is an error.
func (c *copier) resolve(src string) (string, error) {
	pending := splitPath(src)
	var cur []string
	links := 0
	for len(pending) > 0 {
		comp := pending[0]
		pending = pending[1:]
		if comp == ".." {
			if len(cur) == 0 {
				return "", fmt.Errorf("%s: %w", src, errLeavesRoot)
			}
			cur = cur[:len(cur)-1]
			continue
		}
		next := path.Join(append(cur, comp)...)
		fi, err := c.root.Lstat(next)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return "", fmt.Errorf("%s: not in the image: %w", src, fs.ErrNotExist)
		}
		if err != nil {
			return "", fmt.Errorf("%s: %w", src, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = append(cur, comp)
			continue
		}
		if links++; links > 40 {
			return "", fmt.Errorf("%s: %w", src, syscall.ELOOP)
		}
		t, err := c.root.Readlink(next)
		if err != nil {
			return "", fmt.Errorf("%s: %w", src, err)
		}
		if path.IsAbs(t) {
			cur = nil
		}
		pending = append(splitPath(t), pending...)
	}
	if len(cur) == 0 {
		return ".", nil
	}
	return path.Join(cur...), nil
}

func hasPattern(s string) bool { return strings.ContainsAny(s, "*?[") }

// expand returns the paths pattern src matches in the image (src itself
// when it has no pattern), each component matched as path.Match does in
// the directory the components before it resolve to.
func (c *copier) expand(src string) ([]string, error) {
	if !hasPattern(src) {
		return []string{src}, nil
	}
	if _, err := path.Match(src, ""); err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	paths := []string{"/"}
	for _, comp := range splitPath(src) {
		if comp == ".." {
			return nil, fmt.Errorf("%s: a pattern with .. in it", src)
		}
		var next []string
		for _, p := range paths {
			if !hasPattern(comp) {
				next = append(next, path.Join(p, comp))
				continue
			}
			dir, err := c.resolve(p)
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errLeavesRoot) {
				continue // a match of an earlier component that is no directory here
			}
			if err != nil {
				return nil, err
			}
			ents, err := fs.ReadDir(c.root.FS(), dir)
			if errors.Is(err, syscall.ENOTDIR) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", src, err)
			}
			for _, e := range ents {
				if ok, _ := path.Match(comp, e.Name()); ok {
					next = append(next, path.Join(p, e.Name()))
				}
			}
		}
		paths = next
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%s: nothing in the image matches", src)
	}
	return paths, nil
}

// copySource writes src: a directory's contents under dest, a file at
// dest (or in it, when destDir).
func (c *copier) copySource(src, dest string, destDir bool) error {
	rel, err := c.resolve(src)
	if err != nil {
		return err
	}
	fi, err := c.root.Lstat(rel)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	if !fi.IsDir() {
		dst := dest
		if destDir {
			dst = path.Join(dest, path.Base(path.Clean("/"+src)))
		}
		return c.write(rel, dst, fi)
	}
	return fs.WalkDir(c.root.FS(), rel, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
		if p == rel {
			// dest itself: as the image has it, or made as a parent,
			// or as this directory is when asked.
			if !c.makeDest {
				return nil
			}
			c.makeDest = false
			fi, err := c.root.Lstat(p)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			return c.write(p, dest, fi)
		}
		fi, err := c.root.Lstat(p)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		sub := p
		if rel != "." {
			sub = strings.TrimPrefix(p, rel+"/")
		}
		return c.write(p, path.Join(dest, sub), fi)
	})
}

// write writes the entry of rel (no symlink on its way) as dst.
func (c *copier) write(rel, dst string, fi fs.FileInfo) error {
	link := ""
	switch m := fi.Mode(); {
	case m&fs.ModeSocket != 0:
		return nil // nothing a layer can hold
	case m&fs.ModeSymlink != 0:
		var err error
		if link, err = c.root.Readlink(rel); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
	case m&fs.ModeCharDevice != 0 && c.single:
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Rdev == 0 {
			return nil // a whiteout in a lone layer hides nothing
		}
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	// Only regular files and directories carry the xattrs a copy keeps
	// (the kernel allows user.* on nothing else), so only they are opened.
	var f *os.File
	if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeDir {
		if f, err = c.root.Open(rel); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		defer func() { _ = f.Close() }() // read-only
		if err := c.xattrs(hdr, f, rel); err != nil {
			return err
		}
	}
	hdr.Name = strings.TrimPrefix(dst, "/")
	if hdr.Typeflag == tar.TypeDir {
		hdr.Name += "/"
	}
	// The owners as this namespace shows them (a sandbox's ids), no
	// names, and nothing that changes from one read to the next.
	hdr.Uname, hdr.Gname = "", ""
	if c.owner != nil {
		hdr.Uid, hdr.Gid = c.owner(hdr.Uid, hdr.Gid)
	}
	if err := applyRootlessOwner(hdr); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	if err := c.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%s: %w", dst, err)
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	if n, err := io.Copy(c.tw, f); err != nil || n != hdr.Size {
		return fmt.Errorf("%s: copied %d of %d bytes: %v", rel, n, hdr.Size, err)
	}
	return nil
}

// copiedXattr is the name xattr x of a file of the image has in the copy;
// "" leaves it out. A copy carries what a layer of lightbox's carries and
// means the same on another host: user.* and file capabilities
// (security.capability). Not overlayfs's own user.overlay.* markers (a
// lone layer is read as stored, where they are raw and a workload's own
// user.overlay.X is escaped, layerXattr; the overlay of several hides
// them and unescapes), nor trusted.*, security.selinux or other labels
// of this host's.
func copiedXattr(x string, single bool) string {
	if single {
		x = layerXattr(x)
	}
	if x == "security.capability" || strings.HasPrefix(x, "user.") {
		return x
	}
	return ""
}

// xattrs adds the xattrs of open file f (rel) that a copy keeps to hdr as
// PAX records.
func (c *copier) xattrs(hdr *tar.Header, f *os.File, rel string) error {
	fd := int(f.Fd())
	list, err := fdListxattr(fd)
	if errors.Is(err, unix.EOPNOTSUPP) {
		return nil // a file system without xattrs: nothing to copy
	}
	if err != nil {
		return &fs.PathError{Op: "flistxattr", Path: rel, Err: err}
	}
	for _, x := range list {
		key := copiedXattr(x, c.single)
		if key == "" {
			continue
		}
		v, err := fdGetxattr(fd, x)
		if errors.Is(err, unix.ENODATA) || (len(v) == 0 && err == nil) {
			continue // gone since listed; or empty, which a PAX record would read as "delete"
		}
		if err != nil {
			return &fs.PathError{Op: "fgetxattr " + x, Path: rel, Err: err}
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+key] = string(v)
	}
	return nil
}

// applyRootlessOwner turns user.rootlesscontainers, with which umoci's
// rootless unpack (a store with a single id) records an owner it could
// not give, into hdr's owner, as a commit does (upperWriter.newHeader):
// the copy's files are owned as the image shows them, and the xattr is
// not copied.
func applyRootlessOwner(hdr *tar.Header) error {
	k := "SCHILY.xattr." + rootlesscontainers.Keyname
	v, ok := hdr.PAXRecords[k]
	if !ok {
		return nil
	}
	delete(hdr.PAXRecords, k)
	var r rootlesscontainers.Resource
	if err := proto.Unmarshal([]byte(v), &r); err != nil {
		return fmt.Errorf("xattr %s: %w", rootlesscontainers.Keyname, err)
	}
	if r.GetUid() != rootlesscontainers.NoopID {
		hdr.Uid = int(r.GetUid())
	}
	if r.GetGid() != rootlesscontainers.NoopID {
		hdr.Gid = int(r.GetGid())
	}
	return nil
}
