package snapshot

import (
	"context"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"time"

	"github.com/beamhop/lightbox/internal/reexec"
	"github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/umoci/oci/casext"
	"github.com/opencontainers/umoci/oci/casext/blobcompress"
	"github.com/opencontainers/umoci/oci/layer"
)

// defaultPath is the PATH of a snapshot made from a bare root filesystem.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// putRootfsImage stores the config and manifest of a one-layer image made
// from a root filesystem.
func (s *Store) putRootfsImage(ctx context.Context, e casext.Engine, l ispec.Descriptor, diffID digest.Digest) (ispec.Descriptor, ispec.Manifest, error) {
	now := time.Now().UTC()
	cfg := ispec.Image{
		Created:  &now,
		Platform: ispec.Platform{OS: "linux", Architecture: goruntime.GOARCH},
		Config:   ispec.ImageConfig{Env: []string{defaultPath}},
		RootFS:   ispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
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

// importRootfsDir makes a one-layer image of directory dir.
func (s *Store) importRootfsDir(ctx context.Context, e casext.Engine, dir string) (ispec.Descriptor, ispec.Manifest, error) {
	l, diffID, err := s.layerFromDir(ctx, e, dir, false)
	if err != nil {
		return ispec.Descriptor{}, ispec.Manifest{}, err
	}
	return s.putRootfsImage(ctx, e, l, diffID)
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
	if os.Geteuid() != 0 && s.mapping.Helper {
		// Read the tree inside the store's user namespace, so that files
		// of the caller's subordinate ids keep their owners.
		args := []string{"tar", dir}
		if overlay {
			args = append(args, "overlay")
		}
		cmd := reexec.Command("", UnpackRole, s.mapping, 0, args...)
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
	defer tr.Close()
	diff := digest.SHA256.Digester()
	gz, err := blobcompress.Gzip.Compress(io.TeeReader(ctxReader{ctx, tr}, diff.Hash()))
	if err != nil {
		return ispec.Descriptor{}, "", err
	}
	defer gz.Close()
	l, err := s.putBlob(ctx, e, ispec.MediaTypeImageLayerGzip, gz, 0, "layer of "+dir)
	tr.Close()
	if werr := wait(); err == nil && werr != nil {
		err = werr
	}
	if err != nil {
		return ispec.Descriptor{}, "", fmt.Errorf("make layer of %s: %w", dir, err)
	}
	return l, diff.Digest(), nil
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
	defer f.Close()
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
		if err != nil {
			return ispec.Descriptor{}, ispec.Manifest{}, err
		}
		return s.putRootfsImage(ctx, e, l, l.Digest)
	}
	// Hash the decompressed stream beside the copy.
	pr, pw := io.Pipe()
	type result struct {
		d   digest.Digest
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
		_, err = io.Copy(h.Hash(), dr)
		if cerr := dr.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			pr.CloseWithError(err)
		} else {
			io.Copy(io.Discard, pr)
		}
		done <- result{d: h.Digest(), err: err}
	}()
	l, err := s.putBlob(ctx, e, mt, io.TeeReader(ctxReader{ctx, f}, pw), fi.Size(), "layer "+p)
	pw.Close()
	res := <-done
	if err == nil && res.err != nil {
		err = fmt.Errorf("%s data: %w", comp, res.err)
	}
	if err != nil {
		return ispec.Descriptor{}, ispec.Manifest{}, err
	}
	return s.putRootfsImage(ctx, e, l, res.d)
}
