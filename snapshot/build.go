package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"time"

	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/lockfile"
	"github.com/beamhop/lightbox/internal/names"
	"github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/umoci/oci/casext"
	"github.com/opencontainers/umoci/oci/casext/blobcompress"
)

// The build cache. A build step's result is an image of the store held by
// an entry of the OCI index that carries the step's cache key
// (annotationBuildKey) and no name: List and Get never see it, GC keeps
// its blobs and layers like a snapshot's (the index holds them), and a
// tagged snapshot made by a build points at the same manifest. Entries
// are removed only by PruneBuildCache, under the index lock, so a cache
// entry never names a layer that is gone.

// annotationBuildKey records, on a build-cache entry of the index, the
// build step's cache key.
const annotationBuildKey = "dev.lightbox.build.key"

// ImageConfig is the whole image configuration a build step writes (the
// OCI image config: Config plus exposed ports).
type ImageConfig = ispec.ImageConfig

// BuildLayer is the layer a build step adds: either the overlayfs upper
// directory of a sandbox (UpperDir, the commit path) or an uncompressed
// layer tar stream (Tar); neither for a step that changes the
// configuration only.
type BuildLayer struct {
	UpperDir string
	// Stubs are, for UpperDir, what the step's sandbox made only to
	// mount on (MountStubs): absolute paths in the image, each left out
	// of the layer where it is still an empty directory (its own stubs
	// aside) or an empty file, as docker's buildkit removes its mount
	// stubs after a RUN.
	Stubs []string
	Tar   io.Reader
}

// BuildStep describes one step's image: its parent ("" = scratch), its
// cache key, its configuration and its layer.
type BuildStep struct {
	Parent    string // manifest digest of the parent image; "" = scratch
	Key       string // cache key; required
	Config    ImageConfig
	Layer     BuildLayer
	CreatedBy string // the instruction, for the image history
}

// Image returns the image with manifest digest id, tagged or a build-cache
// entry, as a Snapshot named name (for display), with its layers
// unpacked; errdefs.ErrNotFound when the index holds no such manifest.
func (s *Store) Image(ctx context.Context, id, name string) (*Snapshot, ImageConfig, error) {
	e, err := s.engine()
	if err != nil {
		return nil, ImageConfig{}, err
	}
	defer func() { _ = e.Close() }() // every write was checked; Close removes the .umoci-* dir writes made, and one it leaves (unlocked by then) goes with the next gc's umoci GC
	d, err := s.findManifest(ctx, e, id)
	if err != nil {
		return nil, ImageConfig{}, err
	}
	var m ispec.Manifest
	if err := readJSON(ctx, e, d, &m); err != nil {
		return nil, ImageConfig{}, fmt.Errorf("image %s: manifest: %w", short(id), err)
	}
	var img ispec.Image
	if err := readJSON(ctx, e, m.Config, &img); err != nil {
		return nil, ImageConfig{}, fmt.Errorf("image %s: config: %w", short(id), err)
	}
	sn, err := s.describe(ctx, e, name, d)
	if err != nil {
		return nil, ImageConfig{}, err
	}
	for _, l := range sn.Layers {
		if _, err := os.Stat(l); err != nil {
			return nil, ImageConfig{}, fmt.Errorf("image %s: layer %s: %w", short(id), l, err)
		}
	}
	return sn, img.Config, nil
}

// LeaseImage is Image with a lease on the image: while any is held,
// PruneBuildCache keeps the image's build-cache entry, and so GC its
// layers (a build's RUN step runs on its parent image, which may be an
// entry of the cache only).
func (s *Store) LeaseImage(ctx context.Context, id, name string) (*Lease, *Snapshot, ImageConfig, error) {
	d, err := digest.Parse(id)
	if err != nil {
		return nil, nil, ImageConfig{}, fmt.Errorf("image %s: %w", short(id), err)
	}
	// Under the index lock, shared: the prune, which holds it
	// exclusively, sees either the lease or no entry to lease.
	ilk, err := lockfile.Shared(ctx, s.indexLock())
	if err != nil {
		return nil, nil, ImageConfig{}, fmt.Errorf("lease image %s: %w", short(id), err)
	}
	defer ilk.Close()
	sn, cfg, err := s.Image(ctx, id, name)
	if err != nil {
		return nil, nil, ImageConfig{}, err
	}
	lk, err := lockfile.Shared(ctx, s.imageLeaseFile(d))
	if err != nil {
		return nil, nil, ImageConfig{}, fmt.Errorf("lease image %s: %w", short(id), err)
	}
	return &Lease{lk: lk}, sn, cfg, nil
}

// imageLeased says whether a lease on the image with manifest digest d is
// held; called under the index lock held exclusively. It removes an
// unheld lease file.
func (s *Store) imageLeased(d digest.Digest) (bool, error) {
	held, err := leaseHeld(s.imageLeaseFile(d))
	if err != nil {
		return false, fmt.Errorf("image %s: %w", short(d.String()), err)
	}
	return held, nil
}

// findManifest returns the index entry of manifest id.
func (s *Store) findManifest(ctx context.Context, e casext.Engine, id string) (ispec.Descriptor, error) {
	idx, err := e.GetIndex(ctx)
	if err != nil {
		return ispec.Descriptor{}, err
	}
	for _, d := range idx.Manifests {
		if d.Digest.String() == id {
			return d, nil
		}
	}
	return ispec.Descriptor{}, fmt.Errorf("image %s: %w", short(id), errdefs.ErrNotFound)
}

// LookupBuildCache returns the manifest digest of the build-cache entry
// for key, if there is one whose layers are all unpacked.
func (s *Store) LookupBuildCache(ctx context.Context, key string) (string, bool, error) {
	e, err := s.engine()
	if err != nil {
		return "", false, err
	}
	defer func() { _ = e.Close() }() // every write was checked; Close removes the .umoci-* dir writes made, and one it leaves (unlocked by then) goes with the next gc's umoci GC
	idx, err := e.GetIndex(ctx)
	if err != nil {
		return "", false, fmt.Errorf("build cache: %w", err)
	}
	for i := len(idx.Manifests) - 1; i >= 0; i-- {
		d := idx.Manifests[i]
		if d.Annotations[annotationBuildKey] != key {
			continue
		}
		var m ispec.Manifest
		if err := readJSON(ctx, e, d, &m); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return "", false, fmt.Errorf("build cache: %w", err)
		}
		ok := true
		for _, l := range m.Layers {
			if _, err := os.Stat(s.LayerDir(l.Digest)); err != nil {
				ok = false
			}
		}
		if ok {
			return d.Digest.String(), true, nil
		}
	}
	return "", false, nil
}

// CommitBuildStep makes the image of one build step: the parent's layers
// plus st.Layer (if any) with st.Config, unpacks the new layer and records the image in the build cache. It returns the image's
// manifest digest and the compressed size of the layer it added. The
// image stays in the index (and its blobs and layers in the store) until
// PruneBuildCache.
func (s *Store) CommitBuildStep(ctx context.Context, st BuildStep) (string, int64, error) {
	if st.Key == "" {
		return "", 0, errors.New("build step: no cache key")
	}
	gl, err := lockfile.Shared(ctx, s.gcLock())
	if err != nil {
		return "", 0, fmt.Errorf("build step: %w", err)
	}
	defer gl.Close() // held until the index names what this made
	e, err := s.engine()
	if err != nil {
		return "", 0, err
	}
	defer func() { _ = e.Close() }() // every write was checked; Close removes the .umoci-* dir writes made, and one it leaves (unlocked by then) goes with the next gc's umoci GC
	var m ispec.Manifest
	img := ispec.Image{
		Platform: ispec.Platform{OS: "linux", Architecture: goruntime.GOARCH},
		RootFS:   ispec.RootFS{Type: "layers"},
	}
	if st.Parent != "" {
		pd, err := s.findManifest(ctx, e, st.Parent)
		if err != nil {
			return "", 0, err
		}
		if err := readJSON(ctx, e, pd, &m); err != nil {
			return "", 0, fmt.Errorf("image %s: manifest: %w", short(st.Parent), err)
		}
		if err := readJSON(ctx, e, m.Config, &img); err != nil {
			return "", 0, fmt.Errorf("image %s: config: %w", short(st.Parent), err)
		}
	}
	padHistory(&img)
	now := time.Now().UTC()
	layers := append([]ispec.Descriptor{}, m.Layers...)
	var size int64
	hist := ispec.History{Created: &now, CreatedBy: st.CreatedBy, EmptyLayer: true}
	if st.Layer.UpperDir != "" || st.Layer.Tar != nil {
		var l ispec.Descriptor
		var diffID digest.Digest
		if st.Layer.UpperDir != "" {
			l, diffID, err = s.layerFromUpper(ctx, e, st.Layer.UpperDir, st.Layer.Stubs)
		} else {
			below := make([]string, len(m.Layers))
			for i, pl := range m.Layers {
				below[i] = s.LayerDir(pl.Digest)
			}
			tr := s.withParents(ctx, below, st.Layer.Tar)
			l, diffID, err = s.layerFromTar(ctx, e, tr)
			_ = tr.Close() // a pipe's reader: ends the copy if it is still going
		}
		if err != nil {
			return "", 0, err
		}
		layers = append(layers, l)
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, diffID)
		size = l.Size
		hist.EmptyLayer = false
	}
	img.Created = &now
	// What st.Config has no say in (a recipe here cannot set VOLUME) is
	// the parent's, as docker's images inherit it; so is a STOPSIGNAL the
	// recipe does not set: a build FROM postgres keeps its SIGINT.
	inherited := img.Config
	img.Config = st.Config
	if img.Config.Volumes == nil {
		img.Config.Volumes = inherited.Volumes
	}
	if img.Config.StopSignal == "" {
		img.Config.StopSignal = inherited.StopSignal
	}
	img.History = append(img.History, hist)
	cd, cn, err := e.PutBlobJSON(ctx, img)
	if err != nil {
		return "", 0, fmt.Errorf("store config: %w", err)
	}
	mdesc, nm, err := s.putManifest(ctx, e, ispec.Manifest{
		Config: ispec.Descriptor{MediaType: ispec.MediaTypeImageConfig, Digest: cd, Size: cn},
		Layers: layers,
	})
	if err != nil {
		return "", 0, err
	}
	if err := s.ensureLayers(ctx, e, nm.Layers); err != nil {
		return "", 0, err
	}
	if err := s.recordBuildStep(ctx, e, st.Key, mdesc); err != nil {
		return "", 0, err
	}
	return mdesc.Digest.String(), size, nil
}

// recordBuildStep adds the index entry that holds image mdesc under key
// in the build cache. A build without the cache still records its steps,
// as docker's --no-cache does.
func (s *Store) recordBuildStep(ctx context.Context, e casext.Engine, key string, mdesc ispec.Descriptor) error {
	ilk, err := lockfile.Exclusive(ctx, s.indexLock())
	if err != nil {
		return err
	}
	defer ilk.Close()
	idx, err := e.GetIndex(ctx)
	if err != nil {
		return err
	}
	if key == "" {
		return errors.New("record build step: no cache key")
	}
	// An older entry for the key stays: a build running at the same time
	// may have just made it and be about to build on it. Lookups take the
	// newest; PruneBuildCache removes them all.
	idx.Manifests = append(idx.Manifests, ispec.Descriptor{
		MediaType: ispec.MediaTypeImageManifest, Digest: mdesc.Digest, Size: mdesc.Size,
		Annotations: map[string]string{
			annotationBuildKey: key,
			annotationCreated:  time.Now().UTC().Format(time.RFC3339Nano),
		},
	})
	if err := e.PutIndex(ctx, idx); err != nil {
		return fmt.Errorf("record build step: %w", err)
	}
	return nil
}

// layerFromTar stores an uncompressed layer tar stream as a gzipped layer
// blob and returns it with its diff_id.
func (s *Store) layerFromTar(ctx context.Context, e casext.Engine, r io.Reader) (ispec.Descriptor, digest.Digest, error) {
	l, diffID, err := s.putLayer(ctx, e, r, "build layer")
	if err != nil {
		return ispec.Descriptor{}, "", fmt.Errorf("make layer: %w", err)
	}
	return l, diffID, nil
}

// putLayer stores an uncompressed layer tar stream as a gzipped layer blob
// (what names it in errors and progress) and returns it with its diff_id.
func (s *Store) putLayer(ctx context.Context, e casext.Engine, r io.Reader, what string) (ispec.Descriptor, digest.Digest, error) {
	diff := digest.SHA256.Digester()
	gz, err := blobcompress.Gzip.Compress(io.TeeReader(ctxReader{ctx, r}, diff.Hash()))
	if err != nil {
		return ispec.Descriptor{}, "", err
	}
	defer func() { _ = gz.Close() }() // putBlob's result is checked; the gzip reader's Close only stops its goroutine
	l, err := s.putBlob(ctx, e, ispec.MediaTypeImageLayerGzip, gz, 0, what)
	if err != nil {
		return ispec.Descriptor{}, "", err
	}
	return l, diff.Digest(), nil
}

// TagImage names image id (a build's result) name. An existing name is
// errdefs.ErrExists unless replace (and no sandbox uses it).
func (s *Store) TagImage(ctx context.Context, name, id string, replace bool) (*Snapshot, error) {
	if err := names.Check("snapshot", name); err != nil {
		return nil, err
	}
	e, err := s.engine()
	if err != nil {
		return nil, err
	}
	defer func() { _ = e.Close() }() // every write was checked; Close removes the .umoci-* dir writes made, and one it leaves (unlocked by then) goes with the next gc's umoci GC
	d, err := s.findManifest(ctx, e, id)
	if err != nil {
		return nil, err
	}
	return s.tag(ctx, e, name, d, replace)
}

// PruneBuildCache removes every build-cache entry but those a running
// build step leases (LeaseImage), then collects the layers and blobs no
// snapshot uses any more.
func (s *Store) PruneBuildCache(ctx context.Context) error {
	if err := s.pruneIndex(ctx, func(d ispec.Descriptor) bool { return d.Annotations[annotationBuildKey] != "" }); err != nil {
		return err
	}
	return s.GC(ctx)
}

// pruneIndex removes the unnamed index entries drop selects.
func (s *Store) pruneIndex(ctx context.Context, drop func(ispec.Descriptor) bool) error {
	ilk, err := lockfile.Exclusive(ctx, s.indexLock())
	if err != nil {
		return err
	}
	defer ilk.Close()
	e, err := s.engine()
	if err != nil {
		return err
	}
	defer func() { _ = e.Close() }() // every write was checked; Close removes the .umoci-* dir writes made, and one it leaves (unlocked by then) goes with the next gc's umoci GC
	idx, err := e.GetIndex(ctx)
	if err != nil {
		return err
	}
	kept := idx.Manifests[:0]
	for _, d := range idx.Manifests {
		if _, named := d.Annotations[ispec.AnnotationRefName]; named || !drop(d) {
			kept = append(kept, d)
			continue
		}
		leased, err := s.imageLeased(d.Digest)
		if err != nil {
			return fmt.Errorf("prune build cache: %w", err)
		}
		if leased {
			s.log.Info("build cache entry kept: a build step runs on it", "image", short(d.Digest.String()))
			kept = append(kept, d)
		}
	}
	idx.Manifests = kept
	if err := e.PutIndex(ctx, idx); err != nil {
		return fmt.Errorf("prune build cache: %w", err)
	}
	return nil
}
