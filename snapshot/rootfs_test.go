package snapshot

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/testutil"
)

// TestImportRootOwnedSystemDir imports a root-owned, world-readable
// directory of the system (Debian's /usr/share/common-licenses, from
// base-files) as a root filesystem, in both passes: its files are root's
// inside, so on the host the unpacked layer belongs to the id the store
// maps root to (this process's user when rootless).
func TestImportRootOwnedSystemDir(t *testing.T) {
	const dir = "/usr/share/common-licenses"
	fi, err := os.Stat(filepath.Join(dir, "GPL-3"))
	testutil.Need(t, err == nil, "needs "+dir+"/GPL-3 (Debian's base-files)")
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 {
		t.Fatalf("%s/GPL-3 is owned by uid %d, want root's", dir, st.Uid)
	}
	mappings := map[string]idmap.Mapping{"detected": testMapping(t)}
	if os.Geteuid() != 0 {
		mappings["single"] = idmap.Mapping{
			UIDs: []idmap.Range{{ContainerID: 0, HostID: uint32(os.Getuid()), Size: 1}},
			GIDs: []idmap.Range{{ContainerID: 0, HostID: uint32(os.Getgid()), Size: 1}},
		}
	}
	for mname, m := range mappings {
		t.Run(mname, func(t *testing.T) {
			s := openStoreAt(t, t.TempDir(), m, nil)
			sn, err := s.Import(t.Context(), "licenses", dir, ImportOptions{Format: FormatRootfsDir})
			if err != nil {
				t.Fatal(err)
			}
			if len(sn.Layers) != 1 {
				t.Fatalf("layers = %v, want one", sn.Layers)
			}
			fi, err := os.Lstat(filepath.Join(sn.Layers[0], "GPL-3"))
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if want := m.UIDs[0].HostID; st.Uid != want {
				t.Errorf("owner of GPL-3 in the layer = %d, want %d (root inside)", st.Uid, want)
			}
			got, err := os.ReadFile(filepath.Join(sn.Layers[0], "GPL-3"))
			want, _ := os.ReadFile(filepath.Join(dir, "GPL-3"))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("GPL-3 in the layer differs from the source (%v)", err)
			}
		})
	}
}

// TestRewriteOwners checks the tar copy that sets layer owners: every
// entry's owner comes from the function, everything else is kept.
func TestRewriteOwners(t *testing.T) {
	in := testutil.Tar(t,
		testutil.TarFile{Hdr: tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755, Uid: 65534, Gid: 65534}},
		testutil.TarFile{Hdr: tar.Header{Name: "etc/motd", Mode: 0o644, Uid: 65534, Gid: 5}, Body: "hi\n"},
		testutil.TarFile{Hdr: tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox", Uid: 7, Gid: 7}},
	)
	host := map[string][2]int{"etc": {0, 0}, "etc/motd": {33, 44}}
	r, content := rewriteOwners(bytes.NewReader(in), func(name string, uid, gid int) (int, int) {
		if h, ok := host[name]; ok {
			return h[0], h[1]
		}
		return uid, gid
	})
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if *content != 3 {
		t.Errorf("content size = %d, want 3 (etc/motd)", *content)
	}
	tr := tar.NewReader(bytes.NewReader(out))
	want := []struct {
		name     string
		uid, gid int
		body     string
	}{{"etc/", 0, 0, ""}, {"etc/motd", 33, 44, "hi\n"}, {"bin/sh", 7, 7, ""}}
	for _, w := range want {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("entry %s: %v", w.name, err)
		}
		body, _ := io.ReadAll(tr)
		if hdr.Name != w.name || hdr.Uid != w.uid || hdr.Gid != w.gid || string(body) != w.body {
			t.Errorf("entry = %s %d:%d %q, want %s %d:%d %q", hdr.Name, hdr.Uid, hdr.Gid, body, w.name, w.uid, w.gid, w.body)
		}
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("after the last entry: %v, want EOF", err)
	}
}

// TestUnpackedSize (issue 11): a snapshot's Size is its unpacked size, the
// same for one tree imported as a directory, as a plain, gzipped or zstd
// tarball and as an OCI image; StoredSize is what its blobs take. GC
// drops the size record with the blob.
func TestUnpackedSize(t *testing.T) {
	ctx := t.Context()
	tree := filepath.Join(t.TempDir(), "tree")
	files := map[string]int{"big": 256 << 10, "etc/small": 1000, "etc/empty": 0}
	var want int64
	for name, n := range files {
		p := filepath.Join(tree, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, bytes.Repeat([]byte("lightbox "), n/9+1)[:n], 0o644); err != nil {
			t.Fatal(err)
		}
		want += int64(n)
	}
	if err := os.Symlink("big", filepath.Join(tree, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(tree, "big"), filepath.Join(tree, "hardlink")); err != nil {
		t.Fatal(err)
	}
	layerTar := testutil.TarDir(t, tree)
	tmp := t.TempDir()
	plain := filepath.Join(tmp, "rootfs.tar")
	gz := filepath.Join(tmp, "rootfs.tar.gz")
	if err := os.WriteFile(plain, layerTar, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gz, testutil.Gzip(t, layerTar), 0o644); err != nil {
		t.Fatal(err)
	}
	layout := testutil.NewOCILayout(t)
	testutil.AddOCIImage(t, layout, "v", busyCfg, layerTar)

	s := openStore(t)
	sizes := map[string]*Snapshot{}
	for name, src := range map[string]string{"dir": tree, "plain": plain, "gz": gz, "oci": layout + ":v"} {
		sn, err := s.Import(ctx, name, src, ImportOptions{})
		if err != nil {
			t.Fatalf("import %s: %v", name, err)
		}
		sizes[name] = sn
	}
	for name, sn := range sizes {
		if sn.Size != want {
			t.Errorf("%s: Size = %d, want %d (the files' sizes)", name, sn.Size, want)
		}
	}
	// Stored sizes are the blobs: the gzipped directory layer is far
	// smaller than its content, the plain tarball larger.
	if d := sizes["dir"]; d.StoredSize <= 0 || d.StoredSize >= want/4 {
		t.Errorf("dir: StoredSize = %d, want the compressed blobs (well under %d)", d.StoredSize, want)
	}
	if p := sizes["plain"]; p.StoredSize <= want {
		t.Errorf("plain: StoredSize = %d, want over %d (the tar as stored)", p.StoredSize, want)
	}
	// List agrees, and reads the recorded sizes (an OCI layer's was
	// recorded by its first describe).
	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, sn := range list {
		if sn.Size != want || sn.StoredSize != sizes[sn.Name].StoredSize {
			t.Errorf("List: %s size %d stored %d, want %d and %d", sn.Name, sn.Size, sn.StoredSize, want, sizes[sn.Name].StoredSize)
		}
	}
	records, _ := os.ReadDir(s.sizesDir())
	if len(records) == 0 {
		t.Fatal("no layer size records")
	}
	for name := range sizes {
		if err := s.Remove(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if records, _ := os.ReadDir(s.sizesDir()); len(records) != 0 {
		t.Errorf("size records after every snapshot is removed and collected: %v", records)
	}
}

// TestTarballRootOwnedByOther: a rootfs tarball whose root directory
// belongs to an id other than root (a tarball an ordinary user made of
// their own tree records their uid) imports, keeps that owner inside, and
// is removed and collected again, in both passes (rootless, the layer's
// root then belongs to a subordinate id: renaming it into and out of
// place needs the user namespace).
func TestTarballRootOwnedByOther(t *testing.T) {
	ctx := t.Context()
	m := testMapping(t)
	const uid = 1000
	if os.Geteuid() != 0 && !m.Subordinate {
		// The single-id mapping has no uid 1000 inside.
		testutil.Need(t, false, "needs a subordinate id range")
	}
	tarball := filepath.Join(t.TempDir(), "rootfs.tar")
	err := os.WriteFile(tarball, testutil.Tar(t,
		testutil.TarFile{Hdr: tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755, Uid: uid, Gid: uid}},
		testutil.TarFile{Hdr: tar.Header{Name: "./home/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: uid, Gid: uid}},
		testutil.TarFile{Hdr: tar.Header{Name: "./home/f", Mode: 0o600, Uid: uid, Gid: uid}, Body: "mine\n"},
	), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	s := openStoreAt(t, t.TempDir(), m, nil)
	sn, err := s.Import(ctx, "user-tree", tarball, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(sn.Layers[0])
	if err != nil {
		t.Fatal(err)
	}
	hostUID := uint32(uid)
	for _, r := range m.UIDs {
		if uid >= int(r.ContainerID) && uint64(uid) < uint64(r.ContainerID)+uint64(r.Size) {
			hostUID = r.HostID + uint32(uid) - r.ContainerID
		}
	}
	if got := fi.Sys().(*syscall.Stat_t).Uid; got != hostUID {
		t.Errorf("owner of the layer's root = %d, want %d (uid %d inside)", got, hostUID, uid)
	}
	if err := s.Remove(ctx, "user-tree"); err != nil {
		t.Fatal(err)
	}
	if err := s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sn.Layers[0]); !os.IsNotExist(err) {
		t.Errorf("layer after remove and gc: %v", err)
	}
}
