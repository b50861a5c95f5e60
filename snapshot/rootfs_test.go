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
	out, err := io.ReadAll(rewriteOwners(bytes.NewReader(in), func(name string, uid, gid int) (int, int) {
		if h, ok := host[name]; ok {
			return h[0], h[1]
		}
		return uid, gid
	}))
	if err != nil {
		t.Fatal(err)
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
