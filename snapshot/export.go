package snapshot

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/names"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/umoci/oci/cas/dir"
	"github.com/opencontainers/umoci/oci/casext"
)

// ExportOptions tune Export.
type ExportOptions struct {
	// Format is FormatOCI (an OCI image layout directory, created if
	// missing, other images in it kept) or FormatOCIArchive (a tar file,
	// which must not exist); "" = FormatOCI.
	Format string
	// Tag is the image's tag in the destination; "" = the snapshot's name.
	Tag string
}

// Export writes snapshot name as an OCI image to dst, in a form Import
// (and skopeo, podman, umoci) read back.
func (s *Store) Export(ctx context.Context, name, dst string, opts ExportOptions) (err error) {
	if err := names.Check("snapshot", name); err != nil {
		return err
	}
	tag := opts.Tag
	if tag == "" {
		tag = name
	}
	if !casext.IsValidReferenceName(tag) {
		return fmt.Errorf("export %s: invalid tag %q", name, tag)
	}
	switch opts.Format {
	case "", FormatOCI:
		return s.exportDir(ctx, name, dst, tag)
	case FormatOCIArchive:
		if _, err := os.Lstat(dst); err == nil {
			return fmt.Errorf("export %s: %s: %w", name, dst, errdefs.ErrExists)
		}
		tmp, err := os.MkdirTemp(filepath.Dir(dst), ".lightbox-export-")
		if err != nil {
			return fmt.Errorf("export %s: %w", name, err)
		}
		defer func() {
			// Nothing else removes it: a temp dir left beside the
			// output is reported.
			if rerr := os.RemoveAll(tmp); rerr != nil {
				err = errors.Join(err, fmt.Errorf("export %s: remove %s: %w", name, tmp, rerr))
			}
		}()
		layout := filepath.Join(tmp, "oci")
		if err := s.exportDir(ctx, name, layout, tag); err != nil {
			return err
		}
		f := filepath.Join(tmp, "archive.tar")
		if err := tarDir(layout, f); err != nil {
			return fmt.Errorf("export %s: %w", name, err)
		}
		if err := os.Link(f, dst); err != nil { // fails if dst appeared meanwhile
			return fmt.Errorf("export %s: %w", name, err)
		}
		return nil
	}
	return fmt.Errorf("export %s: unsupported format %q (want %s or %s)", name, opts.Format, FormatOCI, FormatOCIArchive)
}

// createLayout makes an empty OCI image layout at dst: a new directory
// (and its parents), or in dst when it is an empty directory (mktemp -d's,
// a mount point), which umoci's dir.Create refuses as existing. A
// directory with anything else in it is refused: its files are not ours
// to mix a layout into.
func createLayout(dst string) error {
	ents, err := os.ReadDir(dst)
	if errors.Is(err, os.ErrNotExist) {
		return dir.Create(dst)
	}
	if err != nil {
		return err
	}
	if len(ents) > 0 {
		return fmt.Errorf("a directory that is neither empty nor an OCI image layout (no %s file): %w", ispec.ImageLayoutFile, errdefs.ErrExists)
	}
	tmp, err := os.MkdirTemp(dst, ".lightbox-layout-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }() // empty once its layout moved up; else what a failure left in a dir that was empty
	layout := filepath.Join(tmp, "oci")
	if err := dir.Create(layout); err != nil {
		return err
	}
	// oci-layout last: it is what makes dst a layout.
	for _, f := range []string{ispec.ImageBlobsDir, ispec.ImageIndexFile, ispec.ImageLayoutFile} {
		if err := os.Rename(filepath.Join(layout, f), filepath.Join(dst, f)); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) exportDir(ctx context.Context, name, dst, tag string) (err error) {
	e, err := s.engine()
	if err != nil {
		return err
	}
	defer func() { _ = e.Close() }() // a dir engine: Close only drops its scratch space; every write was checked
	idx, err := e.GetIndex(ctx)
	if err != nil {
		return fmt.Errorf("export %s: %w", name, err)
	}
	var mdesc *ispec.Descriptor
	for _, d := range idx.Manifests {
		if d.Annotations[ispec.AnnotationRefName] == name {
			mdesc = &d
		}
	}
	if mdesc == nil {
		return fmt.Errorf("export %s: %w", name, errdefs.ErrNotFound)
	}
	var m ispec.Manifest
	if err := readJSON(ctx, e, *mdesc, &m); err != nil {
		return fmt.Errorf("export %s: %w", name, err)
	}
	// What is at dst, said in its own words: a file (or a link to one)
	// is no place for a layout, and a link to nothing would be made a
	// directory through it.
	if fi, err := os.Stat(dst); err == nil && !fi.IsDir() {
		return fmt.Errorf("export %s: %s is a file, not a directory (an OCI image layout is a directory; the oci-archive format writes a tar file): %w", name, dst, errdefs.ErrExists)
	} else if errors.Is(err, os.ErrNotExist) {
		if li, lerr := os.Lstat(dst); lerr == nil && li.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("export %s: %s is a symbolic link to nothing: %w", name, dst, errdefs.ErrExists)
		}
	} else if err != nil {
		return fmt.Errorf("export %s: %w", name, err)
	}
	if _, err := os.Stat(filepath.Join(dst, ispec.ImageLayoutFile)); errors.Is(err, os.ErrNotExist) {
		if err := createLayout(dst); err != nil {
			return fmt.Errorf("export %s: create %s: %w", name, dst, err)
		}
	}
	de, err := dir.Open(dst)
	if err != nil {
		return fmt.Errorf("export %s: %s: %w", name, dst, err)
	}
	out := casext.NewEngine(de)
	defer func() {
		// Close removes the .umoci-* dir its writes made in the user's
		// layout, which no gc of ours visits: one left is reported.
		if cerr := out.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("export %s: %s: %w", name, dst, cerr))
		}
	}()
	for _, b := range append([]ispec.Descriptor{m.Config, *mdesc}, m.Layers...) {
		r, err := e.GetVerifiedBlob(ctx, b)
		if err != nil {
			return fmt.Errorf("export %s: %w", name, err)
		}
		_, _, err = out.PutBlob(ctx, s.bar(b.Size, "export "+short(b.Digest.String())).wrap(r))
		if cerr := r.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("export %s: blob %s: %w", name, b.Digest, err)
		}
	}
	d := ispec.Descriptor{MediaType: ispec.MediaTypeImageManifest, Digest: mdesc.Digest, Size: mdesc.Size}
	if err := out.UpdateReference(ctx, tag, d); err != nil {
		return fmt.Errorf("export %s: %w", name, err)
	}
	// umoci writes blobs and index.json through temporary files, mode
	// 0600: another user (a rootless store importing what root exported,
	// their podman or skopeo) could not read the layout. They take the
	// mode its oci-layout file was made with, as the caller's umask cut it.
	st, err := os.Stat(filepath.Join(dst, ispec.ImageLayoutFile))
	if err != nil {
		return fmt.Errorf("export %s: %w", name, err)
	}
	files := []string{filepath.Join(dst, "index.json")}
	for _, b := range append([]ispec.Descriptor{m.Config, *mdesc}, m.Layers...) {
		files = append(files, filepath.Join(dst, "blobs", b.Digest.Algorithm().String(), b.Digest.Encoded()))
	}
	for _, f := range files {
		if err := os.Chmod(f, st.Mode().Perm()); err != nil {
			return fmt.Errorf("export %s: %w", name, err)
		}
	}
	return nil
}

// tarDir writes the regular files and directories under src to a tar at
// dst, names relative to src.
func tarDir(src, dst string) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // for the error returns, whose error counts and whose partial archive goes with its temp dir; success returns Close's error
	tw := tar.NewWriter(f)
	err = filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." || strings.HasPrefix(filepath.Base(p), ".umoci-") {
			if fi.IsDir() && rel != "." {
				return filepath.SkipDir
			}
			return err
		}
		if !fi.IsDir() && !fi.Mode().IsRegular() {
			return nil
		}
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if fi.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			r, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, r)
			_ = r.Close() // a plain file opened read-only: nothing to flush; Copy's error is returned
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}
