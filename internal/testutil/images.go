package testutil

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/umoci/oci/cas/dir"
	"github.com/opencontainers/umoci/oci/casext"
	"github.com/opencontainers/umoci/oci/layer"
)

// Busybox is where Debian's busybox-static installs its static binary.
const Busybox = "/bin/busybox"

// NeedBusybox returns the path of a static busybox, installing Debian's
// busybox-static as root when it is missing; otherwise the test skips (or
// fails in strict mode).
func NeedBusybox(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(Busybox); err != nil && os.Geteuid() == 0 {
		out, err := exec.Command("apt-get", "install", "-y", "busybox-static").CombinedOutput()
		if err != nil {
			t.Logf("apt-get install busybox-static: %v: %s", err, out)
		}
	}
	_, err := os.Stat(Busybox)
	Need(t, err == nil, "needs "+Busybox+" (apt-get install busybox-static)")
	return Busybox
}

// BusyboxRootfs makes a small root filesystem in a temporary directory:
// Debian's static /bin/busybox with a symlink per applet in /bin, an
// /etc/passwd and /etc/group with root, a non-root "user" (1000) and
// nobody, /etc/hostname, /tmp (1777), /root, /home/user (owned by 1000
// when the test runs as root), and empty /dev, /proc, /sys.
func BusyboxRootfs(t testing.TB) string {
	t.Helper()
	bb := NeedBusybox(t)
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "home/user", "dev", "proc", "sys", "var/tmp", "tmp", "run"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for d, mode := range map[string]os.FileMode{"tmp": 0o777 | os.ModeSticky, "var/tmp": 0o777 | os.ModeSticky, "root": 0o700} {
		if err := os.Chmod(filepath.Join(root, d), mode); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatalf("%s --list: %v", bb, err)
	}
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd":     "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":      "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n",
		"etc/hostname":   "busybox\n",
		"etc/hosts":      "127.0.0.1\tlocalhost\n",
		"etc/os-release": "NAME=\"busybox\"\nID=busybox\n",
	}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(filepath.Join(root, "home/user"), 1000, 1000); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TarDir returns an uncompressed layer tar of directory dir, made with
// umoci's layer generator (rootless: every file owned by root).
func TarDir(t testing.TB, dir string) []byte {
	t.Helper()
	r := layer.GenerateInsertLayer(dir, "/", false, &layer.RepackOptions{
		OnDiskFormat: layer.DirRootfs{MapOptions: layer.MapOptions{Rootless: os.Geteuid() != 0}},
	})
	defer func() { _ = r.Close() }() // the generator's errors come out of ReadAll
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("tar %s: %v", dir, err)
	}
	return data
}

// TarFile is one entry of a tar made by Tar: a header and, for regular
// files, its content (Hdr.Size is set from Body when zero).
type TarFile struct {
	Hdr  tar.Header
	Body string
}

// Tar builds an uncompressed tar of the entries as given, hostile ones
// included. Typeflag defaults to a regular file, Mode to 0644 (0755 for
// directories), ModTime to a fixed time.
func Tar(t testing.TB, files ...TarFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := f.Hdr
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1700000000, 0)
		}
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = int64(len(f.Body))
		}
		if h.Format == tar.FormatUnknown && (len(h.PAXRecords) > 0 || len(h.Xattrs) > 0) { //nolint:staticcheck // umoci reads Xattrs
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar %s: %v", h.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := io.WriteString(tw, f.Body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Gzip compresses data deterministically (same input, same output).
func Gzip(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(data) // an error sticks: Close below returns it
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// OCILayout makes an OCI image layout in a temporary directory holding one
// image, tagged tag, whose single layer is directory rootfs and whose
// config is cfg. It returns the layout's directory.
func OCILayout(t testing.TB, rootfs, tag string, cfg ispec.ImageConfig) string {
	t.Helper()
	layout := NewOCILayout(t)
	AddOCIImage(t, layout, tag, cfg, TarDir(t, rootfs))
	return layout
}

// NewOCILayout creates an empty OCI image layout in a temporary directory.
func NewOCILayout(t testing.TB) string {
	t.Helper()
	layout := filepath.Join(t.TempDir(), "oci")
	if err := dir.Create(layout); err != nil {
		t.Fatal(err)
	}
	return layout
}

// AddOCIImage adds an image tagged tag to the OCI layout, with config cfg
// and the given layers (uncompressed tars, bottom first; each is stored
// gzipped, deterministically, so equal layers are shared). It returns the
// manifest's digest.
func AddOCIImage(t testing.TB, layout, tag string, cfg ispec.ImageConfig, layers ...[]byte) digest.Digest {
	t.Helper()
	ctx := context.Background()
	ce, err := dir.Open(layout)
	if err != nil {
		t.Fatal(err)
	}
	e := casext.NewEngine(ce)
	defer func() { _ = e.Close() }() // a dir engine: every write above was checked
	img := ispec.Image{
		Platform: ispec.Platform{OS: "linux", Architecture: goruntime.GOARCH},
		Config:   cfg,
		RootFS:   ispec.RootFS{Type: "layers"},
	}
	var m ispec.Manifest
	m.SchemaVersion = 2
	m.MediaType = ispec.MediaTypeImageManifest
	for _, l := range layers {
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, digest.FromBytes(l))
		d, n, err := e.PutBlob(ctx, bytes.NewReader(Gzip(t, l)))
		if err != nil {
			t.Fatal(err)
		}
		m.Layers = append(m.Layers, ispec.Descriptor{MediaType: ispec.MediaTypeImageLayerGzip, Digest: d, Size: n})
	}
	d, n, err := e.PutBlobJSON(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	m.Config = ispec.Descriptor{MediaType: ispec.MediaTypeImageConfig, Digest: d, Size: n}
	md, mn, err := e.PutBlobJSON(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.UpdateReference(ctx, tag, ispec.Descriptor{MediaType: ispec.MediaTypeImageManifest, Digest: md, Size: mn}); err != nil {
		t.Fatal(err)
	}
	return md
}

// OCIArchive writes the OCI layout directory as an oci-archive tar at dst.
func OCIArchive(t testing.TB, layout, dst string) {
	t.Helper()
	var files []TarFile
	err := filepath.Walk(layout, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(layout, p)
		if rel == "." || strings.HasPrefix(filepath.Base(p), ".umoci-") {
			return nil
		}
		if fi.IsDir() {
			files = append(files, TarFile{Hdr: tar.Header{Name: rel + "/", Typeflag: tar.TypeDir}})
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files = append(files, TarFile{Hdr: tar.Header{Name: rel}, Body: string(data)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, Tar(t, files...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// DockerArchive writes a `docker save` tar (the classic format: <id>.json
// config, <layer id>/layer.tar, manifest.json, repositories) of one image
// tagged repoTag ("name:tag") with config cfg and the given uncompressed
// layer tars, bottom first.
func DockerArchive(t testing.TB, dst, repoTag string, cfg ispec.ImageConfig, layers ...[]byte) {
	t.Helper()
	img := ispec.Image{
		Platform: ispec.Platform{OS: "linux", Architecture: goruntime.GOARCH},
		Config:   cfg,
		RootFS:   ispec.RootFS{Type: "layers"},
	}
	var files []TarFile
	var paths []string
	for i, l := range layers {
		d := digest.FromBytes(l)
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, d)
		id := digest.FromString(fmt.Sprintf("layer %d %s", i, d)).Encoded()
		files = append(files,
			TarFile{Hdr: tar.Header{Name: id + "/", Typeflag: tar.TypeDir}},
			TarFile{Hdr: tar.Header{Name: id + "/VERSION"}, Body: "1.0"},
			TarFile{Hdr: tar.Header{Name: id + "/layer.tar"}, Body: string(l)})
		paths = append(paths, id+"/layer.tar")
	}
	cfgData, err := json.Marshal(img)
	if err != nil {
		t.Fatal(err)
	}
	cfgName := digest.FromBytes(cfgData).Encoded() + ".json"
	man, _ := json.Marshal([]map[string]any{{"Config": cfgName, "RepoTags": []string{repoTag}, "Layers": paths}})
	name, tag, _ := strings.Cut(repoTag, ":")
	repos, _ := json.Marshal(map[string]map[string]string{name: {tag: strings.TrimSuffix(cfgName, ".json")}})
	files = append(files,
		TarFile{Hdr: tar.Header{Name: cfgName}, Body: string(cfgData)},
		TarFile{Hdr: tar.Header{Name: "manifest.json"}, Body: string(man)},
		TarFile{Hdr: tar.Header{Name: "repositories"}, Body: string(repos)})
	if err := os.WriteFile(dst, Tar(t, files...), 0o644); err != nil {
		t.Fatal(err)
	}
}
