package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/lockfile"
	"github.com/beamhop/lightbox/internal/names"
	"github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/umoci/oci/casext"
	"github.com/opencontainers/umoci/pkg/hardening"
)

// Import formats (ImportOptions.Format).
const (
	FormatOCI        = "oci"            // an OCI image layout directory: DIR or DIR:TAG
	FormatOCIArchive = "oci-archive"    // a tar of an OCI image layout: FILE or FILE:TAG
	FormatDocker     = "docker-archive" // a `docker save` tar: FILE or FILE:REPO:TAG
	FormatRootfsDir  = "rootfs-dir"     // a root filesystem directory
	FormatRootfsTar  = "rootfs-tar"     // a root filesystem tarball, gzipped, zstd or plain
)

// Formats lists the import formats.
var Formats = []string{FormatOCI, FormatOCIArchive, FormatDocker, FormatRootfsDir, FormatRootfsTar}

// ImportOptions tune Import.
type ImportOptions struct {
	// Format forces the source's format (one of Formats); "" detects it.
	Format string
	// Replace lets the import replace an existing snapshot of that name
	// (unless a sandbox uses it); otherwise an existing name is ErrExists.
	Replace bool
}

// Import makes snapshot name from source (see the package doc for the
// forms of source) and returns it. Bad input fails with an error that
// names the entry and the reason, and leaves no snapshot behind.
func (s *Store) Import(ctx context.Context, name, source string, opts ImportOptions) (*Snapshot, error) {
	if err := names.Check("snapshot", name); err != nil {
		return nil, err
	}
	if opts.Format != "" && !contains(Formats, opts.Format) {
		return nil, fmt.Errorf("import %s: unknown format %q (want one of %s)", name, opts.Format, strings.Join(Formats, ", "))
	}
	if !opts.Replace {
		if _, err := s.Get(ctx, name); err == nil {
			return nil, fmt.Errorf("import %s: snapshot %s: %w", name, name, errdefs.ErrExists)
		}
	}
	p, tag, err := splitSource(source)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", name, err)
	}
	// Imports hold the GC lock shared, so that a collection never frees
	// blobs or layers of an import that has not tagged them yet.
	gl, err := lockfile.Shared(ctx, s.gcLock())
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", name, err)
	}
	sn, err := s.importLocked(ctx, name, p, tag, opts)
	gl.Close()
	// The last import to finish collects what failed or replaced imports
	// (and removals during imports) left.
	if gerr := s.tryGC(ctx); gerr != nil {
		s.log.Warn("gc after import", "err", gerr)
	}
	if err != nil {
		return nil, fmt.Errorf("import %s from %s: %w", name, source, err)
	}
	return sn, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// splitSource splits SOURCE into an existing path and an optional tag
// after the first ':' that leaves an existing path before it.
func splitSource(src string) (string, string, error) {
	_, err := os.Stat(src)
	if err == nil {
		return src, "", nil
	}
	for i := 0; i < len(src); i++ {
		if src[i] != ':' {
			continue
		}
		if _, err := os.Stat(src[:i]); err == nil {
			return src[:i], src[i+1:], nil
		}
	}
	return "", "", fmt.Errorf("source: %w", err)
}

func (s *Store) importLocked(ctx context.Context, name, p, tag string, opts ImportOptions) (*Snapshot, error) {
	format := opts.Format
	var cleanup []func()
	defer func() {
		for _, f := range cleanup {
			f()
		}
	}()
	if format == "" {
		f, dec, err := s.detect(ctx, p)
		if err != nil {
			return nil, err
		}
		if dec != nil {
			cleanup = append(cleanup, dec.close)
			p = filepath.Join(dec.dir, "archive.tar")
		}
		format = f
	} else if format == FormatOCIArchive || format == FormatDocker {
		ap, dec, err := s.archiveFile(ctx, p)
		if err != nil {
			return nil, err
		}
		if dec != nil {
			cleanup = append(cleanup, dec.close)
		}
		p = ap
	}
	if tag != "" && (format == FormatRootfsDir || format == FormatRootfsTar) {
		return nil, fmt.Errorf("a %s source takes no tag (got %q)", format, tag)
	}
	var owners *rootfsOwners
	if format == FormatRootfsDir {
		// Before anything is written: every file readable, and the
		// owners the mapping does not cover.
		var err error
		if owners, err = s.scanRootfsDir(p); err != nil {
			return nil, err
		}
	}
	s.log.Info("importing snapshot", "snapshot", name, "source", p, "format", format)
	e, err := s.engine()
	if err != nil {
		return nil, err
	}
	defer func() { _ = e.Close() }() // every write was checked; Close removes the .umoci-* dir writes made, and one it leaves (unlocked by then) goes with the next gc's umoci GC

	var mdesc ispec.Descriptor
	var manifest ispec.Manifest
	switch format {
	case FormatOCI, FormatOCIArchive:
		var src blobSource
		if format == FormatOCI {
			d, err := openDirSource(p)
			if err != nil {
				return nil, err
			}
			defer d.close()
			src = d
		} else {
			a, err := openArchive(p)
			if err != nil {
				return nil, err
			}
			defer a.close()
			src = a
		}
		mdesc, manifest, err = s.copyOCI(ctx, e, src, tag)
	case FormatDocker:
		a, err := openArchive(p)
		if err != nil {
			return nil, err
		}
		defer a.close()
		mdesc, manifest, err = s.convertDocker(ctx, e, a, tag)
		if err != nil {
			return nil, err
		}
	case FormatRootfsDir:
		mdesc, manifest, err = s.importRootfsDir(ctx, e, p, owners)
	case FormatRootfsTar:
		mdesc, manifest, err = s.importRootfsTar(ctx, e, p)
	}
	if err != nil {
		return nil, err
	}
	if err := s.ensureLayers(ctx, e, manifest.Layers); err != nil {
		return nil, err
	}
	return s.tag(ctx, e, name, mdesc, opts.Replace)
}

// tag points name at the manifest, under the index lock.
func (s *Store) tag(ctx context.Context, e casext.Engine, name string, mdesc ispec.Descriptor, replace bool) (*Snapshot, error) {
	ilk, err := lockfile.Exclusive(ctx, s.indexLock())
	if err != nil {
		return nil, err
	}
	defer ilk.Close()
	idx, err := e.GetIndex(ctx)
	if err != nil {
		return nil, err
	}
	for _, d := range idx.Manifests {
		if d.Annotations[ispec.AnnotationRefName] != name {
			continue
		}
		if !replace {
			return nil, fmt.Errorf("snapshot %s: %w", name, errdefs.ErrExists)
		}
		if d.Digest == mdesc.Digest {
			// Replaced by the very same image (a rebuild all from the
			// cache, an import again): nothing changes, not even the
			// time it was made, and a sandbox may be using it.
			return s.describe(ctx, e, name, d)
		}
		if err := s.checkUnleased(name); err != nil {
			return nil, fmt.Errorf("replace %w", err)
		}
	}
	desc := ispec.Descriptor{
		MediaType: ispec.MediaTypeImageManifest,
		Digest:    mdesc.Digest,
		Size:      mdesc.Size,
		Annotations: map[string]string{
			annotationCreated: time.Now().UTC().Format(time.RFC3339Nano),
		},
	}
	if err := e.UpdateReference(ctx, name, desc); err != nil {
		return nil, err
	}
	desc.Annotations[ispec.AnnotationRefName] = name
	s.log.Info("imported snapshot", "snapshot", name, "digest", mdesc.Digest.String())
	return s.describe(ctx, e, name, desc)
}

// putBlob stores a blob read from r (verify it with a verifying reader)
// and returns its descriptor.
func (s *Store) putBlob(ctx context.Context, e casext.Engine, mt string, r io.Reader, size int64, what string) (ispec.Descriptor, error) {
	b := s.bar(size, "copy "+what)
	d, n, err := e.PutBlob(ctx, b.wrap(r))
	b.finish()
	if err != nil {
		return ispec.Descriptor{}, fmt.Errorf("%s: %w", what, err)
	}
	return ispec.Descriptor{MediaType: mt, Digest: d, Size: n}, nil
}

// hasBlob reports whether the store holds blob d.
func (s *Store) hasBlob(d digest.Digest) bool {
	if d.Validate() != nil {
		return false
	}
	_, err := os.Stat(filepath.Join(s.ociDir(), "blobs", d.Algorithm().String(), d.Encoded()))
	return err == nil
}

// copyBlob copies blob d from src into the store unless it is there.
func (s *Store) copyBlob(ctx context.Context, e casext.Engine, src blobSource, d ispec.Descriptor) error {
	if s.hasBlob(d.Digest) {
		return nil
	}
	r, err := src.open(d)
	if err != nil {
		return err
	}
	_, err = s.putBlob(ctx, e, d.MediaType, r, d.Size, "blob "+d.Digest.String())
	if cerr := r.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("blob %s: %w", d.Digest, cerr)
	}
	return err
}

// Docker's manifest and config media types, converted to OCI on import.
const (
	dockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	dockerConfig       = "application/vnd.docker.container.image.v1+json"
)

// copyOCI resolves the manifest tag (or the only one) of an OCI layout
// source and copies its blobs into the store; a Docker-typed manifest is
// converted to an OCI one.
func (s *Store) copyOCI(ctx context.Context, e casext.Engine, src blobSource, tag string) (ispec.Descriptor, ispec.Manifest, error) {
	var idx ispec.Index
	if err := src.readJSON("index.json", &idx); err != nil {
		return ispec.Descriptor{}, ispec.Manifest{}, err
	}
	d, err := pickManifest(idx, tag)
	if err != nil {
		return ispec.Descriptor{}, ispec.Manifest{}, err
	}
	// Descend nested indexes to this platform's manifest.
	for depth := 0; d.MediaType == ispec.MediaTypeImageIndex || d.MediaType == dockerManifestList; depth++ {
		if depth > 4 {
			return ispec.Descriptor{}, ispec.Manifest{}, errors.New("indexes nested too deep")
		}
		var sub ispec.Index
		if err := readBlobJSON(src, d, &sub); err != nil {
			return ispec.Descriptor{}, ispec.Manifest{}, err
		}
		parent := d.Digest
		if d, err = pickPlatform(sub); err != nil {
			return ispec.Descriptor{}, ispec.Manifest{}, fmt.Errorf("index %s: %w", parent, err)
		}
	}
	if d.MediaType != ispec.MediaTypeImageManifest && d.MediaType != dockerManifest {
		return ispec.Descriptor{}, ispec.Manifest{}, fmt.Errorf("manifest %s: unknown media type %q", d.Digest, d.MediaType)
	}
	var m ispec.Manifest
	if err := readBlobJSON(src, d, &m); err != nil {
		return ispec.Descriptor{}, ispec.Manifest{}, fmt.Errorf("manifest: %w", err)
	}
	if err := checkManifest(&m); err != nil {
		return ispec.Descriptor{}, ispec.Manifest{}, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	for _, b := range append([]ispec.Descriptor{m.Config}, m.Layers...) {
		if err := s.copyBlob(ctx, e, src, b); err != nil {
			return ispec.Descriptor{}, ispec.Manifest{}, err
		}
	}
	if d.MediaType == ispec.MediaTypeImageManifest {
		if err := s.copyBlob(ctx, e, src, d); err != nil {
			return ispec.Descriptor{}, ispec.Manifest{}, err
		}
		return d, m, nil
	}
	return s.putManifest(ctx, e, m)
}

// checkManifest refuses media types lightbox cannot use and converts
// Docker's to OCI's.
func checkManifest(m *ispec.Manifest) error {
	switch m.Config.MediaType {
	case ispec.MediaTypeImageConfig:
	case dockerConfig:
		m.Config.MediaType = ispec.MediaTypeImageConfig
	default:
		return fmt.Errorf("config %s: unknown media type %q", m.Config.Digest, m.Config.MediaType)
	}
	for i, l := range m.Layers {
		if _, err := layerAlgorithm(l.MediaType); err != nil {
			return fmt.Errorf("layer %s: %w", l.Digest, err)
		}
		switch l.MediaType {
		case dockerLayerGzip:
			m.Layers[i].MediaType = ispec.MediaTypeImageLayerGzip
		case dockerLayerTar:
			m.Layers[i].MediaType = ispec.MediaTypeImageLayer
		}
		if err := l.Digest.Validate(); err != nil {
			return fmt.Errorf("layer %q: %w", l.Digest, err)
		}
	}
	return m.Config.Digest.Validate()
}

// putManifest stores an OCI manifest for the given config and layers.
func (s *Store) putManifest(ctx context.Context, e casext.Engine, m ispec.Manifest) (ispec.Descriptor, ispec.Manifest, error) {
	m.SchemaVersion = 2
	m.MediaType = ispec.MediaTypeImageManifest
	d, n, err := e.PutBlobJSON(ctx, m)
	if err != nil {
		return ispec.Descriptor{}, ispec.Manifest{}, fmt.Errorf("store manifest: %w", err)
	}
	return ispec.Descriptor{MediaType: ispec.MediaTypeImageManifest, Digest: d, Size: n}, m, nil
}

func refNames(idx ispec.Index) string {
	var tags []string
	for _, d := range idx.Manifests {
		if t, ok := d.Annotations[ispec.AnnotationRefName]; ok {
			tags = append(tags, t)
		}
	}
	if len(tags) == 0 {
		return "none"
	}
	return strings.Join(tags, ", ")
}

// pickManifest picks the index entry tagged tag, or the only one.
func pickManifest(idx ispec.Index, tag string) (ispec.Descriptor, error) {
	if tag != "" {
		var found []ispec.Descriptor
		for _, d := range idx.Manifests {
			if d.Annotations[ispec.AnnotationRefName] == tag {
				found = append(found, d)
			}
		}
		switch len(found) {
		case 0:
			return ispec.Descriptor{}, fmt.Errorf("index.json: no manifest tagged %q (tags: %s): %w", tag, refNames(idx), errdefs.ErrNotFound)
		case 1:
			return found[0], nil
		}
		return ispec.Descriptor{}, fmt.Errorf("index.json: %d manifests tagged %q", len(found), tag)
	}
	switch len(idx.Manifests) {
	case 0:
		return ispec.Descriptor{}, errors.New("index.json lists no manifest")
	case 1:
		return idx.Manifests[0], nil
	}
	return ispec.Descriptor{}, fmt.Errorf("index.json lists %d manifests: name one as SOURCE:TAG (tags: %s)", len(idx.Manifests), refNames(idx))
}

// pickPlatform picks this machine's manifest from a multi-platform index.
func pickPlatform(idx ispec.Index) (ispec.Descriptor, error) {
	var cands []ispec.Descriptor
	for _, d := range idx.Manifests {
		if p := d.Platform; p == nil || (p.OS == "linux" && p.Architecture == goruntime.GOARCH) {
			cands = append(cands, d)
		}
	}
	if len(cands) == 0 {
		return ispec.Descriptor{}, fmt.Errorf("no manifest for linux/%s", goruntime.GOARCH)
	}
	return cands[0], nil
}

// readBlobJSON reads blob d of src (verified) into v.
func readBlobJSON(src blobSource, d ispec.Descriptor, v any) error {
	if d.Size > maxJSON {
		return fmt.Errorf("blob %s: %d bytes is too large", d.Digest, d.Size)
	}
	r, err := src.open(d)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	return nil
}

// blobSource is an OCI image layout being imported: a directory or a tar.
type blobSource interface {
	// open returns blob d, verified against its digest and size on read
	// (read to EOF and check Close).
	open(d ispec.Descriptor) (io.ReadCloser, error)
	// readJSON reads a small file of the layout into v.
	readJSON(name string, v any) error
}

// verified wraps a blob's reader so that its digest and size are checked.
func verified(r io.ReadCloser, d ispec.Descriptor) io.ReadCloser {
	return &hardening.VerifiedReadCloser{Reader: r, ExpectedDigest: d.Digest, ExpectedSize: d.Size}
}

func blobName(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("blob %q: %w", d, err)
	}
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded(), nil
}

// dirSource is an OCI image layout directory, read through os.Root so
// that no symlink in it leads out.
type dirSource struct {
	dir  string
	root *os.Root
}

func openDirSource(dir string) (*dirSource, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	d := &dirSource{dir: dir, root: root}
	var layout ispec.ImageLayout
	if err := d.readJSON(ispec.ImageLayoutFile, &layout); err != nil {
		_ = root.Close() // the read already failed: that error is returned; read-only
		return nil, fmt.Errorf("not an OCI image layout: %w", err)
	}
	if layout.Version != ispec.ImageLayoutVersion {
		_ = root.Close() // the layout is refused: that error is returned; read-only
		return nil, fmt.Errorf("%s: unsupported layout version %q", ispec.ImageLayoutFile, layout.Version)
	}
	return d, nil
}

func (d *dirSource) close() { _ = d.root.Close() } // read-only

func (d *dirSource) open(desc ispec.Descriptor) (io.ReadCloser, error) {
	n, err := blobName(desc.Digest)
	if err != nil {
		return nil, err
	}
	f, err := d.root.Open(n)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("blob %s (%s) is missing from %s", desc.Digest, desc.MediaType, d.dir)
		}
		return nil, err
	}
	return verified(f, desc), nil
}

func (d *dirSource) readJSON(name string, v any) error {
	f, err := d.root.Open(name)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // read-only
	data, err := io.ReadAll(io.LimitReader(f, maxJSON))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
