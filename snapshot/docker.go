package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"

	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/umoci/oci/casext"
)

// dockerManifestEntry is one image of a `docker save` manifest.json.
type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// hexName matches file names that carry the sha256 of their content:
// blobs/sha256/<hex>, <hex>.json (old configs) and <hex>.tar.
// Compiled on first use: a launch never reads a docker archive.
var hexName = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?:^|/)([0-9a-f]{64})(?:\.json|\.tar)?$`)
})

// normTag strips the default registry and namespace, so that
// "docker.io/library/busybox:latest" and "busybox:latest" match.
func normTag(t string) string {
	t = strings.TrimPrefix(t, "docker.io/")
	t = strings.TrimPrefix(t, "library/")
	if !strings.Contains(t[strings.LastIndex(t, "/")+1:], ":") {
		t += ":latest"
	}
	return t
}

func pickDocker(ms []dockerManifestEntry, tag string) (dockerManifestEntry, error) {
	var all []string
	for _, m := range ms {
		all = append(all, m.RepoTags...)
	}
	tags := strings.Join(all, ", ")
	if tags == "" {
		tags = "none"
	}
	if tag != "" {
		for _, m := range ms {
			for _, t := range m.RepoTags {
				if t == tag || normTag(t) == normTag(tag) {
					return m, nil
				}
			}
		}
		return dockerManifestEntry{}, fmt.Errorf("manifest.json: no image tagged %q (tags: %s): %w", tag, tags, errdefs.ErrNotFound)
	}
	switch len(ms) {
	case 0:
		return dockerManifestEntry{}, errors.New("manifest.json lists no image")
	case 1:
		return ms[0], nil
	}
	return dockerManifestEntry{}, fmt.Errorf("manifest.json lists %d images: name one as FILE:REPO:TAG (tags: %s)", len(ms), tags)
}

// convertDocker stores the blobs of a `docker save` image and an OCI
// manifest for them.
func (s *Store) convertDocker(ctx context.Context, e casext.Engine, a *archive, tag string) (ispec.Descriptor, ispec.Manifest, error) {
	var ms []dockerManifestEntry
	if err := a.readJSON("manifest.json", &ms); err != nil {
		return ispec.Descriptor{}, ispec.Manifest{}, err
	}
	dm, err := pickDocker(ms, tag)
	if err != nil {
		return ispec.Descriptor{}, ispec.Manifest{}, err
	}
	cfgData, err := a.readFile(cleanName(dm.Config))
	if err != nil {
		return ispec.Descriptor{}, ispec.Manifest{}, fmt.Errorf("config: %w", err)
	}
	cfgDigest := digest.FromBytes(cfgData)
	if m := hexName().FindStringSubmatch(dm.Config); m != nil && m[1] != cfgDigest.Encoded() {
		return ispec.Descriptor{}, ispec.Manifest{}, fmt.Errorf("config %q: digest mismatch: content is %s", dm.Config, cfgDigest)
	}
	var cfg ispec.Image
	if err := json.Unmarshal(cfgData, &cfg); err != nil {
		return ispec.Descriptor{}, ispec.Manifest{}, fmt.Errorf("config %q: %w", dm.Config, err)
	}
	if n, m := len(cfg.RootFS.DiffIDs), len(dm.Layers); n != 0 && n != m {
		return ispec.Descriptor{}, ispec.Manifest{}, fmt.Errorf("config %q lists %d layers, manifest.json %d", dm.Config, n, m)
	}
	var man ispec.Manifest
	for i, lp := range dm.Layers {
		r, err := a.openFile(cleanName(lp))
		if err != nil {
			return ispec.Descriptor{}, ispec.Manifest{}, fmt.Errorf("layer %q: %w", lp, err)
		}
		comp := compression(readMagic(r))
		mt := ispec.MediaTypeImageLayer
		switch comp {
		case "":
		case "gzip":
			mt = ispec.MediaTypeImageLayerGzip
		case "zstd":
			mt = ispec.MediaTypeImageLayerZstd
		default:
			return ispec.Descriptor{}, ispec.Manifest{}, fmt.Errorf("layer %q: %s compression is not supported", lp, comp)
		}
		// Check the content against the digest its name carries, or the
		// config's diff_id when it is an uncompressed tar.
		var want digest.Digest
		if m := hexName().FindStringSubmatch(lp); m != nil && strings.Contains(lp, "blobs/") {
			want = digest.NewDigestFromEncoded(digest.SHA256, m[1])
		} else if comp == "" && len(cfg.RootFS.DiffIDs) > i {
			want = cfg.RootFS.DiffIDs[i]
		}
		var src io.ReadCloser = nopCloser{r}
		if want != "" {
			src = verified(src, ispec.Descriptor{Digest: want, Size: r.Size()})
		}
		d, err := s.putBlob(ctx, e, mt, src, r.Size(), "layer "+lp)
		if cerr := src.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("layer %q: %w", lp, cerr)
		}
		if err != nil {
			return ispec.Descriptor{}, ispec.Manifest{}, err
		}
		man.Layers = append(man.Layers, d)
	}
	cd, err := s.putBlob(ctx, e, ispec.MediaTypeImageConfig, strings.NewReader(string(cfgData)), int64(len(cfgData)), "config")
	if err != nil {
		return ispec.Descriptor{}, ispec.Manifest{}, err
	}
	man.Config = cd
	return s.putManifest(ctx, e, man)
}
