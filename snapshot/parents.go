package snapshot

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/beamhop/lightbox/internal/sys"
)

// withParents passes the layer tar r (a build step's COPY, ADD or WORKDIR
// layer, over the image of layers) through, writing before each entry
// the directories above it that the tar has not written yet and the
// image has, with the owner and mode the image gives them. Unpacked
// alone, the layer would get such a parent made for it (root's, 0755),
// and the overlay shows the topmost layer's directory: `COPY f /tmp/x/`
// would leave /tmp 0755 and an /opt/app that a RUN gave the app's user
// root's. docker's layers are diffs of a filesystem and carry those
// parents as the image has them; so does this. Close the result: that
// ends the copy when its reader stops early.
func (s *Store) withParents(ctx context.Context, layers []string, r io.Reader) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(s.copyWithParents(ctx, layers, r, pw))
	}()
	return pr
}

func (s *Store) copyWithParents(ctx context.Context, layers []string, r io.Reader, w io.Writer) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	done := map[string]bool{}
	now := time.Now()
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return tw.Close()
		}
		if err != nil {
			return err
		}
		name := strings.Trim(path.Clean("/"+hdr.Name), "/")
		var parents []string
		for d := path.Dir(name); d != "." && d != "/" && !done[d]; d = path.Dir(d) {
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			d := parents[i]
			done[d] = true
			ph, err := s.parentHeader(ctx, layers, d, now)
			if err != nil {
				return err
			}
			if ph == nil {
				continue // the image lacks it: the unpack makes it, as docker does
			}
			if err := tw.WriteHeader(ph); err != nil {
				return fmt.Errorf("parent %s: %w", d, err)
			}
		}
		if hdr.Typeflag == tar.TypeDir {
			done[name] = true
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
}

// parentHeader is the tar entry of directory d (relative) as the image
// of layers has it, in the ids its sandboxes see; nil when the image has
// no directory there, or reaches d through a symlink (the build resolves
// its destinations through those: such an entry is not the image's d).
func (s *Store) parentHeader(ctx context.Context, layers []string, d string, now time.Time) (*tar.Header, error) {
	if res, err := s.Resolve(layers, "/"+d); err != nil || res != "/"+d {
		return nil, err
	}
	o, err := s.Owner(ctx, layers, "/"+d)
	if err != nil || o == nil {
		return nil, err
	}
	uid, ok1 := toContainer(s.mapping.UIDs, uint32(o.UID))
	gid, ok2 := toContainer(s.mapping.GIDs, uint32(o.GID))
	if !ok1 || !ok2 {
		return nil, nil // shown as nobody: the unpack's default is as good
	}
	return &tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: int64(sys.UnixMode(o.Mode)), Uid: int(uid), Gid: int(gid), ModTime: now}, nil
}
