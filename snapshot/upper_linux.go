package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/beamhop/lightbox/internal/reexec"
	"github.com/beamhop/lightbox/internal/sys"
	"github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/umoci/oci/casext"
	"github.com/opencontainers/umoci/oci/layer"
	rootlesscontainers "github.com/rootless-containers/proto/go-proto"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// The layer of a commit is written from a sandbox's upper directory, a tree
// that the sandbox's processes change while lightbox reads it. umoci's
// generator lstats a path and then opens the same path, following
// symlinks: a workload that swaps a regular file with a symlink to a host
// file (renameat2(RENAME_EXCHANGE)) between the two gets the host file
// into the layer. So the upper dir is read here by descriptor only: each
// directory is opened relative to its parent's descriptor, each entry with
// openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS|
// RESOLVE_NO_XDEV), first as O_PATH|O_NOFOLLOW to learn what it is
// (fstat), then (regular files and directories) again for reading, and
// what goes into the layer is what the second descriptor describes: its
// fstat, its xattrs, its bytes; a symlink's target is read from its own
// O_PATH descriptor. An entry that is gone or changed type (or inode)
// between the two opens is skipped with a warning: never followed.

// whPrefix is the prefix OCI layers reserve for whiteouts.
const (
	whPrefix = ".wh."
	whOpaque = whPrefix + whPrefix + ".opq"
)

// upperLayer streams an uncompressed OCI layer tar of dir, an overlayfs
// upper directory with user.overlay.* xattrs (as lightbox mounts them):
// char 0/0 devices and user.overlay.whiteout files become ".wh.<name>"
// entries, user.overlay.opaque directories get ".wh..wh..opq", escaped
// user.overlay.overlay.* xattrs become user.overlay.*, and owners are
// mapped back through mo as umoci does (rootless: root's, or what
// user.rootlesscontainers says). A file the sandbox named ".wh.*" cannot
// be stored in an OCI layer: it is left out with a warning, so that it
// cannot make every commit fail. stubs (BuildLayer.Stubs) are left out
// where they are still empty.
func upperLayer(dir string, mo layer.MapOptions, warn warnFunc, stubs []string) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		w := &upperWriter{tw: tar.NewWriter(pw), mo: mo, warn: warn, links: map[fileID]string{}, buf: make([]byte, 128<<10)}
		for _, p := range stubs {
			if w.stubs == nil {
				w.stubs = map[string]bool{}
			}
			w.stubs[strings.TrimPrefix(path.Clean("/"+p), "/")] = true
		}
		err := w.write(dir)
		if err == nil {
			err = w.tw.Close()
		}
		pw.CloseWithError(err) // the reader sees err, or EOF for nil
	}()
	return pr
}

type fileID struct{ dev, ino uint64 }

type upperWriter struct {
	tw    *tar.Writer
	mo    layer.MapOptions
	warn  warnFunc
	links map[fileID]string // first name of each inode with several links
	buf   []byte
	stubs map[string]bool // mount stubs, by name in the layer
}

func (w *upperWriter) write(dir string) error {
	// dir is a path lightbox made (the sandbox's state dir or its disk);
	// below it, nothing is resolved by path.
	fd, err := sys.Openat(unix.AT_FDCWD, dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	st, err := sys.Fstat(fd, dir)
	if err != nil {
		return err
	}
	xs, _, err := fdXattrs(fd, dir)
	if err != nil {
		return err
	}
	if err := w.putHeader("./", &st, xs, ""); err != nil {
		return err
	}
	return w.walk(fd, "")
}

// walk writes the entries of directory dfd, whose name in the layer is
// rel ("" for the root), depth first in name order.
func (w *upperWriter) walk(dfd int, rel string) error {
	names, err := readNames(dfd, "/"+rel)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := w.entry(dfd, rel, n); err != nil {
			return err
		}
	}
	return nil
}

func (w *upperWriter) entry(dfd int, rel, n string) error {
	name := path.Join(rel, n)
	if strings.HasPrefix(n, whPrefix) {
		w.warn("left out of the layer: the "+whPrefix+" prefix is reserved for whiteouts in OCI layers", name)
		return nil
	}
	pfd, err := sys.OpenBeneath(dfd, n, unix.O_PATH|unix.O_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		w.warn("left out of the layer: removed while the layer was written", name)
		return nil
	}
	if errors.Is(err, unix.EXDEV) {
		w.warn("left out of the layer: a mount point", name)
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	pst, err := sys.Fstat(pfd, name)
	if err != nil {
		return err
	}
	if w.stubs[name] {
		if empty, err := w.emptyStub(dfd, n, name, &pst); err != nil || empty {
			return err
		}
	}
	switch pst.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		if pst.Rdev == 0 { // overlayfs whiteout
			return w.putWhiteout(name)
		}
		return w.putHeader(name, &pst, nil, "")
	case unix.S_IFBLK, unix.S_IFIFO:
		return w.putHeader(name, &pst, nil, "")
	case unix.S_IFSOCK:
		w.warn("left out of the layer: a socket", name)
		return nil
	case unix.S_IFLNK:
		// Read from the symlink's own descriptor: what was opened.
		target, err := readlinkFd(pfd, name)
		if err != nil {
			return err
		}
		return w.putHeader(name, &pst, nil, target)
	case unix.S_IFREG:
		return w.regular(dfd, n, name, &pst)
	case unix.S_IFDIR:
		return w.directory(dfd, n, name, &pst)
	}
	w.warn(fmt.Sprintf("left out of the layer: unknown file type %#o", pst.Mode&unix.S_IFMT), name)
	return nil
}

// reopen opens entry n of dfd again for reading and checks that it is
// still the inode the O_PATH descriptor found; ok is false (and a warning
// given) when it changed or went away.
func (w *upperWriter) reopen(dfd int, n, name string, pst *unix.Stat_t, flags int) (fd int, st unix.Stat_t, ok bool, err error) {
	fd, err = sys.OpenBeneath(dfd, n, flags|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_NONBLOCK)
	switch {
	case errors.Is(err, unix.ENOENT):
		w.warn("left out of the layer: removed while the layer was written", name)
		return -1, st, false, nil
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ENXIO), errors.Is(err, unix.EXDEV):
		w.warn("left out of the layer: changed type while the layer was written", name)
		return -1, st, false, nil
	case err != nil:
		return -1, st, false, err
	}
	if st, err = sys.Fstat(fd, name); err != nil {
		unix.Close(fd)
		return -1, st, false, err
	}
	if st.Mode&unix.S_IFMT != pst.Mode&unix.S_IFMT || st.Dev != pst.Dev || st.Ino != pst.Ino {
		unix.Close(fd)
		w.warn("left out of the layer: replaced while the layer was written", name)
		return -1, st, false, nil
	}
	return fd, st, true, nil
}

func (w *upperWriter) regular(dfd int, n, name string, pst *unix.Stat_t) error {
	fd, st, ok, err := w.reopen(dfd, n, name, pst, 0)
	if !ok {
		return err
	}
	defer unix.Close(fd)
	xs, om, err := fdXattrs(fd, name)
	if err != nil {
		return err
	}
	if om.whiteout && st.Size == 0 {
		return w.putWhiteout(name)
	}
	id := fileID{uint64(st.Dev), st.Ino}
	if st.Nlink > 1 {
		if first, ok := w.links[id]; ok {
			return w.putLink(name, &st, first)
		}
		w.links[id] = name
	}
	if err := w.putHeader(name, &st, xs, ""); err != nil {
		return err
	}
	// Exactly the size the header says: a file that grew is cut, one
	// that shrank (a process that was not stopped) is padded.
	m, err := io.CopyBuffer(w.tw, io.LimitReader(fdReader{fd, name}, st.Size), w.buf)
	if err != nil {
		return err
	}
	if m < st.Size {
		w.warn("shrank while the layer was written: padded with zeros", name)
		if _, err := io.CopyBuffer(w.tw, io.LimitReader(zeros{}, st.Size-m), w.buf); err != nil {
			return err
		}
	}
	return nil
}

func (w *upperWriter) directory(dfd int, n, name string, pst *unix.Stat_t) error {
	fd, st, ok, err := w.reopen(dfd, n, name, pst, unix.O_DIRECTORY)
	if !ok {
		return err
	}
	defer unix.Close(fd)
	xs, om, err := fdXattrs(fd, name)
	if err != nil {
		return err
	}
	if err := w.putHeader(name+"/", &st, xs, ""); err != nil {
		return err
	}
	if string(om.opaque) == "y" {
		if err := w.tw.WriteHeader(&tar.Header{Name: path.Join(name, whOpaque), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
	}
	return w.walk(fd, name)
}

// emptyStub reports whether entry n of dfd (name in the layer, pst its
// fstat), a mount stub, is still what the launch made: an empty regular
// file, or a directory holding nothing but such stubs. The step left
// nothing there, and the stub stays out of the layer.
func (w *upperWriter) emptyStub(dfd int, n, name string, pst *unix.Stat_t) (bool, error) {
	switch pst.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return pst.Size == 0, nil
	case unix.S_IFDIR:
	default:
		return false, nil
	}
	fd, _, ok, err := w.reopen(dfd, n, name, pst, unix.O_DIRECTORY)
	if !ok {
		return false, err
	}
	defer unix.Close(fd)
	names, err := readNames(fd, "/"+name)
	if err != nil {
		return false, err
	}
	for _, c := range names {
		cname := path.Join(name, c)
		if !w.stubs[cname] {
			return false, nil
		}
		cfd, err := sys.OpenBeneath(fd, c, unix.O_PATH|unix.O_NOFOLLOW)
		if err != nil {
			return false, nil // gone, or a mount point: written (or warned about) as it is
		}
		cst, err := sys.Fstat(cfd, cname)
		unix.Close(cfd)
		if err != nil {
			return false, err
		}
		if empty, err := w.emptyStub(fd, c, cname, &cst); err != nil || !empty {
			return false, err
		}
	}
	return true, nil
}

func (w *upperWriter) putWhiteout(name string) error {
	dir, base := path.Split(name)
	return w.tw.WriteHeader(&tar.Header{Name: dir + whPrefix + base, Typeflag: tar.TypeReg})
}

func (w *upperWriter) putLink(name string, st *unix.Stat_t, first string) error {
	hdr, err := w.newHeader(name, st, nil)
	if err != nil {
		return err
	}
	hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
	return w.tw.WriteHeader(hdr)
}

func (w *upperWriter) putHeader(name string, st *unix.Stat_t, xs map[string][]byte, target string) error {
	hdr, err := w.newHeader(name, st, xs)
	if err != nil {
		return err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
	case unix.S_IFLNK:
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	}
	return w.tw.WriteHeader(hdr)
}

// newHeader fills in what every entry has: name, mode, owner, mtime,
// xattrs.
func (w *upperWriter) newHeader(name string, st *unix.Stat_t, xs map[string][]byte) (*tar.Header, error) {
	hdr := &tar.Header{
		Name:    name,
		Mode:    int64(st.Mode & 0o7777),
		ModTime: time.Unix(st.Mtim.Sec, 0),
	}
	uid, gid := int(st.Uid), int(st.Gid)
	if w.mo.Rootless {
		// Everything is the caller's; user.rootlesscontainers, which
		// umoci's rootless unpack writes, keeps the owner in the image.
		uid, gid = 0, 0
		if v, ok := xs[rootlesscontainers.Keyname]; ok {
			var r rootlesscontainers.Resource
			if err := proto.Unmarshal(v, &r); err != nil {
				return nil, fmt.Errorf("entry %q: xattr %s: %w", name, rootlesscontainers.Keyname, err)
			}
			if r.GetUid() != rootlesscontainers.NoopID {
				uid = int(r.GetUid())
			}
			if r.GetGid() != rootlesscontainers.NoopID {
				gid = int(r.GetGid())
			}
			delete(xs, rootlesscontainers.Keyname)
		}
	} else {
		var ok bool
		if uid, ok = specToContainer(w.mo.UIDMappings, uid); !ok {
			return nil, fmt.Errorf("entry %q: owner uid %d is not in the store's mapping", name, st.Uid)
		}
		if gid, ok = specToContainer(w.mo.GIDMappings, gid); !ok {
			return nil, fmt.Errorf("entry %q: group gid %d is not in the store's mapping", name, st.Gid)
		}
	}
	hdr.Uid, hdr.Gid = uid, gid
	for k, v := range xs {
		if len(v) == 0 {
			continue // an empty PAX record would mean "delete"
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+k] = string(v)
	}
	return hdr, nil
}

// specToContainer maps host id to the id it has in the sandbox; no mappings
// mean the identity (reading inside the store's user namespace).
func specToContainer(ms []rspec.LinuxIDMapping, id int) (int, bool) {
	if len(ms) == 0 {
		return id, true
	}
	for _, m := range ms {
		if uint32(id) >= m.HostID && uint32(id)-m.HostID < m.Size {
			return int(m.ContainerID + (uint32(id) - m.HostID)), true
		}
	}
	return 0, false
}

// layerXattr is the name an xattr of the upper dir has in the layer; ""
// leaves it out: overlayfs's own user.overlay.* (whiteouts, opaque,
// origin, impure…) and host-specific labels. What a workload set as
// user.overlay.X overlayfs stores escaped as user.overlay.overlay.X.
func layerXattr(x string) string {
	switch {
	case x == "security.selinux", x == "system.nfs4_acl":
		return ""
	case strings.HasPrefix(x, "user.overlay.overlay."):
		return "user.overlay." + strings.TrimPrefix(x, "user.overlay.overlay.")
	case strings.HasPrefix(x, "user.overlay."):
		return ""
	}
	return x
}

// overlayMarks are the overlayfs markers among an upper dir file's xattrs.
type overlayMarks struct {
	whiteout bool   // user.overlay.whiteout is set
	opaque   []byte // user.overlay.opaque's value
}

// fdXattrs reads the xattrs of open file fd, keyed by their names in the
// layer (see layerXattr), and the overlayfs markers among them.
func fdXattrs(fd int, name string) (map[string][]byte, overlayMarks, error) {
	var om overlayMarks
	list, err := fdListxattr(fd)
	if errors.Is(err, unix.EOPNOTSUPP) {
		return nil, om, nil
	}
	if err != nil {
		return nil, om, &fs.PathError{Op: "flistxattr", Path: name, Err: err}
	}
	var xs map[string][]byte
	for _, x := range list {
		key := layerXattr(x)
		switch x {
		case "user.overlay.whiteout":
			om.whiteout = true
			continue
		case "user.overlay.opaque":
		default:
			if key == "" {
				continue
			}
		}
		v, err := fdGetxattr(fd, x)
		if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.EOPNOTSUPP) {
			continue // removed since listed, or not readable by us
		}
		if err != nil {
			return nil, om, &fs.PathError{Op: "fgetxattr " + x, Path: name, Err: err}
		}
		if x == "user.overlay.opaque" {
			om.opaque = v
			continue
		}
		if xs == nil {
			xs = map[string][]byte{}
		}
		xs[key] = v
	}
	return xs, om, nil
}

func fdListxattr(fd int) ([]string, error) {
	buf, err := readGrowing(func(b []byte) (int, error) { return unix.Flistxattr(fd, b) })
	if err != nil {
		return nil, err
	}
	var out []string
	for _, x := range bytes.Split(buf, []byte{0}) {
		if len(x) > 0 {
			out = append(out, string(x))
		}
	}
	return out, nil
}

func fdGetxattr(fd int, x string) ([]byte, error) {
	return readGrowing(func(b []byte) (int, error) { return unix.Fgetxattr(fd, x, b) })
}

// readlinkFd reads the target of the symlink that O_PATH descriptor fd is.
func readlinkFd(fd int, name string) (string, error) {
	b, err := readGrowing(func(b []byte) (int, error) { return unix.Readlinkat(fd, "", b) })
	if err != nil {
		return "", &fs.PathError{Op: "readlinkat", Path: name, Err: err}
	}
	return string(b), nil
}

// readGrowing calls read with a buffer that grows, up to 1 MiB, until
// what it reads fits: read answers ERANGE (the xattr calls) or fills
// the buffer, perhaps cutting what it reads (readlink). It retries on
// EINTR.
func readGrowing(read func([]byte) (int, error)) ([]byte, error) {
	for size := 256; ; {
		buf := make([]byte, size)
		n, err := read(buf)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil && !errors.Is(err, unix.ERANGE):
			return nil, err
		case err == nil && n < size:
			return buf[:n], nil
		case size >= 1<<20:
			return nil, unix.ERANGE
		}
		size *= 2
	}
}

// readNames returns the names in open directory fd, sorted, without "."
// and "..".
func readNames(fd int, name string) ([]string, error) {
	buf := make([]byte, 32<<10)
	var names []string
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "getdents", Path: name, Err: err}
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	sort.Strings(names)
	return names, nil
}

type fdReader struct {
	fd   int
	name string
}

func (r fdReader) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(r.fd, p)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, &fs.PathError{Op: "read", Path: r.name, Err: err}
		}
		if n == 0 && len(p) > 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// layerFromUpper stores a gzipped layer of sandbox upper directory upper
// (see upperLayer) and returns it with its diff_id. Owners are mapped as
// layerFromDir maps them: rootless with a subordinate range the tree is
// read inside the store's user namespace, by a child that reports what it
// left out on its stderr (warningPrefix lines), re-emitted here.
func (s *Store) layerFromUpper(ctx context.Context, e casext.Engine, upper string, stubs []string) (ispec.Descriptor, digest.Digest, error) {
	warn := func(msg, name string) { s.log.Warn(msg, "path", name, "upper", upper) }
	var tr io.ReadCloser
	wait := func() error { return nil }
	if os.Geteuid() != 0 && s.mapping.Subordinate {
		cmd := reexec.Command("", HelperRole, s.mapping, 0, append([]string{"upper", upper}, stubs...)...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			return ispec.Descriptor{}, "", err
		}
		cmd.Stderr = &warnRelay{warn: warn}
		if wait, err = startChild(ctx, cmd, nil); err != nil {
			return ispec.Descriptor{}, "", err
		}
		tr = out
	} else {
		tr = upperLayer(upper, s.mapOptions(), warn, stubs)
	}
	defer func() { _ = tr.Close() }() // closing the reader side again after the explicit Close below, or on error: nothing to report
	l, diffID, err := s.putLayer(ctx, e, tr, "layer of "+upper)
	_ = tr.Close() // the reader's side: the walker's error reaches putBlob through the pipe
	if werr := wait(); err == nil && werr != nil {
		err = werr
	}
	if err != nil {
		return ispec.Descriptor{}, "", fmt.Errorf("make layer of %s: %w", upper, err)
	}
	return l, diffID, nil
}
