package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/umoci/oci/casext/blobcompress"
)

// archive is a tar file (an oci-archive or a `docker save` tar) whose
// entries are read in place.
type archive struct {
	path    string
	f       *os.File
	entries map[string]*tarEntry
}

type tarEntry struct {
	off, size int64
	typ       byte
	link      string
}

// cleanName turns a tar entry name into the form entries are looked up by.
func cleanName(n string) string {
	n = path.Clean("/" + n)
	return strings.TrimPrefix(n, "/")
}

func openArchive(p string) (*archive, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	a := &archive{path: p, f: f, entries: map[string]*tarEntry{}}
	tr := tar.NewReader(f) // *os.File seeks over entry data
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			_ = f.Close() // the check already failed: that error is returned; read-only
			return nil, fmt.Errorf("read archive %s: %w", p, err)
		}
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			_ = f.Close() // the seek already failed: that error is returned; read-only
			return nil, fmt.Errorf("read archive %s: %w", p, err)
		}
		a.entries[cleanName(hdr.Name)] = &tarEntry{off: off, size: hdr.Size, typ: hdr.Typeflag, link: hdr.Linkname}
	}
	return a, nil
}

func (a *archive) close() { _ = a.f.Close() } // read-only

// resolve finds the regular file called name, following the symlinks and
// hard links `docker save` uses to share layers, inside the archive only.
func (a *archive) resolve(name string) (*tarEntry, error) {
	orig := name
	for hops := 0; hops < 16; hops++ {
		e, ok := a.entries[name]
		if !ok {
			return nil, fmt.Errorf("%s: no entry %q: %w", a.path, orig, os.ErrNotExist)
		}
		switch e.typ {
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old archives
			return e, nil
		case tar.TypeSymlink:
			t := e.link
			if !path.IsAbs(t) {
				t = path.Join(path.Dir(name), t)
			}
			if escapes(path.Clean(t)) {
				return nil, fmt.Errorf("%s: entry %q: symlink to %q leads out of the archive", a.path, name, e.link)
			}
			name = cleanName(t)
		case tar.TypeLink:
			name = cleanName(e.link)
		default:
			return nil, fmt.Errorf("%s: entry %q is not a regular file", a.path, name)
		}
	}
	return nil, fmt.Errorf("%s: entry %q: too many links", a.path, orig)
}

type nopCloser struct{ io.Reader }

func (nopCloser) Close() error { return nil }

func (a *archive) openFile(name string) (*io.SectionReader, error) {
	e, err := a.resolve(name)
	if err != nil {
		return nil, err
	}
	return io.NewSectionReader(a.f, e.off, e.size), nil
}

func (a *archive) open(d ispec.Descriptor) (io.ReadCloser, error) {
	n, err := blobName(d.Digest)
	if err != nil {
		return nil, err
	}
	r, err := a.openFile(n)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("blob %s (%s) is missing from %s", d.Digest, d.MediaType, a.path)
		}
		return nil, err
	}
	return verified(nopCloser{r}, d), nil
}

func (a *archive) readFile(name string) ([]byte, error) {
	r, err := a.openFile(name)
	if err != nil {
		return nil, err
	}
	if r.Size() > maxJSON {
		return nil, fmt.Errorf("%s: entry %q: %d bytes is too large", a.path, name, r.Size())
	}
	return io.ReadAll(r)
}

func (a *archive) readJSON(name string, v any) error {
	data, err := a.readFile(name)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %s: %w", a.path, name, err)
	}
	return nil
}

// compression names the compression of a stream from its first bytes:
// "gzip", "zstd", "xz", "bzip2" or "" (none).
func compression(magic []byte) string {
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return "gzip"
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "zstd"
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return "xz"
	case bytes.HasPrefix(magic, []byte("BZh")):
		return "bzip2"
	}
	return ""
}

func readMagic(r io.ReaderAt) []byte {
	b := make([]byte, 6)
	n, _ := r.ReadAt(b, 0)
	return b[:n]
}

// decompressor returns a reader of the decompressed stream of a file with
// the given compression ("" = none).
func decompressor(comp string, r io.Reader) (io.ReadCloser, error) {
	switch comp {
	case "":
		return io.NopCloser(r), nil
	case "gzip":
		return blobcompress.Gzip.Decompress(r)
	case "zstd":
		return blobcompress.Zstd.Decompress(r)
	}
	return nil, fmt.Errorf("%s compression is not supported: decompress it first, or use gzip or zstd", comp)
}

// imageEntry matches the first entries of an image archive (docker save
// or oci-archive) as opposed to a root filesystem tarball.
// Compiled on first use: a launch never reads an archive.
var imageEntry = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(manifest\.json|repositories|oci-layout|index\.json|blobs(/.*)?|[0-9a-f]{64}(\.json|/.*)?)$`)
})

// detect finds the format of source path p. A compressed image archive is
// decompressed into a temporary directory (dec, archive.tar), which the
// caller closes.
func (s *Store) detect(ctx context.Context, p string) (string, *decompressed, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return "", nil, err
	}
	if fi.IsDir() {
		if _, err := os.Stat(filepath.Join(p, ispec.ImageLayoutFile)); err == nil {
			return FormatOCI, nil, nil
		}
		return FormatRootfsDir, nil, nil
	}
	if !fi.Mode().IsRegular() {
		return "", nil, fmt.Errorf("%s is neither a directory nor a regular file", p)
	}
	f, err := os.Open(p)
	if err != nil {
		return "", nil, err
	}
	defer func() { _ = f.Close() }() // read-only
	comp := compression(readMagic(f))
	if comp == "" {
		f2, err := scanKind(f, -1)
		if err != nil {
			return "", nil, fmt.Errorf("%s: not a tar archive, OCI layout or root filesystem: %w", p, err)
		}
		return f2, nil, nil
	}
	dr, err := decompressor(comp, f)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", p, err)
	}
	kind, err := scanKind(dr, 16)
	_ = dr.Close() // a decompressor of a read-only file: scanKind's error is checked
	if err != nil {
		return "", nil, fmt.Errorf("%s: %s data is not a tar archive: %w", p, comp, err)
	}
	if kind == FormatRootfsTar {
		return kind, nil, nil
	}
	dec, err := s.decompress(ctx, p, comp)
	if err != nil {
		return "", nil, err
	}
	df, err := os.Open(filepath.Join(dec.dir, "archive.tar"))
	if err == nil {
		kind, err = scanKind(df, -1)
		_ = df.Close() // read-only: scanKind's error is checked
	}
	if err != nil {
		dec.close()
		return "", nil, fmt.Errorf("%s: %w", p, err)
	}
	if kind == FormatRootfsTar {
		dec.close()
	} else {
		return kind, dec, nil
	}
	return kind, nil, nil
}

// scanKind reads up to max tar headers (-1 = all) and says which kind of
// tar it is: a docker-archive (manifest.json), an oci-archive (oci-layout)
// or a root filesystem. With a limit, any image-archive-like entry among
// the first ones counts as an image archive (FormatDocker).
func scanKind(r io.Reader, max int) (string, error) {
	tr := tar.NewReader(r)
	top := map[string]bool{}
	for i := 0; max < 0 || i < max; i++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			if i == 0 {
				return "", errors.New("empty archive")
			}
			break
		}
		if err != nil {
			return "", fmt.Errorf("read tar: %w", err)
		}
		n := cleanName(hdr.Name)
		if max >= 0 && imageEntry().MatchString(n) {
			return FormatDocker, nil
		}
		top[n] = true
	}
	switch {
	case top["manifest.json"]:
		return FormatDocker, nil
	case top[ispec.ImageLayoutFile] && top["index.json"]:
		return FormatOCIArchive, nil
	}
	return FormatRootfsTar, nil
}

// decompressed is a compressed image archive decompressed into a locked
// temporary directory.
type decompressed struct {
	*tempDir
	s *Store
}

// archiveFile returns the tar to read for an image archive p that may be
// compressed; dec, when not nil, holds a decompressed copy to close.
func (s *Store) archiveFile(ctx context.Context, p string) (string, *decompressed, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", nil, err
	}
	comp := compression(readMagic(f))
	_ = f.Close() // read-only
	if comp == "" {
		return p, nil, nil
	}
	dec, err := s.decompress(ctx, p, comp)
	if err != nil {
		return "", nil, err
	}
	return filepath.Join(dec.dir, "archive.tar"), dec, nil
}

func (d *decompressed) close() {
	_ = os.RemoveAll(d.dir) // best effort: a left decompressed copy under tmp is cleanTmp's
	d.tempDir.close()
}

func (s *Store) decompress(ctx context.Context, p, comp string) (*decompressed, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // read-only
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	t, err := s.newTemp(ctx, "archive")
	if err != nil {
		return nil, err
	}
	d := &decompressed{tempDir: t, s: s}
	out, err := os.Create(filepath.Join(t.dir, "archive.tar"))
	if err == nil {
		b := s.bar(fi.Size(), "decompress")
		var dr io.ReadCloser
		if dr, err = decompressor(comp, b.wrap(f)); err == nil {
			_, err = io.Copy(out, ctxReader{ctx, dr})
			if cerr := dr.Close(); err == nil {
				err = cerr
			}
		}
		b.finish()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		d.close()
		return nil, fmt.Errorf("decompress %s: %w", p, err)
	}
	return d, nil
}

// ctxReader stops reading when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
