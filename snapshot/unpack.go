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
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"syscall"

	"github.com/apex/log"
	"github.com/beamhop/lightbox/internal/lockfile"
	"github.com/beamhop/lightbox/internal/reexec"
	"github.com/beamhop/lightbox/internal/rmtree"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/umoci/oci/casext"
	"github.com/opencontainers/umoci/oci/casext/blobcompress"
	"github.com/opencontainers/umoci/oci/layer"
	"golang.org/x/sys/unix"

	"github.com/beamhop/lightbox/internal/idmap"
)

// HelperRole is the re-exec role of the store's helper: a process that
// works as root of a user namespace with the store's mapping, where a
// rootless store owns every id of its range. It unpacks layers, writes
// layer tars, renames directories and looks up mount targets (see
// HelperMain); lightbox.Init (and this package's TestMain) dispatch it to
// HelperMain.
const HelperRole = "snapshot-helper"

// Docker's layer media types, which OCI manifests sometimes carry.
const (
	dockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	dockerLayerTar  = "application/vnd.docker.image.rootfs.diff.tar"
)

// layerAlgorithm returns the decompressor of a layer media type; an error
// for a media type that is not a layer lightbox can unpack.
func layerAlgorithm(mt string) (blobcompress.Algorithm, error) {
	switch mt {
	case ispec.MediaTypeImageLayer, dockerLayerTar,
		ispec.MediaTypeImageLayerNonDistributable: //nolint:staticcheck // still found in images
		return blobcompress.Noop, nil
	case ispec.MediaTypeImageLayerGzip, dockerLayerGzip,
		ispec.MediaTypeImageLayerNonDistributableGzip: //nolint:staticcheck // still found in images
		return blobcompress.Gzip, nil
	case ispec.MediaTypeImageLayerZstd,
		ispec.MediaTypeImageLayerNonDistributableZstd: //nolint:staticcheck // still found in images
		return blobcompress.Zstd, nil
	}
	return nil, fmt.Errorf("unknown layer media type %q", mt)
}

// ensureLayers unpacks the layers that are not unpacked yet, two at a
// time.
func (s *Store) ensureLayers(ctx context.Context, e casext.Engine, layers []ispec.Descriptor) error {
	if len(layers) < 2 || goruntime.GOMAXPROCS(0) < 2 {
		for _, l := range layers {
			if err := s.ensureLayer(ctx, e, l); err != nil {
				return err
			}
		}
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, 2)
	errs := make([]error, len(layers))
	var wg sync.WaitGroup
	for i, l := range layers {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if errs[i] = s.ensureLayer(ctx, e, l); errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	// The first failure in layer order, not the cancellations it caused.
	var first error
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}

// ensureLayer unpacks layer blob l (already in the store's CAS) into its
// layer directory unless it is there.
func (s *Store) ensureLayer(ctx context.Context, e casext.Engine, l ispec.Descriptor) error {
	dst := s.LayerDir(l.Digest)
	if _, err := os.Lstat(dst); err == nil {
		return nil
	}
	lk, err := lockfile.Exclusive(ctx, s.layerLock(l.Digest))
	if err != nil {
		return fmt.Errorf("unpack layer %s: %w", l.Digest, err)
	}
	defer lk.Close()
	if _, err := os.Lstat(dst); err == nil {
		return nil // another process unpacked it while we waited
	}
	t, err := s.newTemp(ctx, "unpack")
	if err != nil {
		return fmt.Errorf("unpack layer %s: %w", l.Digest, err)
	}
	defer t.close()
	root := filepath.Join(t.dir, "layer")
	err = s.unpackInto(ctx, e, l, root, t.f)
	if err == nil {
		err = syncLayer(l, t.f)
	}
	if err == nil {
		if err = s.rename(ctx, root, dst); err != nil {
			err = fmt.Errorf("unpack layer %s: %w", l.Digest, err)
		}
	}
	if err != nil {
		// Clean up even when ctx was cancelled.
		if rerr := s.removeAll(context.WithoutCancel(ctx), t.dir); rerr != nil {
			s.log.Warn("remove failed unpack", "path", t.dir, "err", rerr)
		}
		return err
	}
	_ = os.Remove(t.dir) // best effort: the layer is in place; an empty temp dir is cleanTmp's
	s.log.Info("unpacked layer", "layer", l.Digest.String())
	return nil
}

// errReader remembers the first error other than EOF its reader returned.
type errReader struct {
	r   io.Reader
	err error
}

func (r *errReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

func (s *Store) unpackInto(ctx context.Context, e casext.Engine, l ispec.Descriptor, root string, lockF *os.File) error {
	if _, err := layerAlgorithm(l.MediaType); err != nil {
		return fmt.Errorf("unpack layer %s: %w", l.Digest, err)
	}
	if err := os.Mkdir(root, 0o755); err != nil {
		return fmt.Errorf("unpack layer %s: %w", l.Digest, err)
	}
	if err := s.chownToRoot(root); err != nil {
		return fmt.Errorf("unpack layer %s: %w", l.Digest, err)
	}
	// 0755 whatever this process's umask (077 made it 0700): most layers
	// have no "./" entry to set it, and the top layer's root is the
	// sandbox's "/" (runtime's rootMode). After the chown, which clears
	// set-id bits.
	if err := os.Chmod(root, 0o755); err != nil {
		return fmt.Errorf("unpack layer %s: %w", l.Digest, err)
	}
	blob, err := e.GetVerifiedBlob(ctx, l)
	if err != nil {
		return fmt.Errorf("unpack layer %s: %w", l.Digest, err)
	}
	defer func() { _ = blob.Close() }() // on early returns; the Close below checks the digest
	bar := s.bar(l.Size, "unpack "+short(l.Digest.String()))
	er := &errReader{r: ctxReader{ctx, bar.wrap(blob)}}
	switch {
	case os.Geteuid() != 0 && s.mapping.Subordinate:
		err = s.unpackChild(ctx, root, l.MediaType, er, lockF)
	default:
		err = unpackStream(root, er, l.MediaType, s.mapOptions())
		if err == nil {
			err = s.chownImplied(root)
		}
	}
	if err == nil {
		err = er.err
	}
	if err == nil {
		// Read to EOF and close: the digest is checked there.
		if _, err = io.Copy(io.Discard, er); err == nil {
			err = er.err
		}
	}
	if cerr := blob.Close(); err == nil && cerr != nil {
		err = cerr
	}
	bar.finish()
	if err != nil {
		return fmt.Errorf("unpack layer %s: %w", l.Digest, err)
	}
	return nil
}

// chownToRoot gives p to the host ids of the sandbox's root, as real root
// with a mapping other than the identity (a private range): the root of a
// layer whose tar has no "./" entry is then the sandbox's root's, not
// nobody's. Rootless, the caller already is the sandbox's root.
func (s *Store) chownToRoot(p string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, ok1 := s.mapping.HostUID(0)
	gid, ok2 := s.mapping.HostGID(0)
	if !ok1 || !ok2 || (uid == 0 && gid == 0) {
		return nil
	}
	return os.Lchown(p, int(uid), int(gid))
}

// chownImplied gives the directories umoci made for entries whose parent
// the tar does not list ("etc/f" without "etc/") to the sandbox's root, as
// real root with a private range: umoci makes them as the unpacking
// process, host root, which the range does not map (the sandbox would see
// them as nobody's and could not write in them). No entry of the tar can
// be host root's in such a layer: every id is mapped into the range.
func (s *Store) chownImplied(root string) error {
	uid, ok1 := s.mapping.HostUID(0)
	gid, ok2 := s.mapping.HostGID(0)
	if os.Geteuid() != 0 || !ok1 || !ok2 || uid == 0 || gid == 0 {
		return nil
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok || (st.Uid != 0 && st.Gid != 0) {
			return nil
		}
		nu, ng := int(st.Uid), int(st.Gid)
		if st.Uid == 0 {
			nu = int(uid)
		}
		if st.Gid == 0 {
			ng = int(gid)
		}
		return os.Lchown(p, nu, ng)
	})
}

// mapOptions are umoci's for an in-process unpack with the store's mapping.
func (s *Store) mapOptions() layer.MapOptions {
	conv := func(rs []idmap.Range) []rspec.LinuxIDMapping {
		out := make([]rspec.LinuxIDMapping, len(rs))
		for i, r := range rs {
			out[i] = rspec.LinuxIDMapping{ContainerID: r.ContainerID, HostID: r.HostID, Size: r.Size}
		}
		return out
	}
	return layer.MapOptions{
		UIDMappings: conv(s.mapping.UIDs),
		GIDMappings: conv(s.mapping.GIDs),
		Rootless:    os.Geteuid() != 0,
	}
}

// unpackChild unpacks in a re-executed child inside a user namespace with
// the store's mapping, feeding it the compressed layer on stdin. lockF, the
// temporary directory's lock, is inherited so that the directory stays
// locked while the child lives.
func (s *Store) unpackChild(ctx context.Context, root, mediaType string, r io.Reader, lockF *os.File) error {
	cmd := reexec.Command("", HelperRole, s.mapping, 0, "unpack", root, mediaType)
	cmd.Stdin = r
	return s.runChild(ctx, cmd, lockF)
}

func (s *Store) runChild(ctx context.Context, cmd *reexec.Cmd, lockF *os.File) error {
	wait, err := startChild(ctx, cmd, lockF)
	if err != nil {
		return err
	}
	return wait()
}

// startChild starts a child in HelperRole; wait waits for it and returns
// its error message (its stderr) as the error.
func startChild(ctx context.Context, cmd *reexec.Cmd, lockF *os.File) (wait func() error, err error) {
	var stderr bytes.Buffer
	lw := &limitWriter{w: &stderr, n: 64 << 10}
	relay, _ := cmd.Stderr.(*warnRelay)
	if relay != nil {
		relay.rest = lw // warnings to the log, the rest is the error
	} else {
		cmd.Stderr = lw
	}
	if lockF != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, lockF)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", HelperRole, err)
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = cmd.Process.Kill() // the context ended: Wait returns and ctx.Err() is reported
		case <-done:
		}
	}()
	return func() error {
		err := cmd.Wait()
		close(done)
		if relay != nil {
			relay.flush()
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if msg := strings.TrimSpace(stderr.String()); msg != "" {
				return errors.New(msg)
			}
			return fmt.Errorf("%s: %w", HelperRole, err)
		}
		return nil
	}, nil
}

type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		q := p
		if len(q) > l.n {
			q = q[:l.n]
		}
		l.n -= len(q)
		_, _ = l.w.Write(q) // into a bytes.Buffer: cannot fail
	}
	return len(p), nil
}

// HelperMain is the main of a process started in HelperRole: it unpacks a
// layer from stdin ("unpack ROOT MEDIATYPE"), writes a layer tar of a
// directory to stdout ("tar DIR [overlay]"), or of a sandbox's upper
// directory read by descriptor ("upper DIR"), renames a directory ("mv OLD
// NEW") or prints the owner of a directory in a stack of layers ("lookup
// TARGET LAYER…") as root of a user namespace with the store's mapping,
// and exits.
func HelperMain() {
	log.SetLevel(log.ErrorLevel)
	if err := unpackMain(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func unpackMain(args []string) error {
	if err := reexec.WaitMapped(); err != nil {
		return err
	}
	// umoci's layer package decided at init, maybe before the map was
	// written, whether it runs in a user namespace (which makes a refused
	// mknod of a device node a skip, not a failure): start again mapped.
	if err := reexec.ReexecIfMappedLate(); err != nil {
		return err
	}
	if len(args) == 0 {
		return errors.New("no mode given")
	}
	switch args[0] {
	case "unpack":
		if len(args) != 3 {
			return errors.New("usage: unpack ROOT MEDIATYPE")
		}
		// Inside the namespace with full ids: owners as in the layer.
		return unpackStream(args[1], os.Stdin, args[2], layer.MapOptions{})
	case "tar":
		if len(args) != 2 && (len(args) != 3 || args[2] != "overlay") {
			return errors.New("usage: tar DIR [overlay]")
		}
		// Inside the namespace: the caller's files read as root's, those
		// of its subordinate ids as the ids they map from.
		r := generateLayer(args[1], len(args) == 3, layer.MapOptions{})
		_, err := io.Copy(os.Stdout, r)
		if cerr := r.Close(); err == nil {
			err = cerr
		}
		return err
	case "upper":
		if len(args) < 2 {
			return errors.New("usage: upper DIR [STUB...]")
		}
		// Inside the namespace: owners as the sandbox sees them.
		r := upperLayer(args[1], layer.MapOptions{}, childWarn, args[2:])
		_, err := io.Copy(os.Stdout, r)
		if cerr := r.Close(); err == nil {
			err = cerr
		}
		return err
	case "mv":
		if len(args) != 3 {
			return errors.New("usage: mv OLD NEW")
		}
		return os.Rename(args[1], args[2])
	case "lookup":
		return lookupMain(args[1:])
	case "copyout":
		return copyOutMain(args[1:])
	}
	return fmt.Errorf("unknown mode %q", args[0])
}

// unpackStream unpacks a compressed layer stream into root (an empty
// directory) in the overlayfs format with user.overlay.* xattrs. Each entry
// is checked first: one that escapes the layer is an error that names it.
func unpackStream(root string, r io.Reader, mediaType string, mo layer.MapOptions) error {
	alg, err := layerAlgorithm(mediaType)
	if err != nil {
		return err
	}
	dr, err := alg.Decompress(r)
	if err != nil {
		return fmt.Errorf("decompress: %w", err)
	}
	defer func() { _ = dr.Close() }() // a decompressor: the unpack's error is checked
	te := layer.NewTarExtractor(&layer.UnpackOptions{
		OnDiskFormat: layer.OverlayfsRootfs{MapOptions: mo, UserXattr: true},
	})
	tr := tar.NewReader(dr)
	var ck entryChecker
	implied := impliedDirs{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if err := ck.check(hdr); err != nil {
			return err
		}
		name := hdr.Name
		for _, d := range implied.before(hdr) {
			if err := te.UnpackEntry(root, d, nil); err != nil {
				return fmt.Errorf("directory %q (implied by %q): %w", d.Name, name, err)
			}
		}
		if err := te.UnpackEntry(root, hdr, tr); err != nil {
			return fmt.Errorf("entry %q: %w", name, err)
		}
	}
	// The rest of the stream (tar padding, the compressor's trailer) is
	// read too, so a truncated or corrupt stream is an error.
	// (Hide pgzip's WriteTo, which panics after a partial Read.)
	if _, err := io.Copy(io.Discard, struct{ io.Reader }{dr}); err != nil {
		return fmt.Errorf("read layer: %w", err)
	}
	if err := dr.Close(); err != nil {
		return fmt.Errorf("read layer: %w", err)
	}
	return nil
}

// impliedDirs tracks a layer's directories, to make those its entries
// imply without an entry of their own (a layer need not list an entry's
// parents) as docker does: 0755, owned by root. umoci would make them with
// MkdirAll(0777), which this process's umask cuts: under umask 077 a layer
// adding etc/extra alone made /etc 0700, and no user of the sandbox but
// root could enter it.
// It holds every name seen, as an entry or made so.
type impliedDirs map[string]struct{}

// before returns the directory entries to unpack before hdr: its parents
// not yet seen as an entry of any kind, outermost first (a parent that was
// a file stays umoci's to refuse). It records hdr.
func (m impliedDirs) before(hdr *tar.Header) []*tar.Header {
	name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
	var out []*tar.Header
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		if _, seen := m[name[:i]]; seen {
			continue
		}
		m[name[:i]] = struct{}{}
		out = append(out, &tar.Header{Typeflag: tar.TypeDir, Name: name[:i] + "/", Mode: 0o755, ModTime: hdr.ModTime})
	}
	m[name] = struct{}{}
	return out
}

// entryChecker refuses tar entries that would escape the layer directory:
// absolute names, names with .. leading out, hard links to such names, and
// any path through a symlink made earlier in the same layer (umoci would
// resolve it inside the root, but a layer that writes through a link is
// hostile or broken).
type entryChecker struct {
	links map[string]string // cleaned symlink name -> target
}

func escapes(clean string) bool { return clean == ".." || strings.HasPrefix(clean, "../") }

func (c *entryChecker) through(name, clean string) error {
	if len(c.links) == 0 {
		return nil
	}
	for i := 0; i < len(clean); i++ {
		if clean[i] != '/' {
			continue
		}
		if t, ok := c.links[clean[:i]]; ok {
			return fmt.Errorf("entry %q: path goes through symlink %q (-> %q) of the same layer: refusing to write through a link", name, clean[:i], t)
		}
	}
	return nil
}

func (c *entryChecker) check(hdr *tar.Header) error {
	name := hdr.Name
	if name == "" {
		return errors.New("entry with an empty name")
	}
	if path.IsAbs(name) && path.Clean(name) != "/" { // "/" is the root itself, as umoci writes it
		return fmt.Errorf("entry %q: absolute path escapes the layer", name)
	}
	clean := path.Clean(name)
	if clean == "/" {
		clean = "."
	}
	if escapes(clean) {
		return fmt.Errorf("entry %q: path escapes the layer", name)
	}
	if err := c.through(name, clean); err != nil {
		return err
	}
	if c.links == nil {
		c.links = map[string]string{}
	}
	dir, base := path.Split(clean)
	switch {
	case base == ".wh..wh..opq":
		c.dropUnder(strings.TrimSuffix(dir, "/"))
		return nil
	case strings.HasPrefix(base, ".wh."):
		p := dir + base[len(".wh."):]
		delete(c.links, p)
		c.dropUnder(p)
		return nil
	}
	switch hdr.Typeflag {
	case tar.TypeLink:
		ln := hdr.Linkname
		if path.IsAbs(ln) {
			return fmt.Errorf("entry %q: hard link to absolute path %q outside the layer", name, ln)
		}
		lc := path.Clean(ln)
		if escapes(lc) {
			return fmt.Errorf("entry %q: hard link to %q escapes the layer", name, ln)
		}
		if err := c.through(name, lc); err != nil {
			return err
		}
		if t, ok := c.links[lc]; ok {
			c.links[clean] = t // a hard link to a symlink is a symlink
		} else {
			delete(c.links, clean)
		}
	case tar.TypeSymlink:
		c.links[clean] = hdr.Linkname
	default:
		delete(c.links, clean)
	}
	return nil
}

func (c *entryChecker) dropUnder(dir string) {
	if len(c.links) == 0 {
		return
	}
	prefix := dir + "/"
	if dir == "" || dir == "." {
		prefix = ""
	}
	for k := range c.links {
		if strings.HasPrefix(k, prefix) {
			delete(c.links, k)
		}
	}
}

// rename renames a directory of the store whose root may belong to another
// id of the store's mapping (a layer whose tar gave its root directory an
// owner other than root: moving a directory to another parent needs write
// permission on it, for its ".."). Rootless with a range, a rename this
// process is refused is done inside the user namespace, as root there.
func (s *Store) rename(ctx context.Context, oldpath, newpath string) error {
	err := os.Rename(oldpath, newpath)
	if err == nil || os.Geteuid() == 0 || !s.mapping.Subordinate || !(errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)) {
		return err
	}
	cmd := reexec.Command("", HelperRole, s.mapping, 0, "mv", oldpath, newpath)
	if cerr := s.runChild(ctx, cmd, nil); cerr != nil {
		return fmt.Errorf("%w (inside the user namespace: %v)", err, cerr)
	}
	return nil
}

// removeAll removes a tree of the store whose files may belong to other
// ids of the store's mapping (inside the user namespace when rootless with
// a range), never crossing a mount point under it.
func (s *Store) removeAll(ctx context.Context, p string) error {
	return rmtree.RemoveAll(ctx, p, s.mapping)
}

// lockDir opens directory p and takes an exclusive flock on it without
// waiting.
func lockDir(p string) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := lockfile.TryFD(int(f.Fd()), p); err != nil {
		_ = f.Close() // not locked: nothing to release
		return nil, err
	}
	return f, nil
}

func short(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}
