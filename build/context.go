package build

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// buildContext is the context directory, opened as an os.Root: every
// path of it is resolved beneath it, so a "..", an absolute path or a
// symlink that leaves the context is an error, never a host path.
type buildContext struct {
	dir    string
	root   *os.Root
	ignore *patternmatcher.PatternMatcher // nil = none
}

func openContext(dir string) (*buildContext, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("build context %s: not a directory", dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	c := &buildContext{dir: dir, root: root}
	f, err := root.Open(".dockerignore")
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		_ = root.Close() // the stat already failed: that error is returned
		return nil, fmt.Errorf("build context: %w", err)
	default:
		pats, err := ignorefile.ReadAll(f)
		_ = f.Close() // read-only: ReadAll's error is checked
		if err == nil {
			c.ignore, err = patternmatcher.New(pats)
		}
		if err != nil {
			_ = root.Close() // the parse already failed: that error is returned
			return nil, fmt.Errorf("build context: .dockerignore: %w", err)
		}
	}
	return c, nil
}

func (c *buildContext) close() { _ = c.root.Close() } // read-only (the context directory)

// clean checks a source path of the recipe and makes it relative to the
// context.
func (c *buildContext) clean(src string) (string, error) {
	if path.IsAbs(src) {
		return "", fmt.Errorf("%s: an absolute path: sources are paths in the build context, relative to it", src)
	}
	p := path.Clean(src)
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("%s: outside the build context", src)
	}
	return p, nil
}

// resolve returns the host path of src (for a bind), refusing one that
// leaves the context by "..", or by a symlink.
func (c *buildContext) resolve(src string) (string, error) {
	p, err := c.clean(src)
	if err != nil {
		return "", err
	}
	if _, err := c.root.Stat(p); err != nil {
		return "", fmt.Errorf("%s: %w", src, contextErr(err))
	}
	// The host path must be the same file: no symlink on the way.
	if err := c.noSymlinks(p); err != nil {
		return "", err
	}
	return filepath.Join(c.dir, p), nil
}

// noSymlinks refuses a path with a symlink among its components.
func (c *buildContext) noSymlinks(p string) error {
	if p == "." {
		return nil
	}
	cur := ""
	for _, part := range strings.Split(p, "/") {
		cur = path.Join(cur, part)
		fi, err := c.root.Lstat(cur)
		if err != nil {
			return fmt.Errorf("%s: %w", p, contextErr(err))
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%s: %s is a symlink: a bind's source must be a real path in the context", p, cur)
		}
	}
	return nil
}

// contextErr makes os.Root's escape error say what happened.
func contextErr(err error) error {
	if strings.Contains(err.Error(), "escapes") {
		return fmt.Errorf("leaves the build context (a symlink to outside it?): %w", err)
	}
	return err
}

func (c *buildContext) ignored(rel string) bool {
	if c.ignore == nil || rel == "." {
		return false
	}
	m, err := c.ignore.MatchesOrParentMatches(rel)
	return err == nil && m
}

// exceptionUnder reports whether pm has an exception ("!dir/file") that
// names something under directory dir (relative): docker's test for
// walking into a directory its patterns exclude.
func exceptionUnder(pm *patternmatcher.PatternMatcher, dir string) bool {
	if pm == nil || !pm.Exclusions() {
		return false
	}
	for _, p := range pm.Patterns() {
		if p.Exclusion() && strings.HasPrefix(p.String()+"/", dir+"/") {
			return true
		}
	}
	return false
}

// entry is one file a COPY writes: src (relative to the context; "" for
// a heredoc's data) to dst (absolute).
type entry struct {
	src  string
	dst  string
	fi   fs.FileInfo
	data []byte // heredoc contents
	link string // symlink target
	tar  bool   // ADD: a local archive, unpacked into dst
	top  bool   // a destination directory's own entry: kept only where the image has no dst (newDirs)
	// plain: top's dst is made 0755, root's (or --chown's), as docker
	// makes a destination written with a trailing "/"; else as the
	// source directory fi is.
	plain bool
}

func hasGlob(s string) bool { return strings.ContainsAny(s, "*?[") }

// expand turns the recipe's sources into entries under dest (absolute;
// destDir: whether dest is a directory).
func (c *buildContext) expand(srcs []string, dest string, destDir bool, exclude []string, unpack bool) ([]entry, error) {
	var ex *patternmatcher.PatternMatcher
	if len(exclude) > 0 {
		var err error
		if ex, err = patternmatcher.New(exclude); err != nil {
			return nil, fmt.Errorf("--exclude: %w", err)
		}
	}
	skip := func(rel string) bool {
		if c.ignored(rel) {
			return true
		}
		if ex != nil {
			m, err := ex.MatchesOrParentMatches(rel)
			return err == nil && m
		}
		return false
	}
	// A skipped directory is still walked when an exception ("!dir/f")
	// may take back something in it, as docker walks it: only what the
	// patterns leave is copied.
	skipDir := func(rel string) error {
		if exceptionUnder(c.ignore, rel) || exceptionUnder(ex, rel) {
			return nil
		}
		return fs.SkipDir
	}
	var out []entry
	for _, src := range srcs {
		p, err := c.clean(src)
		if err != nil {
			return nil, err
		}
		var matches []string
		if hasGlob(p) {
			if _, err := path.Match(p, ""); err != nil {
				return nil, fmt.Errorf("%s: %w", src, err)
			}
			err := fs.WalkDir(c.root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if rel != "." && skip(rel) {
					if d.IsDir() {
						return skipDir(rel)
					}
					return nil
				}
				if ok, _ := path.Match(p, rel); ok && rel != "." {
					matches = append(matches, rel)
					if d.IsDir() {
						return fs.SkipDir
					}
				}
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("%s: %w", src, contextErr(err))
			}
			if len(matches) == 0 {
				return nil, fmt.Errorf("%s: no file in the build context matches", src)
			}
		} else {
			if p != "." && skip(p) {
				if fi, err := c.root.Stat(p); err != nil || !fi.IsDir() || skipDir(p) != nil {
					return nil, fmt.Errorf("%s: excluded by .dockerignore or --exclude", src)
				}
			}
			matches = []string{p}
		}
		for _, m := range matches {
			// The source itself is followed if it is a symlink (as
			// docker does), but only to somewhere in the context.
			fi, err := c.root.Stat(m)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", m, contextErr(err))
			}
			if fi.IsDir() {
				// A directory's contents go into dest, as docker
				// copies them; dest itself, when the image lacks it,
				// is made as the source directory is (mode, time), so
				// that an empty one is made too (newDirs).
				es, err := c.walk(m, dest, skip, skipDir)
				if err != nil {
					return nil, err
				}
				out = append(out, entry{src: m, dst: dest, fi: fi, top: true})
				out = append(out, es...)
				continue
			}
			if fi.Mode()&fs.ModeSocket != 0 {
				return nil, fmt.Errorf("%s: a socket, which a layer cannot hold", src)
			}
			dst := dest
			if destDir {
				dst = path.Join(dest, path.Base(m))
			}
			e := entry{src: m, dst: dst, fi: fi}
			if unpack {
				if e.tar, err = c.isArchive(m); err != nil {
					return nil, err
				}
				if e.tar {
					e.dst = dest
				}
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// walk lists directory src's contents under dst.
func (c *buildContext) walk(src, dst string, skip func(string) bool, skipDir func(string) error) ([]entry, error) {
	var out []entry
	err := fs.WalkDir(c.root.FS(), src, func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if rel != src && skip(rel) {
			if d.IsDir() {
				return skipDir(rel)
			}
			return nil
		}
		fi, err := c.root.Lstat(rel)
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSocket != 0 {
			return nil // nothing a layer can hold: skipped, as docker skips it
		}
		e := entry{src: rel, dst: path.Join(dst, strings.TrimPrefix(strings.TrimPrefix(rel, src), "/")), fi: fi}
		if src == "." && rel != "." {
			e.dst = path.Join(dst, rel)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			// Copied as a symlink: its target is data in the layer,
			// never followed on the host.
			if e.link, err = c.root.Readlink(rel); err != nil {
				return err
			}
		}
		if rel == src {
			// dst itself is expand's (a top entry).
			return nil
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, contextErr(err))
	}
	return out, nil
}

var archiveMagic = [][]byte{{0x1f, 0x8b}, []byte("BZh"), {0x28, 0xb5, 0x2f, 0xfd}}

// isArchive reports whether context file rel is a tar archive (plain,
// gzip, bzip2 or zstd) that ADD unpacks.
func (c *buildContext) isArchive(rel string) (bool, error) {
	f, err := c.root.Open(rel)
	if err != nil {
		return false, err
	}
	defer func() { _ = f.Close() }() // read-only
	r, err := decompress(bufio.NewReader(f))
	if err != nil {
		return false, nil // compressed but not readable: copied as a file
	}
	defer func() { _ = r.Close() }() // a decompressor of a read-only file: ReadFull's error is checked
	buf := make([]byte, 512)
	if _, err := io.ReadFull(r, buf); err != nil {
		return false, nil
	}
	return bytes.Equal(buf[257:262], []byte("ustar")), nil
}

func decompress(br *bufio.Reader) (io.ReadCloser, error) {
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, archiveMagic[0]):
		return gzip.NewReader(br)
	case bytes.HasPrefix(magic, archiveMagic[1]):
		return io.NopCloser(bzip2.NewReader(br)), nil
	case bytes.HasPrefix(magic, archiveMagic[2]):
		d, err := zstd.NewReader(br)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}

// digest hashes what srcs (context paths, each a file or a tree) hold,
// for a cache key: paths, modes, link targets and contents, not times.
func (c *buildContext) digest(srcs []string, es []entry) (string, error) {
	h := sha256.New()
	if es == nil {
		for _, s := range srcs {
			fi, err := c.root.Stat(s)
			if err != nil {
				return "", fmt.Errorf("%s: %w", s, contextErr(err))
			}
			if fi.IsDir() {
				w, err := c.walk(s, "/", c.ignored, func(rel string) error {
					if exceptionUnder(c.ignore, rel) {
						return nil
					}
					return fs.SkipDir
				})
				if err != nil {
					return "", err
				}
				es = append(es, w...)
			} else {
				es = append(es, entry{src: s, dst: s, fi: fi})
			}
		}
	}
	for _, e := range es {
		fmt.Fprintf(h, "%q %q %q %q %v\n", e.src, e.dst, e.link, e.data, e.tar)
		if e.plain {
			fmt.Fprintf(h, "made dir\n")
		}
		if e.fi == nil {
			continue
		}
		fmt.Fprintf(h, "%o %d\n", e.fi.Mode(), e.fi.Size())
		if e.fi.Mode().IsRegular() && e.src != "" {
			if err := c.hashFile(h, e.src); err != nil {
				return "", err
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (c *buildContext) hashFile(h hash.Hash, rel string) error {
	f, err := c.root.Open(rel)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, contextErr(err))
	}
	defer func() { _ = f.Close() }() // read-only
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	return nil
}

// owner is --chown resolved to ids; nil = as docker: 0:0.
type owner struct{ uid, gid int }

// writeLayer writes the layer tar of es.
func (c *buildContext) writeLayer(w io.Writer, es []entry, own *owner, chmod *fs.FileMode) error {
	tw := tar.NewWriter(w)
	for _, e := range es {
		if err := c.writeEntry(tw, e, own, chmod); err != nil {
			return err
		}
	}
	return tw.Close()
}

func (c *buildContext) writeEntry(tw *tar.Writer, e entry, own *owner, chmod *fs.FileMode) error {
	name := strings.TrimPrefix(e.dst, "/")
	if name == "" {
		name = "."
	}
	if e.tar {
		return c.unpackArchive(tw, e, own)
	}
	var hdr *tar.Header
	switch {
	case e.plain:
		hdr = &tar.Header{Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Now()}
	case e.data != nil:
		hdr = &tar.Header{Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(e.data)), ModTime: time.Now()}
	default:
		var err error
		if hdr, err = tar.FileInfoHeader(e.fi, e.link); err != nil {
			return fmt.Errorf("%s: %w", e.src, err)
		}
	}
	hdr.Name = name
	hdr.Uname, hdr.Gname = "", ""
	hdr.Uid, hdr.Gid = 0, 0
	if own != nil {
		hdr.Uid, hdr.Gid = own.uid, own.gid
	}
	if chmod != nil && hdr.Typeflag != tar.TypeSymlink && !e.plain {
		hdr.Mode = int64(*chmod)
	}
	if hdr.Typeflag == tar.TypeDir && !strings.HasSuffix(hdr.Name, "/") {
		hdr.Name += "/"
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%s: %w", e.dst, err)
	}
	switch {
	case e.data != nil:
		_, err := tw.Write(e.data)
		return err
	case hdr.Typeflag == tar.TypeReg && e.src != "":
		f, err := c.root.Open(e.src)
		if err != nil {
			return fmt.Errorf("%s: %w", e.src, contextErr(err))
		}
		defer func() { _ = f.Close() }() // read-only
		if n, err := io.Copy(tw, f); err != nil || n != hdr.Size {
			return fmt.Errorf("%s: copied %d of %d bytes (changed while copied?): %v", e.src, n, hdr.Size, err)
		}
	}
	return nil
}

// unpackArchive copies the entries of archive e.src under e.dst,
// refusing any that would land outside it.
func (c *buildContext) unpackArchive(tw *tar.Writer, e entry, own *owner) error {
	f, err := c.root.Open(e.src)
	if err != nil {
		return fmt.Errorf("%s: %w", e.src, contextErr(err))
	}
	defer func() { _ = f.Close() }() // read-only
	r, err := decompress(bufio.NewReader(f))
	if err != nil {
		return fmt.Errorf("%s: %w", e.src, err)
	}
	defer func() { _ = r.Close() }() // a decompressor of a read-only file: the tar reader's errors are checked
	tr := tar.NewReader(r)
	base := strings.TrimPrefix(e.dst, "/")
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", e.src, err)
		}
		clean := path.Clean("/" + hdr.Name)[1:]
		if clean == "" {
			continue
		}
		if strings.HasPrefix(path.Base(clean), ".wh.") {
			return fmt.Errorf("%s: entry %q: a whiteout name", e.src, hdr.Name)
		}
		hdr.Name = path.Join(base, clean)
		if hdr.Typeflag == tar.TypeLink {
			hdr.Linkname = path.Join(base, path.Clean("/" + hdr.Linkname)[1:])
		}
		if hdr.Typeflag == tar.TypeDir {
			hdr.Name += "/"
		}
		if own != nil {
			hdr.Uid, hdr.Gid = own.uid, own.gid
		}
		hdr.Uname, hdr.Gname = "", ""
		hdr.PAXRecords = nil
		hdr.Format = tar.FormatUnknown
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: entry %q: %w", e.src, hdr.Name, err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return fmt.Errorf("%s: entry %q: %w", e.src, hdr.Name, err)
		}
	}
}

// dirLayer is a layer of directories ps (parents first; 0755, owned by
// own): WORKDIR's.
func dirLayer(ps []string, own owner) io.Reader {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	now := time.Now()
	for _, p := range ps {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(p, "/") + "/", Mode: 0o755, Uid: own.uid, Gid: own.gid, ModTime: now}) // into a buffer: cannot fail
	}
	_ = tw.Close() // into a buffer: cannot fail
	return &b
}

// copyTarget works out where COPY, ADD and COPY --from put their files:
// the destination made absolute against the stage's working directory
// (a directory when it ends in "/", when several sources or a pattern
// are copied, or when the image has a directory there), and the --chmod
// and --chown they apply.
func (bd *builder) copyTarget(ctx context.Context, s *stage, dest string, several bool, sources []string, chmodArg, chownArg string) (string, bool, *fs.FileMode, *owner, error) {
	destDir := strings.HasSuffix(dest, "/") || several || dest == "." || slices.ContainsFunc(sources, hasGlob)
	if !path.IsAbs(dest) {
		dest = path.Join("/", s.img.Config.WorkingDir, dest)
	}
	dest = path.Clean(dest)
	if s.img.ID != "" {
		// Through the image's symlinks, as docker copies: an entry
		// at bin/x on a merged-/usr image would make a directory bin
		// in the layer that hides the image's /bin -> usr/bin.
		var err error
		if dest, err = bd.b.Resolve(ctx, s.img.ID, dest); err != nil {
			return "", false, nil, nil, err
		}
	}
	if !destDir && s.img.ID != "" {
		_, isDir, err := bd.b.Stat(ctx, s.img.ID, dest)
		if err != nil {
			return "", false, nil, nil, err
		}
		destDir = isDir
	}
	var chmod *fs.FileMode
	if chmodArg != "" {
		m, err := strconv.ParseUint(chmodArg, 8, 32)
		if err != nil || m > 0o7777 {
			return "", false, nil, nil, fmt.Errorf("--chmod=%s: want an octal mode", chmodArg)
		}
		fm := fs.FileMode(m)
		chmod = &fm
	}
	var own *owner
	if chownArg != "" {
		var err error
		if own, err = bd.chown(ctx, s, chownArg); err != nil {
			return "", false, nil, nil, err
		}
	}
	return dest, destDir, chmod, own, nil
}

type copyArgs struct {
	sd      instructions.SourcesAndDest
	chown   string
	chmod   string
	exclude []string
	unpack  bool
	add     bool
}

// copy is COPY and ADD: the files become one layer.
func (bd *builder) copy(ctx context.Context, s *stage, text string, cfg Config, a copyArgs) (StepOutput, bool, error) {
	if bd.ctxDir == nil && len(a.sd.SourcePaths) > 0 {
		return StepOutput{}, false, errors.New("the build has no context")
	}
	dest, destDir, chmod, own, err := bd.copyTarget(ctx, s, a.sd.DestPath, len(a.sd.SourcePaths)+len(a.sd.SourceContents) > 1, a.sd.SourcePaths, a.chmod, a.chown)
	if err != nil {
		return StepOutput{}, false, err
	}
	var es []entry
	if len(a.sd.SourcePaths) > 0 {
		var err error
		if es, err = bd.ctxDir.expand(a.sd.SourcePaths, dest, destDir, a.exclude, a.add && a.unpack); err != nil {
			return StepOutput{}, false, err
		}
	}
	if err := bd.notOverFile(ctx, s, dest, destDir, es); err != nil {
		return StepOutput{}, false, err
	}
	if strings.HasSuffix(a.sd.DestPath, "/") {
		es = append([]entry{{dst: dest, top: true, plain: true}}, es...)
	}
	if es, err = bd.newDirs(ctx, s, es); err != nil {
		return StepOutput{}, false, err
	}
	if err := bd.throughLinks(ctx, s, dest, es); err != nil {
		return StepOutput{}, false, err
	}
	for _, sc := range a.sd.SourceContents {
		dst := dest
		if destDir {
			dst = path.Join(dest, sc.Path)
		}
		es = append(es, entry{dst: dst, data: []byte(sc.Data)})
	}
	var dg string
	if bd.ctxDir != nil {
		var err error
		if dg, err = bd.ctxDir.digest(nil, es); err != nil {
			return StepOutput{}, false, err
		}
	} else {
		h := sha256.New()
		for _, e := range es {
			fmt.Fprintf(h, "%q %q\n", e.dst, e.data)
		}
		dg = hex.EncodeToString(h.Sum(nil))
	}
	extra := []string{"content " + dg}
	if own != nil {
		extra = append(extra, fmt.Sprintf("owner %d:%d", own.uid, own.gid))
	}
	return bd.commit(ctx, s, text, cfg, func() (io.Reader, func(), error) {
		pr, pw := io.Pipe()
		go func() {
			pw.CloseWithError(bd.ctxDir.writeLayer(pw, es, own, chmod))
		}()
		return pr, func() { _ = pr.Close() }, nil // closing a pipe's reader always returns nil
	}, extra...)
}

// notOverFile refuses a copy that makes a directory of dest, or puts
// files in it or under it, where the image has a file (or a link to one)
// at dest or on the way to it: docker's "cannot copy to non-directory".
// It replaced the file with the directory.
func (bd *builder) notOverFile(ctx context.Context, s *stage, dest string, destDir bool, es []entry) error {
	if s.img.ID == "" {
		return nil
	}
	p := dest // the first existing one of p and its parents must be a directory
	if !destDir && !slices.ContainsFunc(es, func(e entry) bool {
		return e.top || e.tar || strings.HasPrefix(e.dst, dest+"/")
	}) {
		p = path.Dir(dest) // a file to dest: only its parents
	}
	for ; p != "/"; p = path.Dir(p) {
		_, isDir, err := bd.b.Stat(ctx, s.img.ID, p)
		if err != nil {
			return err
		}
		if isDir {
			break
		}
		// Stat's exists is the store's directories only: a regular
		// file is what ReadFile reads (only this error case reads it
		// whole). Its errors are no answer: missing, or (rootless) in
		// a layer directory of another id of the range, which Stat's
		// helper searches and ReadFile does not.
		if _, err := bd.b.ReadFile(ctx, s.img.ID, p); err == nil {
			return fmt.Errorf("%s: the image has a file there: cannot copy a directory onto it or files into it", p)
		}
	}
	return nil
}

// newDirs keeps the top entries of es (a destination directory's own)
// whose destination the image of stage s lacks, the first for each: COPY
// makes such a destination (an empty one too, as docker does) plain when
// written with a trailing "/", else as its source directory is, and
// leaves one the image has as it is.
func (bd *builder) newDirs(ctx context.Context, s *stage, es []entry) ([]entry, error) {
	out := es[:0]
	seen := map[string]bool{}
	for _, e := range es {
		if e.top {
			if seen[e.dst] {
				continue
			}
			seen[e.dst] = true
			if s.img.ID != "" {
				exists, _, err := bd.b.Stat(ctx, s.img.ID, e.dst)
				if err != nil {
					return nil, err
				}
				if exists {
					continue
				}
			} else if e.dst == "/" {
				continue // scratch's root: the layer's
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// throughLinks rewrites the destinations of es (dest resolved already)
// through the symlinks the image has under dest: "COPY rootfs/ /" with a
// rootfs/bin/ on a merged-/usr image puts rootfs/bin/x at /usr/bin/x, as
// the image's /bin -> usr/bin says, instead of an entry bin/ that would
// hide that symlink and everything under /usr/bin. (docker refuses such a
// copy: "cannot copy to non-directory".) Only the directories the image
// has are looked up: what is under one it lacks is new.
func (bd *builder) throughLinks(ctx context.Context, s *stage, dest string, es []entry) error {
	if s.img.ID == "" {
		return nil
	}
	type dirInfo struct {
		to     string // where the directory is in the image
		absent bool   // the image has no such directory: nothing under it to resolve
	}
	dirs := map[string]dirInfo{dest: {to: dest}}
	var lookup func(d string) (dirInfo, error)
	lookup = func(d string) (dirInfo, error) {
		if di, ok := dirs[d]; ok {
			return di, nil
		}
		if d == "/" || !strings.HasPrefix(d, dest+"/") && dest != "/" {
			return dirInfo{to: d, absent: true}, nil // not under dest: kept as it is
		}
		parent, err := lookup(path.Dir(d))
		if err != nil {
			return dirInfo{}, err
		}
		di := dirInfo{to: path.Join(parent.to, path.Base(d)), absent: parent.absent}
		if !parent.absent {
			if di.to, err = bd.b.Resolve(ctx, s.img.ID, di.to); err != nil {
				return dirInfo{}, err
			}
			exists, _, err := bd.b.Stat(ctx, s.img.ID, di.to)
			if err != nil {
				return dirInfo{}, err
			}
			di.absent = !exists
		}
		dirs[d] = di
		return di, nil
	}
	for i := range es {
		e := &es[i]
		if e.top || e.dst == dest {
			continue
		}
		if e.fi != nil && e.fi.IsDir() {
			di, err := lookup(e.dst)
			if err != nil {
				return err
			}
			e.dst = di.to
			continue
		}
		di, err := lookup(path.Dir(e.dst))
		if err != nil {
			return err
		}
		e.dst = path.Join(di.to, path.Base(e.dst))
	}
	return nil
}

// chown resolves --chown=user[:group] (names through the image's
// /etc/passwd and /etc/group) to ids.
func (bd *builder) chown(ctx context.Context, s *stage, spec string) (*owner, error) {
	u, g, hasGroup := strings.Cut(spec, ":")
	uid, gid, err := bd.lookupID(ctx, s, "/etc/passwd", u)
	if err != nil {
		return nil, fmt.Errorf("--chown=%s: %w", spec, err)
	}
	if hasGroup {
		if gid, _, err = bd.lookupID(ctx, s, "/etc/group", g); err != nil {
			return nil, fmt.Errorf("--chown=%s: %w", spec, err)
		}
	} else if _, err := strconv.Atoi(u); err == nil {
		gid = uid // a numeric user alone: its id as the group, as docker does
	}
	return &owner{uid: uid, gid: gid}, nil
}

// lookupID resolves a user (file /etc/passwd: returns uid, gid) or a
// group (/etc/group: returns gid) by name or number.
func (bd *builder) lookupID(ctx context.Context, s *stage, file, name string) (int, int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		if n < 0 {
			return 0, 0, fmt.Errorf("%s: negative id", name)
		}
		return n, n, nil
	}
	if s.img.ID == "" {
		return 0, 0, fmt.Errorf("%s: the image has no %s (use ids)", name, file)
	}
	data, err := bd.b.ReadFile(ctx, s.img.ID, file)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: read %s: %w", name, file, err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Split(l, ":")
		if len(f) < 3 || f[0] != name {
			continue
		}
		id, err := strconv.Atoi(f[2])
		if err != nil {
			break
		}
		gid := id
		if file == "/etc/passwd" && len(f) > 3 {
			if g, err := strconv.Atoi(f[3]); err == nil {
				gid = g
			}
		}
		return id, gid, nil
	}
	return 0, 0, fmt.Errorf("%s: %w in the image's %s", name, errNoSuchID, file)
}

// errNoSuchID is a user or group name the image's /etc/passwd or
// /etc/group does not have.
var errNoSuchID = errors.New("no such name")
