package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/beamhop/lightbox/internal/environ"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/names"
	"github.com/beamhop/lightbox/internal/testutil"
	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/umoci/oci/casext/blobcompress"
)

// testMapping is the mapping a store of this user gets.
func testMapping(t testing.TB) idmap.Mapping {
	t.Helper()
	m, err := idmap.Detect()
	if err != nil {
		t.Fatal(err)
	}
	if testutil.RootlessPass() {
		testutil.Need(t, m.Subordinate, "rootless pass needs a subordinate id range and newuidmap")
	}
	return m
}

func openStore(t testing.TB) *Store {
	t.Helper()
	return openStoreAt(t, t.TempDir(), testMapping(t), nil)
}

func openStoreAt(t testing.TB, root string, m idmap.Mapping, log *slog.Logger) *Store {
	t.Helper()
	s, err := Open(Options{Root: root, Mapping: m, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Layer trees of other ids need the namespace to go away.
		s.removeAll(context.Background(), s.layersDir())
	})
	return s
}

// storeState lists what a store holds, to compare before and after.
func storeState(t testing.TB, s *Store) []string {
	t.Helper()
	var out []string
	for _, d := range []string{filepath.Join(s.ociDir(), "blobs", "sha256"), s.layersDir()} {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			out = append(out, filepath.Base(d)+"/"+e.Name())
		}
	}
	idx, err := os.ReadFile(filepath.Join(s.ociDir(), "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, "index "+strings.TrimSpace(string(idx)))
	ents, _ := os.ReadDir(s.tmp)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			out = append(out, "tmp/"+e.Name())
		}
	}
	ents, _ = os.ReadDir(s.ociDir())
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".umoci-") {
			out = append(out, "oci/"+e.Name())
		}
	}
	sort.Strings(out)
	return out
}

var busyCfg = ispec.ImageConfig{
	Env:        []string{"PATH=/bin", "FOO=bar"},
	WorkingDir: "/root",
	Cmd:        []string{"/bin/sh"},
	Labels:     map[string]string{"k": "v"},
}

func TestImportFormats(t *testing.T) {
	ctx := t.Context()
	rootfs := testutil.BusyboxRootfs(t)
	layout := testutil.OCILayout(t, rootfs, "v1", busyCfg)
	tmp := t.TempDir()
	ociArchive := filepath.Join(tmp, "oci.tar")
	testutil.OCIArchive(t, layout, ociArchive)
	layerTar := testutil.TarDir(t, rootfs)
	dockerTar := filepath.Join(tmp, "docker.tar")
	testutil.DockerArchive(t, dockerTar, "busybox:1", busyCfg, layerTar)
	dockerTgz := filepath.Join(tmp, "docker.tar.gz")
	os.WriteFile(dockerTgz, testutil.Gzip(t, mustRead(t, dockerTar)), 0o644)
	// Docker 25+ saves an OCI layout plus a manifest.json naming blobs.
	d25 := testutil.NewOCILayout(t)
	testutil.AddOCIImage(t, d25, "1", busyCfg, layerTar)
	var d25m ispec.Manifest
	rewriteManifest(t, d25, "1", func(m *ispec.Manifest) { d25m = *m })
	man := `[{"Config":"blobs/sha256/` + d25m.Config.Digest.Encoded() + `","RepoTags":["busybox:1"],"Layers":["blobs/sha256/` + d25m.Layers[0].Digest.Encoded() + `"]}]`
	os.WriteFile(filepath.Join(d25, "manifest.json"), []byte(man), 0o644)
	docker25 := filepath.Join(tmp, "docker25.tar")
	testutil.OCIArchive(t, d25, docker25)
	rootTar := filepath.Join(tmp, "rootfs.tar")
	os.WriteFile(rootTar, layerTar, 0o644)
	rootTgz := filepath.Join(tmp, "rootfs.tar.gz")
	os.WriteFile(rootTgz, testutil.Gzip(t, layerTar), 0o644)

	rootZst := filepath.Join(tmp, "rootfs.tar.zst")
	zr, err := blobcompress.Zstd.Compress(bytes.NewReader(layerTar))
	if err != nil {
		t.Fatal(err)
	}
	zdata, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(rootZst, zdata, 0o644)

	cases := []struct {
		name, source, format string
		wantConfig           bool
	}{
		{"oci", layout, FormatOCI, true},
		{"oci-tag", layout + ":v1", FormatOCI, true},
		{"oci-archive", ociArchive, FormatOCIArchive, true},
		{"oci-archive-tag", ociArchive + ":v1", FormatOCIArchive, true},
		{"docker", dockerTar, FormatDocker, true},
		{"docker-tag", dockerTar + ":busybox:1", FormatDocker, true},
		{"docker-gz", dockerTgz, FormatDocker, true},
		{"docker25", docker25 + ":busybox:1", FormatDocker, true},
		{"rootfs-dir", rootfs, FormatRootfsDir, false},
		{"rootfs-tar", rootTar, FormatRootfsTar, false},
		{"rootfs-tgz", rootTgz, FormatRootfsTar, false},
		{"rootfs-zstd", rootZst, FormatRootfsTar, false},
	}
	s := openStore(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, _, err := splitSource(c.source)
			if err != nil {
				t.Fatal(err)
			}
			got, dec, err := s.detect(ctx, p)
			if dec != nil {
				dec.close()
			}
			if err != nil || got != c.format {
				t.Fatalf("detect(%s) = %q, %v; want %q", c.source, got, err, c.format)
			}
			for _, forced := range []string{"", c.format} {
				name := c.name + "-" + map[string]string{"": "detected"}[forced]
				name = strings.TrimSuffix(name, "-")
				sn, err := s.Import(ctx, name, c.source, ImportOptions{Format: forced})
				if err != nil {
					t.Fatalf("Import(%s, format %q): %v", c.source, forced, err)
				}
				checkBusybox(t, s, sn, c.wantConfig)
				if _, err := s.Import(ctx, name, c.source, ImportOptions{Format: forced}); !errors.Is(err, errdefs.ErrExists) {
					t.Fatalf("second Import(%s) = %v, want ErrExists", name, err)
				}
				if _, err := s.Import(ctx, name, c.source, ImportOptions{Format: forced, Replace: true}); err != nil {
					t.Fatalf("Import(%s, Replace) = %v", name, err)
				}
			}
		})
	}
	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, sn := range list {
		got = append(got, sn.Name)
	}
	if len(got) != 2*len(cases) || !sort.StringsAreSorted(got) {
		t.Fatalf("List = %v, want %d sorted names", got, 2*len(cases))
	}
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkBusybox checks a snapshot made from testutil.BusyboxRootfs.
func checkBusybox(t testing.TB, s *Store, sn *Snapshot, wantConfig bool) {
	t.Helper()
	got, err := s.Get(context.Background(), sn.Name)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sn, got); diff != "" {
		t.Fatalf("Get differs from Import's snapshot (-import +get):\n%s", diff)
	}
	if len(sn.Layers) != 1 || !strings.HasPrefix(sn.Layers[0], s.layersDir()) {
		t.Fatalf("layers = %v, want one under %s", sn.Layers, s.layersDir())
	}
	fi, err := os.Stat(filepath.Join(sn.Layers[0], "bin/busybox"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("bin/busybox in layer: %v, %v", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(sn.Layers[0], "bin/sh")); err != nil || l != "busybox" {
		t.Fatalf("bin/sh -> %q, %v; want busybox", l, err)
	}
	if fi, err := os.Stat(filepath.Join(sn.Layers[0], "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Fatalf("tmp mode = %v, %v; want sticky 0777", fi.Mode(), err)
	}
	if wantConfig {
		want := Config{Env: busyCfg.Env, WorkingDir: "/root", Cmd: []string{"/bin/sh"}, Labels: map[string]string{"k": "v"}}
		if diff := cmp.Diff(want, sn.Config); diff != "" {
			t.Fatalf("config (-want +got):\n%s", diff)
		}
	} else if !slices.Contains(sn.Config.Env, "PATH="+environ.DefaultPath) {
		t.Fatalf("config env = %v, want PATH=%s", sn.Config.Env, environ.DefaultPath)
	}
	if sn.CreatedAt.IsZero() || sn.Size <= 0 || !strings.HasPrefix(sn.Digest, "sha256:") {
		t.Fatalf("snapshot = %+v", sn)
	}
}

func TestSharedLayer(t *testing.T) {
	ctx := t.Context()
	base := testutil.TarDir(t, testutil.BusyboxRootfs(t))
	top1 := testutil.Tar(t, testutil.TarFile{Hdr: tar.Header{Name: "one"}, Body: "1"})
	top2 := testutil.Tar(t, testutil.TarFile{Hdr: tar.Header{Name: "two"}, Body: "2"})
	layout := testutil.NewOCILayout(t)
	testutil.AddOCIImage(t, layout, "a", busyCfg, base, top1)
	testutil.AddOCIImage(t, layout, "b", busyCfg, base, top2)
	s := openStore(t)
	a, err := s.Import(ctx, "a", layout+":a", ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Import(ctx, "b", layout+":b", ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Layers[0] != b.Layers[0] || a.Layers[1] == b.Layers[1] {
		t.Fatalf("layers a %v b %v: want the base shared, the tops not", a.Layers, b.Layers)
	}
	if n := countDir(t, s.layersDir()); n != 3 {
		t.Fatalf("%d layer dirs, want 3", n)
	}
	if _, err := os.Stat(filepath.Join(a.Layers[1], "one")); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "a"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Get(a) after Remove = %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(b.Layers[0]); err != nil {
		t.Fatalf("shared layer gone after removing a: %v", err)
	}
	if _, err := os.Stat(a.Layers[1]); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a's own layer after Remove: %v, want gone", err)
	}
	if err := s.Remove(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if n := countDir(t, s.layersDir()); n != 0 {
		t.Fatalf("%d layer dirs after removing both, want 0", n)
	}
	if n := countDir(t, filepath.Join(s.ociDir(), "blobs", "sha256")); n != 0 {
		t.Fatalf("%d blobs after removing both, want 0", n)
	}
	if err := s.Remove(ctx, "b"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Remove(b) twice = %v, want ErrNotFound", err)
	}
}

func countDir(t testing.TB, d string) int {
	t.Helper()
	ents, err := os.ReadDir(d)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// countingHandler counts "unpacked layer" records by layer.
type countingHandler struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "unpacked layer" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "layer" {
			h.mu.Lock()
			h.n[a.Value.String()]++
			h.mu.Unlock()
		}
		return true
	})
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func TestConcurrentImports(t *testing.T) {
	ctx := t.Context()
	base := testutil.TarDir(t, testutil.BusyboxRootfs(t))
	layout := testutil.NewOCILayout(t)
	const n = 4
	for i := range n {
		top := testutil.Tar(t, testutil.TarFile{Hdr: tar.Header{Name: "f"}, Body: string(rune('a' + i))})
		testutil.AddOCIImage(t, layout, string(rune('a'+i)), busyCfg, base, top)
	}
	root := t.TempDir()
	m := testMapping(t)
	h := &countingHandler{n: map[string]int{}}
	var wg sync.WaitGroup
	errs := make([]error, n)
	snaps := make([]*Snapshot, n)
	for i := range n {
		// A Store each, as separate processes would have.
		s := openStoreAt(t, root, m, slog.New(h))
		wg.Add(1)
		go func() {
			defer wg.Done()
			tag := string(rune('a' + i))
			snaps[i], errs[i] = s.Import(ctx, "s"+tag, layout+":"+tag, ImportOptions{})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("import %d: %v", i, err)
		}
	}
	for l, c := range h.n {
		if c != 1 {
			t.Errorf("layer %s unpacked %d times, want once", l, c)
		}
	}
	if len(h.n) != n+1 {
		t.Errorf("%d layers unpacked, want %d", len(h.n), n+1)
	}
	s := openStoreAt(t, root, m, nil)
	list, err := s.List(ctx)
	if err != nil || len(list) != n {
		t.Fatalf("List = %d snapshots, %v; want %d", len(list), err, n)
	}
	for _, sn := range snaps {
		for _, l := range sn.Layers {
			if _, err := os.Stat(l); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestLease(t *testing.T) {
	ctx := t.Context()
	s := openStore(t)
	rootfs := testutil.BusyboxRootfs(t)
	if _, err := s.Import(ctx, "x", rootfs, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	l, sn, err := s.Lease(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if sn.Name != "x" || len(sn.Layers) != 1 {
		t.Fatalf("Lease snapshot = %+v", sn)
	}
	// A second lease is fine.
	l2, _, err := s.Lease(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
	if err := s.Remove(ctx, "x"); !errors.Is(err, errdefs.ErrInUse) {
		t.Fatalf("Remove while leased = %v, want ErrInUse", err)
	}
	if _, err := s.Import(ctx, "x", rootfs, ImportOptions{Replace: true}); !errors.Is(err, errdefs.ErrInUse) {
		t.Fatalf("Import(Replace) while leased = %v, want ErrInUse", err)
	}
	// A child that inherited the lease keeps it after we let go.
	cmd := exec.Command("sleep", "60")
	cmd.ExtraFiles = []*os.File{l.File()}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if err := s.Remove(ctx, "x"); !errors.Is(err, errdefs.ErrInUse) {
		t.Fatalf("Remove while a child holds the lease = %v, want ErrInUse", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if err := s.Remove(ctx, "x"); err != nil {
		t.Fatalf("Remove after the lease ended: %v", err)
	}
	if _, _, err := s.Lease(ctx, "x"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Lease of a removed snapshot = %v, want ErrNotFound", err)
	}
}

// Lease resolves a snapshot from the layout's files itself: it must see
// what Get sees (less Size), and refuse a blob whose content does not
// match its digest.
func TestLeaseResolvesAsGet(t *testing.T) {
	ctx := t.Context()
	s := openStore(t)
	if _, err := s.Import(ctx, "x", testutil.BusyboxRootfs(t), ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	want, err := s.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	l, got, err := s.Lease(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	want.Size = 0
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Lease's snapshot differs from Get's (-Get +Lease):\n%s", diff)
	}
	// Tamper with the config blob, keeping its size.
	var m ispec.Manifest
	if err := s.readBlobJSON(ispec.Descriptor{Digest: digest.Digest(want.Digest), Size: sizeOf(t, s, want.Digest)}, &m); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(s.ociDir(), "blobs", "sha256", m.Config.Digest.Encoded())
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Replace(data, []byte(`"created"`), []byte(`"CREATED"`), 1)
	if bytes.Equal(bad, data) || len(bad) != len(data) {
		t.Fatalf("could not tamper with the config %s", data)
	}
	if err := os.Chmod(cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	// The first lease recorded what launches need (launchrec.go): a
	// damaged or missing record sends Lease back to the blobs, whose
	// digest it checks.
	rec := s.launchFile(digest.Digest(want.Digest))
	good, err := os.ReadFile(rec)
	if err != nil {
		t.Fatalf("no launch record after a lease: %v", err)
	}
	damaged := bytes.Replace(good, []byte(`"configSize"`), []byte(`"configSizE"`), 1)
	if bytes.Equal(damaged, good) {
		t.Fatalf("could not damage the record %s", good)
	}
	for _, junk := range [][]byte{damaged, good[:len(good)/2], nil} {
		if err := os.WriteFile(rec, junk, 0o600); err != nil {
			t.Fatal(err)
		}
		if l, _, err := s.Lease(ctx, "x"); err == nil || !strings.Contains(err.Error(), "digest") {
			if l != nil {
				l.Close()
			}
			t.Fatalf("Lease with a tampered config and record %q = %v, want a digest mismatch", junk, err)
		}
	}
	if err := os.Remove(rec); err != nil {
		t.Fatal(err)
	}
	if l, _, err := s.Lease(ctx, "x"); err == nil || !strings.Contains(err.Error(), "digest") {
		if l != nil {
			l.Close()
		}
		t.Fatalf("Lease with a tampered config = %v, want a digest mismatch", err)
	}
	if _, err := os.Stat(rec); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed lease left a launch record: %v", err)
	}
}

// Lease finds names through refs.json, a cache of the index's named
// entries: it must follow every change of the index and survive a torn or
// forged cache.
func TestLeaseNamesCache(t *testing.T) {
	ctx := t.Context()
	s := openStore(t)
	rootfs := testutil.BusyboxRootfs(t)
	lease := func(name string) (string, error) {
		t.Helper()
		l, sn, err := s.Lease(ctx, name)
		if err != nil {
			return "", err
		}
		l.Close()
		return sn.Digest, nil
	}
	first, err := s.Import(ctx, "x", rootfs, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := lease("x"); err != nil || got != first.Digest {
		t.Fatalf("Lease(x) = %s, %v; want %s", got, err, first.Digest)
	}
	cache := filepath.Join(s.root, refsFile)
	if _, err := os.Stat(cache); err != nil {
		t.Fatalf("no cache after a lease: %v", err)
	}
	// Replace x with other content: the cache must not hand out the old one.
	if err := os.WriteFile(filepath.Join(rootfs, "new-file"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	second, err := s.Import(ctx, "x", rootfs, ImportOptions{Replace: true})
	if err != nil {
		t.Fatal(err)
	}
	if second.Digest == first.Digest {
		t.Fatal("the replaced snapshot has the same digest")
	}
	if got, err := lease("x"); err != nil || got != second.Digest {
		t.Fatalf("Lease(x) after a replace = %s, %v; want %s", got, err, second.Digest)
	}
	if _, err := lease("y"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Lease(y) = %v, want ErrNotFound", err)
	}
	// A forged cache (another index's digest) and a torn one are ignored.
	forged, err := json.Marshal(refsCache{Index: first.Digest, Refs: map[string]ispec.Descriptor{"y": {Digest: digest.Digest(first.Digest)}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, junk := range [][]byte{forged, []byte(`{"index":"sha2`), nil} {
		if err := os.WriteFile(cache, junk, 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := lease("x"); err != nil || got != second.Digest {
			t.Fatalf("Lease(x) with cache %q = %s, %v; want %s", junk, got, err, second.Digest)
		}
		if _, err := lease("y"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("Lease(y) with cache %q = %v, want ErrNotFound", junk, err)
		}
	}
	// Removed: not found, whatever the cache said before.
	if err := s.Remove(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := lease("x"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Lease(x) after Remove = %v, want ErrNotFound", err)
	}
	// No temporary file of the cache is left behind.
	ents, err := os.ReadDir(s.root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), refsTmpPrefix) {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func sizeOf(t *testing.T, s *Store, d string) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(s.ociDir(), "blobs", "sha256", strings.TrimPrefix(d, "sha256:")))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestNames(t *testing.T) {
	ctx := t.Context()
	s := openStore(t)
	rootfs := testutil.BusyboxRootfs(t)
	for _, n := range []string{"", "-x", "a/b", "../x", strings.Repeat("a", 64), "a b"} {
		before := storeState(t, s)
		if _, err := s.Import(ctx, n, rootfs, ImportOptions{}); !errors.Is(err, names.ErrInvalid) {
			t.Errorf("Import(%q) = %v, want ErrInvalid", n, err)
		}
		if _, err := s.Get(ctx, n); !errors.Is(err, names.ErrInvalid) {
			t.Errorf("Get(%q) = %v, want ErrInvalid", n, err)
		}
		if err := s.Remove(ctx, n); !errors.Is(err, names.ErrInvalid) {
			t.Errorf("Remove(%q) = %v, want ErrInvalid", n, err)
		}
		if diff := cmp.Diff(before, storeState(t, s)); diff != "" {
			t.Errorf("store changed:\n%s", diff)
		}
	}
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Get(nope) = %v, want ErrNotFound", err)
	}
	if _, err := s.Import(ctx, "x", rootfs, ImportOptions{Format: "zip"}); err == nil || !strings.Contains(err.Error(), "unknown format") {
		t.Errorf("Import(format zip) = %v", err)
	}
}

// bytesContain is a helper for messages.
func bytesContain(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }

func TestProgress(t *testing.T) {
	ctx := t.Context()
	var mu sync.Mutex
	var reports []Progress
	m := testMapping(t)
	s, err := Open(Options{Root: t.TempDir(), Mapping: m, Progress: func(p Progress) {
		mu.Lock()
		reports = append(reports, p)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.removeAll(context.Background(), s.layersDir()) })
	// An incompressible layer above the progress threshold.
	big := make([]byte, progressMin+1<<20)
	for i := range big {
		big[i] = byte(i*7919 + i>>8*31)
	}
	p := filepath.Join(t.TempDir(), "big.tar")
	os.WriteFile(p, testutil.Tar(t, testutil.TarFile{Hdr: tar.Header{Name: "big"}, Body: string(big)}), 0o644)
	if _, err := s.Import(ctx, "big", p, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	// Each transfer: a first report with nothing done, reports that never
	// go back, a last one that is Finished with all done.
	byWhat := map[string][]Progress{}
	for _, p := range reports {
		byWhat[p.What] = append(byWhat[p.What], p)
	}
	var copied, unpacked bool
	for what, ps := range byWhat {
		copied = copied || strings.HasPrefix(what, "copy layer ")
		unpacked = unpacked || strings.HasPrefix(what, "unpack sha256:")
		first, last := ps[0], ps[len(ps)-1]
		if first.Done != 0 || first.Total < progressMin || !last.Finished || last.Done != last.Total {
			t.Errorf("%s: first report %+v, last %+v; want 0 done of the size first, all done and finished last", what, first, last)
		}
		for i := 1; i < len(ps); i++ {
			if ps[i].Done < ps[i-1].Done || ps[i-1].Finished {
				t.Errorf("%s: report %+v after %+v", what, ps[i], ps[i-1])
			}
		}
	}
	if !copied || !unpacked {
		t.Fatalf("progress reports %+v, want reports on the copy and the unpack", reports)
	}
}

// A build step keeps what its configuration has no say in from its
// parent, as docker does: the base image's volumes and stop signal. They
// used to be dropped from every image built FROM it.
func TestBuildStepInheritsConfig(t *testing.T) {
	ctx := t.Context()
	s := openStore(t)
	cfg := busyCfg
	cfg.Volumes = map[string]struct{}{"/data": {}}
	cfg.StopSignal = "SIGINT"
	sn, err := s.Import(ctx, "base", testutil.OCILayout(t, testutil.BusyboxRootfs(t), "v1", cfg), ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := s.CommitBuildStep(ctx, BuildStep{Parent: sn.Digest, Key: "k", Config: ImageConfig{Env: []string{"A=1"}}, CreatedBy: "ENV A=1"})
	if err != nil {
		t.Fatal(err)
	}
	_, got, err := s.Image(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Volumes["/data"]; !ok || got.StopSignal != "SIGINT" || len(got.Env) != 1 {
		t.Errorf("the step's config = %+v, want the parent's volume /data and stop signal SIGINT, and its own Env", got)
	}
}
