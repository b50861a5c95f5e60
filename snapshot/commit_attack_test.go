//go:build linux

package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/umoci/oci/casext/blobcompress"
	"golang.org/x/sys/unix"
)

// hostSecret writes a 0600 file outside any store with random content and
// returns its path and content.
func hostSecret(t *testing.T) (string, []byte) {
	t.Helper()
	b := make([]byte, 32)
	rand.Read(b)
	secret := []byte("SECRET-" + hex.EncodeToString(b))
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, secret
}

// checkSecretUnchanged fails t when the host secret changed.
func checkSecretUnchanged(t *testing.T, p string, secret []byte) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, secret) || fi.Mode() != 0o600 {
		t.Fatalf("host secret %s changed: %v %q", p, fi.Mode(), got)
	}
}

// layerTar returns the uncompressed tar of the layer blob whose unpacked
// directory is dir.
func layerTar(t *testing.T, s *Store, dir string) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join(s.ociDir(), "blobs", "sha256", filepath.Base(dir)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := blobcompress.Gzip.Decompress(f)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tarEntries lists a tar's entries by name.
func tarEntries(t *testing.T, b []byte) map[string]*tar.Header {
	t.Helper()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := out[hdr.Name]; dup {
			t.Errorf("entry %q twice in the layer", hdr.Name)
		}
		out[hdr.Name] = hdr
	}
}

// warnings collects the records of a logger.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Enabled(context.Context, slog.Level) bool { return true }
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w *warnings) WithGroup(string) slog.Handler            { return w }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	s := r.Message
	r.Attrs(func(a slog.Attr) bool { s += " " + a.String(); return true })
	w.mu.Lock()
	w.msgs = append(w.msgs, s)
	w.mu.Unlock()
	return nil
}

func (w *warnings) find(sub string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.msgs {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}

func importBase(t *testing.T, s *Store) {
	t.Helper()
	rootfs := t.TempDir()
	os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755)
	os.WriteFile(filepath.Join(rootfs, "etc/hostname"), []byte("base\n"), 0o644)
	if _, err := s.Import(t.Context(), "base", rootfs, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestCommitSymlinkToHostFile commits an upper dir whose symlinks point at
// a 0600 host file (absolute, and relative through ..): the layer holds
// the symlinks, never the file's content.
func TestCommitSymlinkToHostFile(t *testing.T) {
	s := openStore(t)
	importBase(t, s)
	secretPath, secret := hostSecret(t)
	upper := t.TempDir()
	os.MkdirAll(filepath.Join(upper, "d"), 0o755)
	rel, err := filepath.Rel(filepath.Join(upper, "d"), secretPath)
	if err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"abs": secretPath, "d/rel": rel} {
		if err := os.Symlink(target, filepath.Join(upper, name)); err != nil {
			t.Fatal(err)
		}
	}
	// A directory symlink, so that a walk by path would descend into
	// the host's directory.
	if err := os.Symlink(filepath.Dir(secretPath), filepath.Join(upper, "dirlink")); err != nil {
		t.Fatal(err)
	}
	sn, err := s.Commit(t.Context(), "child", "base", upper, CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b := layerTar(t, s, sn.Layers[1])
	if bytes.Contains(b, secret) {
		t.Fatal("the host secret is in the committed layer")
	}
	ents := tarEntries(t, b)
	for name, target := range map[string]string{"abs": secretPath, "d/rel": rel, "dirlink": filepath.Dir(secretPath)} {
		h := ents[name]
		if h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != target {
			t.Errorf("entry %s = %+v, want a symlink to %s", name, h, target)
		}
	}
	for name := range ents {
		if strings.HasPrefix(name, "dirlink/") {
			t.Errorf("entry %q: the walk went through a symlink", name)
		}
	}
	top := sn.Layers[1]
	if got, err := os.Readlink(filepath.Join(top, "abs")); err != nil || got != secretPath {
		t.Errorf("unpacked abs -> %q, %v", got, err)
	}
	checkSecretUnchanged(t, secretPath, secret)
}

// exchanger swaps upper/f (a regular file the size of the secret) and
// upper/l (a symlink to the host secret) with renameat2(RENAME_EXCHANGE)
// until stopped, as a workload would while its sandbox is committed.
func exchanger(t *testing.T, upper, secretPath string, size int) (stop func() int64) {
	t.Helper()
	f, l := filepath.Join(upper, "f"), filepath.Join(upper, "l")
	if err := os.WriteFile(f, bytes.Repeat([]byte("x"), size), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secretPath, l); err != nil {
		t.Fatal(err)
	}
	var done atomic.Bool
	var n atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !done.Load() {
			if err := unix.Renameat2(unix.AT_FDCWD, f, unix.AT_FDCWD, l, unix.RENAME_EXCHANGE); err != nil {
				t.Errorf("renameat2: %v", err)
				return
			}
			n.Add(1)
		}
	}()
	return func() int64 { done.Store(true); wg.Wait(); return n.Load() }
}

// TestCommitExchangeRace commits an upper dir while a goroutine exchanges
// a regular file with a symlink to a 0600 host file of the same size (the
// attack that got host files into snapshots): no layer may contain the
// secret, through Store.Commit (rootless with a range: read in the user
// namespace's child) and through the in-process layer writer.
func TestCommitExchangeRace(t *testing.T) {
	log := &warnings{}
	s := openStoreAt(t, t.TempDir(), testMapping(t), slog.New(log))
	importBase(t, s)
	secretPath, secret := hostSecret(t)
	upper := t.TempDir()
	stop := exchanger(t, upper, secretPath, len(secret))
	defer stop()
	ctx := t.Context()
	for i := range 40 {
		sn, err := s.Commit(ctx, fmt.Sprintf("c%d", i), "base", upper, CommitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(layerTar(t, s, sn.Layers[1]), secret) {
			t.Fatalf("commit %d: the host secret is in the layer", i)
		}
		for _, n := range []string{"f", "l"} {
			p := filepath.Join(sn.Layers[1], n)
			if fi, err := os.Lstat(p); err != nil || fi.Mode()&os.ModeSymlink != 0 {
				continue // the symlink itself, kept as a symlink
			}
			if b, err := os.ReadFile(p); err == nil && bytes.Equal(b, secret) {
				t.Fatalf("commit %d: the host secret is in the unpacked layer", i)
			}
		}
	}
	for i := range 500 {
		r := upperLayer(upper, s.mapOptions(), func(string, string) {}, nil)
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, secret) {
			t.Fatalf("layer %d: the host secret is in the layer", i)
		}
	}
	n := stop()
	if n < 1000 {
		t.Fatalf("only %d exchanges ran: the race was not tried", n)
	}
	t.Logf("%d exchanges during the commits", n)
	checkSecretUnchanged(t, secretPath, secret)
}

// TestCommitReservedNames: files a sandbox names .wh.* cannot be stored in
// an OCI layer; the commit leaves them out with a warning instead of
// failing, and keeps the rest.
func TestCommitReservedNames(t *testing.T) {
	log := &warnings{}
	s := openStoreAt(t, t.TempDir(), testMapping(t), slog.New(log))
	importBase(t, s)
	upper := t.TempDir()
	os.MkdirAll(filepath.Join(upper, "d/.wh.sub"), 0o755)
	for _, p := range []string{".wh.x", ".wh..wh..opq", "d/.wh..wh..opq", "d/.wh.sub/f", "d/keep", "keep"} {
		if err := os.WriteFile(filepath.Join(upper, p), []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sn, err := s.Commit(t.Context(), "child", "base", upper, CommitOptions{})
	if err != nil {
		t.Fatalf("commit with .wh. files = %v, want them left out", err)
	}
	ents := tarEntries(t, layerTar(t, s, sn.Layers[1]))
	for _, p := range []string{"keep", "d/keep"} {
		if ents[p] == nil {
			t.Errorf("entry %s missing", p)
		}
	}
	for name := range ents {
		if strings.Contains(name, ".wh.") {
			t.Errorf("entry %q in the layer", name)
		}
	}
	if _, err := os.Stat(filepath.Join(sn.Layers[1], "d/keep")); err != nil {
		t.Error(err)
	}
	if !log.find(`path=.wh.x`) || !log.find(`path=d/.wh.sub`) {
		t.Errorf("no warning naming the files left out: %q", log.msgs)
	}
}

// TestUpperLayerFormat checks what the upper-dir writer makes of each kind
// of entry: both whiteout forms, opaque directories, hard links, FIFOs,
// symlinks, xattrs (overlayfs's own left out, escaped ones unescaped) and
// owners.
func TestUpperLayerFormat(t *testing.T) {
	s := openStore(t)
	upper := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(upper, "opq/sub"), 0o750))
	must(os.WriteFile(filepath.Join(upper, "opq/sub/f"), []byte("in"), 0o640))
	must(unix.Setxattr(filepath.Join(upper, "opq"), "user.overlay.opaque", []byte("y"), 0))
	must(unix.Setxattr(filepath.Join(upper, "opq"), "user.overlay.impure", []byte("y"), 0))
	// Whiteouts: a 0/0 char device (mknod allows it unprivileged) and
	// the xattr form.
	must(unix.Mknod(filepath.Join(upper, "gone"), unix.S_IFCHR|0o000, 0))
	must(os.WriteFile(filepath.Join(upper, "gone2"), nil, 0o644))
	must(unix.Setxattr(filepath.Join(upper, "gone2"), "user.overlay.whiteout", []byte("y"), 0))
	must(os.WriteFile(filepath.Join(upper, "a"), []byte("hard"), 0o755))
	must(unix.Chmod(filepath.Join(upper, "a"), 0o4755))
	must(os.Link(filepath.Join(upper, "a"), filepath.Join(upper, "b")))
	must(unix.Setxattr(filepath.Join(upper, "a"), "user.note", []byte("hi"), 0))
	must(unix.Setxattr(filepath.Join(upper, "a"), "user.overlay.overlay.mine", []byte("v"), 0))
	must(unix.Setxattr(filepath.Join(upper, "a"), "user.overlay.origin", []byte("junk"), 0))
	must(unix.Mkfifo(filepath.Join(upper, "fifo"), 0o600))
	must(os.Symlink("../nowhere", filepath.Join(upper, "sym")))

	r := upperLayer(upper, s.mapOptions(), func(msg, name string) { t.Errorf("warning %s: %s", name, msg) }, nil)
	b, err := io.ReadAll(r)
	must(err)
	ents := tarEntries(t, b)
	want := map[string]byte{
		"./": tar.TypeDir, "opq/": tar.TypeDir, "opq/.wh..wh..opq": tar.TypeReg, "opq/sub/": tar.TypeDir,
		"opq/sub/f": tar.TypeReg, ".wh.gone": tar.TypeReg, ".wh.gone2": tar.TypeReg, "a": tar.TypeReg,
		"b": tar.TypeLink, "fifo": tar.TypeFifo, "sym": tar.TypeSymlink,
	}
	for name, typ := range want {
		h := ents[name]
		if h == nil {
			t.Errorf("entry %s missing; have %v", name, keys(ents))
			continue
		}
		if h.Typeflag != typ {
			t.Errorf("entry %s type = %q, want %q", name, h.Typeflag, typ)
		}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("entry %s owner = %d:%d, want 0:0 (the store's root)", name, h.Uid, h.Gid)
		}
	}
	if len(ents) != len(want) {
		t.Errorf("entries = %v, want %d", keys(ents), len(want))
	}
	if h := ents["b"]; h != nil && h.Linkname != "a" {
		t.Errorf("b links to %q, want a", h.Linkname)
	}
	if h := ents["a"]; h != nil {
		if h.Mode != 0o4755 || h.Size != 4 {
			t.Errorf("a: mode %o size %d", h.Mode, h.Size)
		}
		x := h.PAXRecords
		if x["SCHILY.xattr.user.note"] != "hi" || x["SCHILY.xattr.user.overlay.mine"] != "v" || len(x) != 2 {
			t.Errorf("a xattrs = %q, want user.note and user.overlay.mine only", x)
		}
	}
	if h := ents["opq/"]; h != nil && (h.Mode != 0o750 || len(h.PAXRecords) != 0) {
		t.Errorf("opq/: mode %o xattrs %q", h.Mode, h.PAXRecords)
	}
	if h := ents["sym"]; h != nil && h.Linkname != "../nowhere" {
		t.Errorf("sym -> %q", h.Linkname)
	}
	// The layer unpacks, and its whiteouts hide the lower files.
	importBase(t, s)
	sn, err := s.Commit(t.Context(), "child", "base", upper, CommitOptions{})
	must(err)
	if !isWhiteout(filepath.Join(sn.Layers[1], "gone")) || !isWhiteout(filepath.Join(sn.Layers[1], "gone2")) {
		t.Error("whiteouts not unpacked as whiteouts")
	}
	a, err1 := os.Stat(filepath.Join(sn.Layers[1], "a"))
	bb, err2 := os.Stat(filepath.Join(sn.Layers[1], "b"))
	if err1 != nil || err2 != nil || !os.SameFile(a, bb) {
		t.Errorf("a and b are not one file after unpack: %v %v", err1, err2)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestUpperLayerStubs: the mount stubs a build step's sandbox made are
// left out of its layer where still empty (a file, or a directory of such
// stubs); a stub the step wrote into, or one that is no longer what the
// launch made (a symlink to a host directory, made as a stub's name), is
// written as it is, and the symlink is not followed: the host directory's
// file is in no entry.
func TestUpperLayerStubs(t *testing.T) {
	s := openStore(t)
	upper, host := t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(host, "secret"), []byte("host"), 0o600))
	for _, d := range []string{"c1/deep/cache", "w/sub/t", "w/sub/mine", "p"} {
		must(os.MkdirAll(filepath.Join(upper, d), 0o755))
	}
	must(os.WriteFile(filepath.Join(upper, "f"), nil, 0o644))
	must(os.WriteFile(filepath.Join(upper, "g"), []byte("x"), 0o644))
	must(os.Symlink(host, filepath.Join(upper, "s")))
	must(os.Symlink(host, filepath.Join(upper, "p/q")))
	stubs := []string{"/c1/deep/cache", "/c1/deep", "/c1", "/w/sub/t", "/w/sub", "/f", "/g", "/s", "/p/q", "/p", "/absent"}
	r := upperLayer(upper, s.mapOptions(), func(msg, name string) { t.Errorf("warning %s: %s", name, msg) }, stubs)
	b, err := io.ReadAll(r)
	must(err)
	ents := tarEntries(t, b)
	want := map[string]byte{
		"./": tar.TypeDir, "w/": tar.TypeDir, "w/sub/": tar.TypeDir, "w/sub/mine/": tar.TypeDir,
		"g": tar.TypeReg, "s": tar.TypeSymlink, "p/": tar.TypeDir, "p/q": tar.TypeSymlink,
	}
	for name, typ := range want {
		if h := ents[name]; h == nil || h.Typeflag != typ {
			t.Errorf("entry %s = %v, want type %q; have %v", name, h, typ, keys(ents))
		}
	}
	if len(ents) != len(want) {
		t.Errorf("entries = %v, want %v", keys(ents), keys(want))
	}
	if bytes.Contains(b, []byte("host")) {
		t.Errorf("the layer holds the host file's content")
	}
}
