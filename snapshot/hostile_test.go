package snapshot

import (
	"archive/tar"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beamhop/lightbox/internal/testutil"
	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/umoci/oci/cas/dir"
	"github.com/opencontainers/umoci/oci/casext"
)

// rewriteManifest replaces the manifest tagged tag in layout with what f
// makes of it, under the same tag.
func rewriteManifest(t *testing.T, layout, tag string, f func(*ispec.Manifest)) {
	t.Helper()
	ctx := context.Background()
	ce, err := dir.Open(layout)
	if err != nil {
		t.Fatal(err)
	}
	e := casext.NewEngine(ce)
	defer e.Close()
	ds, err := e.ResolveReference(ctx, tag)
	if err != nil || len(ds) != 1 {
		t.Fatalf("resolve %s: %v %v", tag, ds, err)
	}
	var m ispec.Manifest
	if err := readJSON(ctx, e, ds[0].Descriptor(), &m); err != nil {
		t.Fatal(err)
	}
	f(&m)
	d, n, err := e.PutBlobJSON(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.UpdateReference(ctx, tag, ispec.Descriptor{MediaType: ispec.MediaTypeImageManifest, Digest: d, Size: n}); err != nil {
		t.Fatal(err)
	}
}

func blobPath(layout string, d digest.Digest) string {
	return filepath.Join(layout, "blobs", d.Algorithm().String(), d.Encoded())
}

func TestHostileInput(t *testing.T) {
	ctx := t.Context()
	outside := t.TempDir() // nothing may appear here
	good := testutil.Tar(t, testutil.TarFile{Hdr: tar.Header{Name: "ok"}, Body: "ok"})
	f := func(name, body string) testutil.TarFile {
		return testutil.TarFile{Hdr: tar.Header{Name: name}, Body: body}
	}
	link := func(name, target string, typ byte) testutil.TarFile {
		return testutil.TarFile{Hdr: tar.Header{Name: name, Linkname: target, Typeflag: typ}}
	}
	rel, err := filepath.Rel("/x/y/z", outside) // deep enough to leave any root
	if err != nil {
		t.Fatal(err)
	}
	layers := []struct {
		name string
		tar  []byte
		want string
	}{
		{"dotdot", testutil.Tar(t, f("ok", "1"), f("../x", "pwned")), `entry "../x": path escapes the layer`},
		{"dotdot-deep", testutil.Tar(t, f("a/../../x", "pwned")), `entry "a/../../x": path escapes the layer`},
		{"absolute", testutil.Tar(t, f(filepath.Join(outside, "x"), "pwned")), `absolute path escapes the layer`},
		{"symlink-out-relative", testutil.Tar(t, link("l", "../../../../../.."+outside, tar.TypeSymlink), f("l/x", "pwned")), `entry "l/x": path goes through symlink "l"`},
		{"symlink-out-absolute", testutil.Tar(t, link("l", outside, tar.TypeSymlink), f("l/x", "pwned")), `entry "l/x": path goes through symlink "l"`},
		{"symlink-dir-chain", testutil.Tar(t, link("d", "/", tar.TypeSymlink), link("d/etc", rel, tar.TypeSymlink)), `entry "d/etc": path goes through symlink "d"`},
		{"hardlink-out", testutil.Tar(t, link("h", "../../../../etc/passwd", tar.TypeLink)), `entry "h": hard link to "../../../../etc/passwd" escapes the layer`},
		{"hardlink-absolute", testutil.Tar(t, link("h", "/etc/passwd", tar.TypeLink)), `entry "h": hard link to absolute path "/etc/passwd"`},
		{"hardlink-through-symlink", testutil.Tar(t, link("l", outside, tar.TypeSymlink), link("h", "l/x", tar.TypeLink)), `entry "h": path goes through symlink "l"`},
	}

	s := openStore(t)
	// A snapshot already there must survive every failed import.
	base := testutil.NewOCILayout(t)
	testutil.AddOCIImage(t, base, "v", busyCfg, good)
	if _, err := s.Import(ctx, "base", base, ImportOptions{}); err != nil {
		t.Fatal(err)
	}

	check := func(t *testing.T, name, source string, opts ImportOptions, want string) {
		t.Helper()
		before := storeState(t, s)
		_, err := s.Import(ctx, name, source, opts)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Import(%s) = %v, want an error containing %q", source, err, want)
		}
		t.Logf("error: %v", err)
		if diff := cmp.Diff(before, storeState(t, s)); diff != "" {
			t.Fatalf("store changed by a failed import (-before +after):\n%s", diff)
		}
		if ents, _ := os.ReadDir(outside); len(ents) != 0 {
			t.Fatalf("written outside the store: %v", ents)
		}
	}

	for _, l := range layers {
		t.Run("layer-"+l.name, func(t *testing.T) {
			layout := testutil.NewOCILayout(t)
			testutil.AddOCIImage(t, layout, "v", busyCfg, good, l.tar)
			check(t, "bad", layout, ImportOptions{}, l.want)
			// The same tar as a root filesystem tarball.
			p := filepath.Join(t.TempDir(), "rootfs.tar")
			os.WriteFile(p, l.tar, 0o644)
			check(t, "bad", p, ImportOptions{Format: FormatRootfsTar}, l.want)
		})
	}

	t.Run("digest-mismatch", func(t *testing.T) {
		layout := testutil.NewOCILayout(t)
		testutil.AddOCIImage(t, layout, "v", busyCfg, good, testutil.Tar(t, f("x", "x")))
		var layer digest.Digest
		rewriteManifest(t, layout, "v", func(m *ispec.Manifest) { layer = m.Layers[1].Digest })
		p := blobPath(layout, layer)
		data := mustRead(t, p)
		data[len(data)/2] ^= 0xff
		os.WriteFile(p, data, 0o644)
		check(t, "bad", layout, ImportOptions{}, "digest mismatch")
	})
	t.Run("docker-diffid-mismatch", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "d.tar")
		testutil.DockerArchive(t, p, "x:1", busyCfg, good)
		data := mustRead(t, p)
		i := strings.Index(string(data), "ok\x00")
		data[i] = 'O' // inside the layer tar's content
		os.WriteFile(p, data, 0o644)
		check(t, "bad", p, ImportOptions{}, "digest mismatch")
	})
	t.Run("truncated-gzip", func(t *testing.T) {
		gz := testutil.Gzip(t, testutil.TarDir(t, testutil.BusyboxRootfs(t)))
		p := filepath.Join(t.TempDir(), "rootfs.tar.gz")
		os.WriteFile(p, gz[:len(gz)/2], 0o644)
		check(t, "bad", p, ImportOptions{}, "unexpected EOF")
	})
	t.Run("no-manifest", func(t *testing.T) {
		check(t, "bad", testutil.NewOCILayout(t), ImportOptions{}, "index.json lists no manifest")
	})
	t.Run("several-manifests", func(t *testing.T) {
		layout := testutil.NewOCILayout(t)
		testutil.AddOCIImage(t, layout, "a", busyCfg, good)
		testutil.AddOCIImage(t, layout, "b", busyCfg, good, good)
		check(t, "bad", layout, ImportOptions{}, "index.json lists 2 manifests: name one as SOURCE:TAG (tags: a, b)")
		check(t, "bad", layout+":c", ImportOptions{}, `no manifest tagged "c" (tags: a, b)`)
	})
	t.Run("missing-blob", func(t *testing.T) {
		layout := testutil.NewOCILayout(t)
		testutil.AddOCIImage(t, layout, "v", busyCfg, good, testutil.Tar(t, f("y", "y")))
		var layer digest.Digest
		rewriteManifest(t, layout, "v", func(m *ispec.Manifest) { layer = m.Layers[1].Digest })
		os.Remove(blobPath(layout, layer))
		check(t, "bad", layout, ImportOptions{}, "blob "+layer.String()+" ("+ispec.MediaTypeImageLayerGzip+") is missing")
	})
	t.Run("unknown-layer-media-type", func(t *testing.T) {
		layout := testutil.NewOCILayout(t)
		testutil.AddOCIImage(t, layout, "v", busyCfg, good)
		rewriteManifest(t, layout, "v", func(m *ispec.Manifest) { m.Layers[0].MediaType = "application/x-foo" })
		check(t, "bad", layout, ImportOptions{}, `unknown layer media type "application/x-foo"`)
	})
	t.Run("unknown-manifest-media-type", func(t *testing.T) {
		layout := testutil.NewOCILayout(t)
		testutil.AddOCIImage(t, layout, "v", busyCfg, good)
		idx := filepath.Join(layout, "index.json")
		var ix ispec.Index
		json.Unmarshal(mustRead(t, idx), &ix)
		ix.Manifests[0].MediaType = "application/x-bar"
		data, _ := json.Marshal(ix)
		os.WriteFile(idx, data, 0o644)
		check(t, "bad", layout, ImportOptions{}, `unknown media type "application/x-bar"`)
	})
	t.Run("blob-symlink-out-of-layout", func(t *testing.T) {
		layout := testutil.NewOCILayout(t)
		testutil.AddOCIImage(t, layout, "v", busyCfg, testutil.Tar(t, f("z", "z")))
		var cfg digest.Digest
		rewriteManifest(t, layout, "v", func(m *ispec.Manifest) { cfg = m.Config.Digest })
		p := blobPath(layout, cfg)
		elsewhere := filepath.Join(t.TempDir(), "cfg")
		os.WriteFile(elsewhere, mustRead(t, p), 0o644)
		os.Remove(p)
		os.Symlink(elsewhere, p)
		check(t, "bad", layout, ImportOptions{}, "path escapes from parent")
	})
	t.Run("nonexistent-source", func(t *testing.T) {
		check(t, "bad", filepath.Join(outside, "nope"), ImportOptions{}, "no such file or directory")
		check(t, "bad", filepath.Join(outside, "nope")+":tag", ImportOptions{}, "no such file or directory")
	})
	t.Run("not-an-archive", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "junk")
		os.WriteFile(p, []byte("hello, this is not a tar archive at all"), 0o644)
		check(t, "bad", p, ImportOptions{}, "not a tar archive")
	})
	if _, err := s.Get(ctx, "base"); err != nil {
		t.Fatalf("existing snapshot after failed imports: %v", err)
	}
}

// A layer need not list an entry's parent directories: the unpack makes
// each one it has not seen, outermost first and once, as a 0755 directory
// (docker's), and leaves a parent that was an entry of another kind to
// umoci, which refuses it.
func TestImpliedDirs(t *testing.T) {
	m := impliedDirs{}
	steps := []struct {
		name string
		typ  byte
		want []string
	}{
		{"./etc/apt/sources.list", tar.TypeReg, []string{"etc/", "etc/apt/"}},
		{"etc/apt/trusted.gpg", tar.TypeReg, nil},
		{"/usr/", tar.TypeDir, nil},
		{"usr/lib/x/y", tar.TypeReg, []string{"usr/lib/", "usr/lib/x/"}},
		{"file", tar.TypeReg, nil},
		{"file/below", tar.TypeReg, nil},
		{"a/../b/c", tar.TypeReg, []string{"b/"}},
		{"./", tar.TypeDir, nil},
	}
	for _, s := range steps {
		var got []string
		for _, h := range m.before(&tar.Header{Name: s.name, Typeflag: s.typ}) {
			if h.Typeflag != tar.TypeDir || h.Mode != 0o755 {
				t.Errorf("%s: implied %s with type %c mode %o, want a 0755 directory", s.name, h.Name, h.Typeflag, h.Mode)
			}
			got = append(got, h.Name)
		}
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Errorf("implied by %s (-want +got):\n%s", s.name, diff)
		}
	}
}
