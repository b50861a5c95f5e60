package build

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// copyFrom is COPY --from: files of an earlier stage's image, or of a
// snapshot of the store, become one layer. Its cache key holds the source
// image's layer chain and the digest of what is copied (the layer tar, as
// written, read once for the key and again for the layer when the key
// misses).
func (bd *builder) copyFrom(ctx context.Context, s *stage, text string, cfg Config, c *instructions.CopyCommand) (StepOutput, bool, error) {
	from, _, err := bd.lex.ProcessWord(c.From, envMap(s.env()))
	if err != nil {
		return StepOutput{}, false, err
	}
	src, err := bd.fromImage(ctx, from)
	if err != nil {
		return StepOutput{}, false, err
	}
	if src.ID == "" {
		return StepOutput{}, false, fmt.Errorf("--from=%s: the image has no files", from)
	}
	for _, p := range c.SourcePaths {
		if leavesRoot(p) {
			return StepOutput{}, false, fmt.Errorf("--from=%s: %s: leaves the image's root", from, p)
		}
	}
	dest, destDir, chmod, own, err := bd.copyTarget(ctx, s, c.DestPath, len(c.SourcePaths) > 1, c.SourcePaths, c.Chmod, c.Chown)
	if err != nil {
		return StepOutput{}, false, err
	}
	if err := bd.notOverFile(ctx, s, dest, destDir, nil); err != nil {
		return StepOutput{}, false, err
	}
	// A destination the image lacks is made, an empty one too: plain
	// when written with a trailing "/", else as the (first) source
	// directory is (newDirs).
	makeDest := s.img.ID == ""
	if !makeDest {
		exists, _, err := bd.b.Stat(ctx, s.img.ID, dest)
		if err != nil {
			return StepOutput{}, false, err
		}
		makeDest = !exists
	}
	makeDest = makeDest && dest != "/"
	var plain []byte // the plain destination's entry, ahead of the copy
	if makeDest && strings.HasSuffix(c.DestPath, "/") {
		makeDest = false
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(dest, "/") + "/", Mode: 0o755, ModTime: time.Now()}
		if own != nil {
			hdr.Uid, hdr.Gid = own.uid, own.gid
		}
		// Flushed, not closed: the copy's own stream follows it.
		if err := tw.WriteHeader(hdr); err != nil {
			return StepOutput{}, false, err
		}
		if err := tw.Flush(); err != nil {
			return StepOutput{}, false, err
		}
		plain = b.Bytes()
	}
	chain, err := bd.b.Chain(ctx, src.ID)
	if err != nil {
		return StepOutput{}, false, fmt.Errorf("--from=%s: %w", from, err)
	}
	open := func() (io.ReadCloser, error) {
		r, err := bd.b.CopyFrom(ctx, src.ID, c.SourcePaths, dest, destDir, makeDest)
		if err != nil {
			return nil, fmt.Errorf("--from=%s: %w", from, err)
		}
		return retar(r, own, chmod), nil
	}
	r, err := open()
	if err != nil {
		return StepOutput{}, false, err
	}
	h := sha256.New()
	into, err := copiesInto(io.TeeReader(r, h), dest)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return StepOutput{}, false, fmt.Errorf("--from=%s: %w", from, err)
	}
	// A directory source makes a directory of dest (or fills it),
	// whatever the destination's spelling: where the image has a file,
	// buildkit refuses ("cannot copy to non-directory"), podman too.
	if into && !destDir {
		if err := bd.notOverFile(ctx, s, dest, true, nil); err != nil {
			return StepOutput{}, false, err
		}
	}
	extra := []string{"from " + chain, "content " + hex.EncodeToString(h.Sum(nil))}
	if own != nil {
		extra = append(extra, fmt.Sprintf("owner %d:%d", own.uid, own.gid))
	}
	if plain != nil {
		extra = append(extra, "mkdir "+dest)
	}
	return bd.commit(ctx, s, text, cfg, func() (io.Reader, func(), error) {
		r, err := open()
		if err != nil {
			return nil, nil, err
		}
		return io.MultiReader(bytes.NewReader(plain), r), func() { _ = r.Close() }, nil // its error reached the commit through the stream
	}, extra...)
}

// copiesInto reads the layer tar r to its end and reports whether it
// makes dest (absolute) a directory or writes under it.
func copiesInto(r io.Reader, dest string) (bool, error) {
	into := false
	d := strings.TrimPrefix(dest, "/")
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return false, err
		}
		name := strings.TrimSuffix(strings.TrimPrefix(hdr.Name, "./"), "/")
		if name == d && hdr.Typeflag == tar.TypeDir || strings.HasPrefix(name, d+"/") {
			into = true
		}
	}
	// What follows the end of the archive, read too: the key is the
	// digest of the whole stream.
	_, err := io.Copy(io.Discard, r)
	return into, err
}

// fromImage resolves --from: a stage built before this one (by name or
// number), else a snapshot of the store.
func (bd *builder) fromImage(ctx context.Context, from string) (Image, error) {
	if img, ok := bd.stages[strings.ToLower(from)]; ok {
		return img, nil
	}
	if n, err := strconv.Atoi(from); err == nil && n >= 0 {
		if n < len(bd.byIndex) {
			return bd.byIndex[n], nil
		}
		return Image{}, fmt.Errorf("--from=%d: stage %d is not built before this one", n, n)
	}
	if slices.ContainsFunc(bd.r.stages, func(st instructions.Stage) bool { return strings.EqualFold(st.Name, from) }) {
		return Image{}, fmt.Errorf("--from=%s: the stage is not built before this one (only an earlier stage can be copied from)", from)
	}
	img, err := bd.b.From(ctx, from)
	if err != nil {
		return Image{}, fmt.Errorf("--from=%s: no stage of that name, and %w", from, err)
	}
	return img, nil
}

// leavesRoot reports whether p, read from the root, climbs above it.
func leavesRoot(p string) bool {
	depth := 0
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "", ".":
		case "..":
			if depth--; depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

// retar copies tar stream r applying --chown (own) and --chmod (not to
// symlinks).
func retar(r io.ReadCloser, own *owner, chmod *fs.FileMode) io.ReadCloser {
	if own == nil && chmod == nil {
		return r
	}
	pr, pw := io.Pipe()
	go func() {
		err := func() error {
			tr := tar.NewReader(r)
			tw := tar.NewWriter(pw)
			for {
				hdr, err := tr.Next()
				if errors.Is(err, io.EOF) {
					return tw.Close()
				}
				if err != nil {
					return err
				}
				if own != nil {
					hdr.Uid, hdr.Gid = own.uid, own.gid
				}
				if chmod != nil && hdr.Typeflag != tar.TypeSymlink {
					hdr.Mode = int64(*chmod)
				}
				if err := tw.WriteHeader(hdr); err != nil {
					return err
				}
				if _, err := io.Copy(tw, tr); err != nil {
					return err
				}
			}
		}()
		if cerr := r.Close(); err == nil && cerr != nil {
			err = cerr
		}
		pw.CloseWithError(err)
	}()
	return &pipeCloser{pr, r}
}

// pipeCloser is retar's output: closing it closes the source too, so a
// reader that stops early stops the copier.
type pipeCloser struct {
	*io.PipeReader
	src io.Closer
}

func (p *pipeCloser) Close() error {
	_ = p.src.Close() // stops the producer; its error, if the stream was read to its end, came through the pipe
	return p.PipeReader.Close()
}
