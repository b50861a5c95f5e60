package snapshot

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/beamhop/lightbox/internal/atomicfile"
	"github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/umoci/oci/casext"
)

// A layer's unpacked size is the sum of the sizes of the regular files in
// it (as `du --apparent-size` would count its unpacked directory, without
// directories and links): the same for a tree imported as a directory
// (stored gzipped) and as a tarball (stored as it came), whichever tar
// format made it. It is recorded once per layer blob in
// $ROOT/snapshots/sizes/<digest> — by the import that makes the blob,
// which reads the tar stream anyway, else by the first describe, which
// reads the blob — and removed by GC with the blob.

func (s *Store) sizesDir() string { return filepath.Join(s.root, "sizes") }

func (s *Store) sizeFile(d digest.Digest) string {
	return filepath.Join(s.sizesDir(), d.Encoded())
}

// recordUnpackedSize records n as the unpacked size of layer blob d.
func (s *Store) recordUnpackedSize(d digest.Digest, n int64) error {
	if err := os.MkdirAll(s.sizesDir(), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(s.sizeFile(d), []byte(strconv.FormatInt(n, 10)+"\n"), 0o600)
}

// unpackedSize returns the unpacked size of layer l, from its record or,
// the first time, by decompressing the blob (and then recording it).
func (s *Store) unpackedSize(ctx context.Context, e casext.Engine, l ispec.Descriptor) (int64, error) {
	if b, err := os.ReadFile(s.sizeFile(l.Digest)); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n >= 0 {
			return n, nil
		}
	}
	alg, err := layerAlgorithm(l.MediaType)
	if err != nil {
		return 0, err
	}
	blob, err := e.GetVerifiedBlob(ctx, l)
	if err != nil {
		return 0, fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	defer func() { _ = blob.Close() }() // on early returns; the Close below checks the digest
	dr, err := alg.Decompress(ctxReader{ctx, blob})
	if err != nil {
		return 0, fmt.Errorf("layer %s: decompress: %w", l.Digest, err)
	}
	// Hide pgzip's WriteTo, which panics after a partial Read.
	n, err := tarContentSize(struct{ io.Reader }{dr})
	if cerr := dr.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// Read the compressed stream to its end: the digest is checked
		// on Close.
		_, err = io.Copy(io.Discard, blob)
	}
	if cerr := blob.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("layer %s: size: %w", l.Digest, err)
	}
	if err := s.recordUnpackedSize(l.Digest, n); err != nil {
		// The size is right; only the next describe pays again.
		s.log.Warn("record layer size", "layer", l.Digest.String(), "err", err)
	}
	return n, nil
}

// recordTarSize records the unpacked size of layer blob d, a plain tar
// that f holds (read again from its start).
func (s *Store) recordTarSize(ctx context.Context, d digest.Digest, f *os.File) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	n, err := tarContentSize(ctxReader{ctx, f})
	if err != nil {
		return err
	}
	return s.recordUnpackedSize(d, n)
}

// gcSizes removes the size records of blobs the store no longer holds.
func (s *Store) gcSizes() error { return s.gcDigestRecords(s.sizesDir(), ".tmp-") }

// gcDigestRecords removes from dir, a directory of records named by a
// blob's sha256, those of blobs the store no longer holds and the
// temporary files (named with tmpPrefix) a crash left.
func (s *Store) gcDigestRecords(dir, tmpPrefix string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, ent := range ents {
		if strings.HasPrefix(ent.Name(), tmpPrefix) || !s.hasBlob(digest.NewDigestFromEncoded(digest.SHA256, ent.Name())) {
			if err := os.Remove(filepath.Join(dir, ent.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// tarContentSize reads the tar stream r to its end and returns the sum of
// the sizes of its regular files.
func tarContentSize(r io.Reader) (int64, error) {
	tr := tar.NewReader(r)
	var n int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("read tar: %w", err)
		}
		if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeRegA { //nolint:staticcheck // TypeRegA is still found in old tars
			n += hdr.Size
		}
	}
	// The padding after the end marker, so that a caller hashing the
	// stream sees all of it.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return 0, fmt.Errorf("read tar: %w", err)
	}
	return n, nil
}
