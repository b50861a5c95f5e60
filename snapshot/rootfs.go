package snapshot

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"github.com/beamhop/lightbox/internal/environ"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"time"

	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/reexec"
	"github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/umoci/oci/casext"
	"github.com/opencontainers/umoci/oci/layer"
	"golang.org/x/sys/unix"
)

// importedBy is the history entry of an imported root filesystem's layer.
const importedBy = "lightbox snapshot import"

// padHistory gives img a history entry for each of its layers that has
// none, ahead of those it has, before a step adds one: an image of this
// store made before imports wrote one (or an archive's without history)
// would give an image whose history counts fewer layers than it has,
// which buildah refuses to build on ("history lists 0 non-empty layers,
// but we have 1 layers on disk": podman build FROM an export of it).
func padHistory(img *ispec.Image) {
	n := 0
	for _, h := range img.History {
		if !h.EmptyLayer {
			n++
		}
	}
	if missing := len(img.RootFS.DiffIDs) - n; missing > 0 {
		pad := make([]ispec.History, missing)
		for i := range pad {
			pad[i] = ispec.History{Created: img.Created, CreatedBy: importedBy}
		}
		img.History = append(pad, img.History...)
	}
}

// putRootfsImage stores the config and manifest of a one-layer image made
// from a root filesystem.
func (s *Store) putRootfsImage(ctx context.Context, e casext.Engine, l ispec.Descriptor, diffID digest.Digest) (ispec.Descriptor, ispec.Manifest, error) {
	now := time.Now().UTC()
	cfg := ispec.Image{
		Created:  &now,
		Platform: ispec.Platform{OS: "linux", Architecture: goruntime.GOARCH},
		Config:   ispec.ImageConfig{Env: []string{"PATH=" + environ.DefaultPath}},
		RootFS:   ispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
		History:  []ispec.History{{Created: &now, CreatedBy: importedBy}},
	}
	d, n, err := e.PutBlobJSON(ctx, cfg)
	if err != nil {
		return ispec.Descriptor{}, ispec.Manifest{}, fmt.Errorf("store config: %w", err)
	}
	return s.putManifest(ctx, e, ispec.Manifest{
		Config: ispec.Descriptor{MediaType: ispec.MediaTypeImageConfig, Digest: d, Size: n},
		Layers: []ispec.Descriptor{l},
	})
}

// importRootfsDir makes a one-layer image of directory dir, whose owners
// were scanned (and whose files were found readable) by scanRootfsDir.
func (s *Store) importRootfsDir(ctx context.Context, e casext.Engine, dir string, own *rootfsOwners) (ispec.Descriptor, ispec.Manifest, error) {
	l, diffID, err := s.layerFromRootfsDir(ctx, e, dir, own)
	if err != nil {
		return ispec.Descriptor{}, ispec.Manifest{}, err
	}
	return s.putRootfsImage(ctx, e, l, diffID)
}

// rootfsOwners is what scanRootfsDir learnt of a root filesystem
// directory on the host: the host owners of the entries that the store's
// mapping does not cover, by their name in the layer (no leading or
// trailing slash; "" is the root).
type rootfsOwners struct {
	unmapped map[string][2]uint32
}

// scanRootfsDir walks dir on the host before anything is written to the
// store. It fails on the first entry (in walk order) that the import could
// not read — a directory it cannot list or enter, a regular file it cannot
// open — with an error that names it and matches fs.ErrPermission, and
// records the host owners of the entries the store's mapping does not
// cover, which the layer keeps as numbers (as a tarball of the tree would
// have them).
//
// Who reads: real root reads everything; rootless with a subordinate range,
// the tree is read by root of a user namespace with the store's mapping,
// which reads an entry whose owner and group are both mapped whatever its
// mode, and any other entry as this process's user would; rootless with a
// single id, by this process's user.
func (s *Store) scanRootfsDir(dir string) (*rootfsOwners, error) {
	own := &rootfsOwners{unmapped: map[string][2]uint32{}}
	euid := os.Geteuid()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrPermission) {
				return unreadable(dir, p, err)
			}
			return err
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrPermission) {
				return unreadable(dir, p, err)
			}
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no owner information", p)
		}
		uidMapped := mapsHost(s.mapping.UIDs, st.Uid)
		gidMapped := mapsHost(s.mapping.GIDs, st.Gid)
		if !uidMapped || !gidMapped {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			if rel == "." {
				rel = ""
			}
			own.unmapped[filepath.ToSlash(rel)] = [2]uint32{st.Uid, st.Gid}
		}
		if euid == 0 || (s.mapping.Subordinate && uidMapped && gidMapped) {
			return nil // read with capabilities over this inode
		}
		var mode uint32
		switch {
		case fi.Mode().IsRegular():
			mode = unix.R_OK
		case fi.IsDir():
			mode = unix.R_OK | unix.X_OK
		default:
			return nil // symlinks, devices, fifos: only their inode is read
		}
		if err := unix.Faccessat(unix.AT_FDCWD, p, mode, unix.AT_EACCESS); err != nil {
			if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
				return unreadable(dir, p, &fs.PathError{Op: "access", Path: p, Err: err})
			}
			return &fs.PathError{Op: "access", Path: p, Err: err}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return own, nil
}

// unreadable is the error for entry p of the tree dir that the import
// cannot read.
func unreadable(dir, p string, err error) error {
	what := p
	if fi, serr := os.Lstat(p); serr == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			what = fmt.Sprintf("%s (owner %d:%d, mode %s)", p, st.Uid, st.Gid, fi.Mode())
		}
	}
	return fmt.Errorf("%s cannot be read by uid %d, so the directory cannot be imported as it is "+
		"(nothing was written); make a tarball of it as its owner (e.g. as root: tar -C %s -cpf rootfs.tar .) "+
		"and import that: %w", what, os.Geteuid(), dir, err)
}

// mapsHost reports whether host id id is in one of the ranges rs.
func mapsHost(rs []idmap.Range, id uint32) bool {
	_, ok := toContainer(rs, id)
	return ok
}

// toContainer returns the id inside for host id id.
func toContainer(rs []idmap.Range, id uint32) (uint32, bool) {
	for _, r := range rs {
		if id >= r.HostID && uint64(id) < uint64(r.HostID)+uint64(r.Size) {
			return r.ContainerID + (id - r.HostID), true
		}
	}
	return 0, false
}

// layerFromRootfsDir stores a gzipped layer of root filesystem directory
// dir. The layer's owners are those a tarball of the tree would carry,
// except that the ids the store's mapping covers become the ids they are
// inside (a rootless caller's own files are root's): so a root-owned tree
// imports as root's files, and any other owner is kept as its number.
func (s *Store) layerFromRootfsDir(ctx context.Context, e casext.Engine, dir string, own *rootfsOwners) (ispec.Descriptor, digest.Digest, error) {
	var gen io.ReadCloser
	wait := func() error { return nil }
	// owner gives an entry's ids in the layer from those of its header.
	var owner func(name string, uid, gid int) (int, int)
	if os.Geteuid() != 0 && s.mapping.Subordinate {
		// Read the tree inside the store's user namespace, so that files
		// of the caller's subordinate ids (even 0600 ones) are read, with
		// their owners inside. Entries of ids outside the mapping show
		// there as the overflow id: they get their host ids back.
		cmd := reexec.Command("", HelperRole, s.mapping, 0, "tar", dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			return ispec.Descriptor{}, "", err
		}
		if wait, err = startChild(ctx, cmd, nil); err != nil {
			return ispec.Descriptor{}, "", err
		}
		gen = out
		owner = func(name string, uid, gid int) (int, int) {
			h, ok := own.unmapped[name]
			if !ok {
				return uid, gid
			}
			if !mapsHost(s.mapping.UIDs, h[0]) {
				uid = int(h[0])
			}
			if !mapsHost(s.mapping.GIDs, h[1]) {
				gid = int(h[1])
			}
			return uid, gid
		}
	} else {
		// Read as this process: headers carry host ids.
		gen = generateLayer(dir, false, layer.MapOptions{})
		owner = func(_ string, uid, gid int) (int, int) {
			if c, ok := toContainer(s.mapping.UIDs, uint32(uid)); ok {
				uid = int(c)
			}
			if c, ok := toContainer(s.mapping.GIDs, uint32(gid)); ok {
				gid = int(c)
			}
			return uid, gid
		}
	}
	tr, content := rewriteOwners(gen, owner)
	defer func() { _ = tr.Close() }() // closing the reader side again after the explicit Close below, or on error: nothing to report
	l, diffID, err := s.putLayer(ctx, e, tr, "layer of "+dir)
	_ = tr.Close()  // the reader's side: the generator's error reaches putBlob through the pipe
	_ = gen.Close() // the reader's side: the generator's error reaches putBlob through the pipe
	if werr := wait(); err == nil && werr != nil {
		err = werr
	}
	if err == nil {
		err = s.recordUnpackedSize(l.Digest, *content)
	}
	if err != nil {
		return ispec.Descriptor{}, "", fmt.Errorf("make layer of %s: %w", dir, err)
	}
	return l, diffID, nil
}

// rewriteOwners copies the tar stream r with each entry's owner replaced by
// owner(name, uid, gid), name without leading or trailing slashes. Once the
// copy is read to its end, *content is the sum of the sizes of its regular
// files.
func rewriteOwners(r io.Reader, owner func(name string, uid, gid int) (int, int)) (io.ReadCloser, *int64) {
	pr, pw := io.Pipe()
	content := new(int64)
	go func() {
		tr := tar.NewReader(r)
		tw := tar.NewWriter(pw)
		err := func() error {
			for {
				hdr, err := tr.Next()
				if err == io.EOF {
					return tw.Close()
				}
				if err != nil {
					return err
				}
				hdr.Uid, hdr.Gid = owner(strings.Trim(hdr.Name, "/"), hdr.Uid, hdr.Gid)
				if hdr.Typeflag == tar.TypeReg {
					*content += hdr.Size
				}
				if err := tw.WriteHeader(hdr); err != nil {
					return err
				}
				if _, err := io.Copy(tw, tr); err != nil {
					return err
				}
			}
		}()
		pw.CloseWithError(err)
	}()
	return pr, content
}

// layerFromDir stores a gzipped layer of directory dir, made with umoci's
// layer generator, and returns it with its diff_id. With overlay, dir is
// an overlayfs upper directory (user.overlay.* xattrs, whiteout devices),
// whose whiteouts become OCI whiteouts. The files keep their owners as the
// store's mapping sees them: as root, their host ids (through the
// mapping); rootless with a subordinate range, the tree is read inside the
// user namespace, so the caller's files become root's and those of its
// subordinate ids keep theirs; rootless with a single id, every file
// becomes root's.
func (s *Store) layerFromDir(ctx context.Context, e casext.Engine, dir string, overlay bool) (ispec.Descriptor, digest.Digest, error) {
	var tr io.ReadCloser
	wait := func() error { return nil }
	if os.Geteuid() != 0 && s.mapping.Subordinate {
		// Read the tree inside the store's user namespace, so that files
		// of the caller's subordinate ids keep their owners.
		args := []string{"tar", dir}
		if overlay {
			args = append(args, "overlay")
		}
		cmd := reexec.Command("", HelperRole, s.mapping, 0, args...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			return ispec.Descriptor{}, "", err
		}
		if wait, err = startChild(ctx, cmd, nil); err != nil {
			return ispec.Descriptor{}, "", err
		}
		tr = out
	} else {
		mo := s.mapOptions()
		if !overlay && os.Geteuid() == 0 {
			// A host directory imported by root holds the image's own
			// ids (a rootfs owned by root is the image's root), whatever
			// range the store's sandboxes run in.
			mo = layer.MapOptions{}
		}
		tr = generateLayer(dir, overlay, mo)
	}
	defer func() { _ = tr.Close() }() // closing the reader side again after the explicit Close below, or on error: nothing to report
	l, diffID, err := s.putLayer(ctx, e, tr, "layer of "+dir)
	_ = tr.Close() // the reader's side: the generator's error reaches putBlob through the pipe
	if werr := wait(); err == nil && werr != nil {
		err = werr
	}
	if err != nil {
		return ispec.Descriptor{}, "", fmt.Errorf("make layer of %s: %w", dir, err)
	}
	return l, diffID, nil
}

// generateLayer streams an uncompressed layer tar of dir.
func generateLayer(dir string, overlay bool, mo layer.MapOptions) io.ReadCloser {
	var f layer.OnDiskFormat = layer.DirRootfs{MapOptions: mo}
	if overlay {
		f = layer.OverlayfsRootfs{MapOptions: mo, UserXattr: true}
	}
	return layer.GenerateInsertLayer(dir, "/", false, &layer.RepackOptions{OnDiskFormat: f})
}

// importRootfsTar stores a root filesystem tarball as a layer blob as it
// is (gzip, zstd or plain), computing its diff_id on the way.
func (s *Store) importRootfsTar(ctx context.Context, e casext.Engine, p string) (ispec.Descriptor, ispec.Manifest, error) {
	f, err := os.Open(p)
	if err != nil {
		return ispec.Descriptor{}, ispec.Manifest{}, err
	}
	defer func() { _ = f.Close() }() // read-only
	fi, err := f.Stat()
	if err != nil {
		return ispec.Descriptor{}, ispec.Manifest{}, err
	}
	comp := compression(readMagic(f))
	mt := map[string]string{"": ispec.MediaTypeImageLayer, "gzip": ispec.MediaTypeImageLayerGzip, "zstd": ispec.MediaTypeImageLayerZstd}[comp]
	if mt == "" {
		return ispec.Descriptor{}, ispec.Manifest{}, fmt.Errorf("%s: %s compression is not supported: decompress it first, or use gzip or zstd", p, comp)
	}
	if comp == "" {
		l, err := s.putBlob(ctx, e, mt, ctxReader{ctx, f}, fi.Size(), "layer "+p)
		if err == nil {
			err = s.recordTarSize(ctx, l.Digest, f)
		}
		if err != nil {
			return ispec.Descriptor{}, ispec.Manifest{}, err
		}
		return s.putRootfsImage(ctx, e, l, l.Digest)
	}
	// Hash the decompressed stream beside the copy.
	pr, pw := io.Pipe()
	type result struct {
		d   digest.Digest
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		dr, err := decompressor(comp, pr)
		if err != nil {
			pr.CloseWithError(err)
			done <- result{err: err}
			return
		}
		h := digest.SHA256.Digester()
		n, err := tarContentSize(io.TeeReader(dr, h.Hash()))
		if cerr := dr.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			pr.CloseWithError(err)
		} else {
			_, _ = io.Copy(io.Discard, pr) // drains a pipe reader: cannot fail
		}
		done <- result{d: h.Digest(), n: n, err: err}
	}()
	l, err := s.putBlob(ctx, e, mt, io.TeeReader(ctxReader{ctx, f}, pw), fi.Size(), "layer "+p)
	_ = pw.Close() // closing a pipe's writer always returns nil
	res := <-done
	if err == nil && res.err != nil {
		err = fmt.Errorf("%s data: %w", comp, res.err)
	}
	if err == nil {
		err = s.recordUnpackedSize(l.Digest, res.n)
	}
	if err != nil {
		return ispec.Descriptor{}, ispec.Manifest{}, err
	}
	return s.putRootfsImage(ctx, e, l, res.d)
}
