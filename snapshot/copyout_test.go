//go:build linux

package snapshot

import (
	"archive/tar"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/reexec"
	"github.com/beamhop/lightbox/internal/testutil"
)

// TestCopyOutXattrs copies files out of an image (COPY --from) whose layer
// gives them a user.* xattr and a file capability, read from the lone
// layer and from an overlay of two: the copy's entries carry both, and
// none of overlayfs's markers. A store with a single id (umoci's rootless
// unpack, which records owners in user.rootlesscontainers) gives the
// copy the image's owners, not that xattr.
func TestCopyOutXattrs(t *testing.T) {
	mappings := map[string]idmap.Mapping{"detected": testMapping(t)}
	if os.Geteuid() != 0 {
		mappings["single"] = idmap.Mapping{
			UIDs: []idmap.Range{{ContainerID: 0, HostID: uint32(os.Getuid()), Size: 1}},
			GIDs: []idmap.Range{{ContainerID: 0, HostID: uint32(os.Getgid()), Size: 1}},
		}
	}
	// A second layer that makes a directory opaque: a marker a lone
	// layer stores as user.overlay.opaque, which must not be copied.
	top := testutil.Tar(t,
		testutil.TarFile{Hdr: tar.Header{Name: "home/", Typeflag: tar.TypeDir, Mode: 0o755}},
		testutil.TarFile{Hdr: tar.Header{Name: "home/.wh..wh..opq", Typeflag: tar.TypeReg}},
		testutil.TarFile{Hdr: tar.Header{Name: "home/new", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3}, Body: "new"},
	)
	layout := testutil.NewOCILayout(t)
	testutil.AddOCIImage(t, layout, "one", busyCfg, ownersLayer(t))
	testutil.AddOCIImage(t, layout, "two", busyCfg, ownersLayer(t), top)
	for mname, m := range mappings {
		t.Run(mname, func(t *testing.T) {
			ctx := t.Context()
			s := openStoreAt(t, t.TempDir(), m, nil)
			for _, tag := range []string{"one", "two"} {
				sn, err := s.Import(ctx, tag, layout+":"+tag, ImportOptions{})
				if err != nil {
					t.Fatal(err)
				}
				r, err := s.CopyOut(ctx, CopyRequest{Layers: sn.Layers, Sources: []string{"/bin/ping", "/var/cache/apt", "/home"}, Dest: "/out", DestDir: true})
				if err != nil {
					t.Fatal(err)
				}
				got := map[string]*tar.Header{}
				tr := tar.NewReader(r)
				for {
					hdr, err := tr.Next()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						t.Fatalf("%s: read the copy: %v", tag, err)
					}
					got[hdr.Name] = hdr
				}
				if err := r.Close(); err != nil {
					t.Fatalf("%s: %v", tag, err)
				}
				apt, ping, home := got["out/f"], got["out/ping"], got["out/u/"]
				if tag == "two" {
					home = got["out/new"]
				}
				if apt == nil || ping == nil || home == nil {
					t.Fatalf("%s: the copy holds %v, want out/ping, out/f and what /home has", tag, keys(got))
				}
				if v := apt.PAXRecords["SCHILY.xattr.user.note"]; v != "hello" {
					t.Errorf("%s: user.note of the copied file = %q, want hello", tag, v)
				}
				if apt.Uid != 100 || apt.Gid != 65534 {
					t.Errorf("%s: owner of the copied file = %d:%d, want 100:65534 (the image's)", tag, apt.Uid, apt.Gid)
				}
				if !m.Single() {
					// A single id cannot hold a capability (umoci's rootless
					// unpack drops it; TestOwnership).
					c := ping.PAXRecords["SCHILY.xattr.security.capability"]
					if len(c) < 8 || binary.LittleEndian.Uint32([]byte(c[4:8])) != 1<<13 {
						t.Errorf("%s: security.capability of the copied file = %x, want CAP_NET_RAW", tag, c)
					}
				}
				for name, hdr := range got {
					for k := range hdr.PAXRecords {
						switch k {
						case "SCHILY.xattr.user.note", "SCHILY.xattr.security.capability":
						default:
							if len(k) > 13 && k[:13] == "SCHILY.xattr." {
								t.Errorf("%s: %s carries %s, which a copy must not", tag, name, k)
							}
						}
					}
				}
			}
		})
	}
}

// TestHelpersFromLargeProcess: from a process holding more than
// reexec.LargeAnon, the helpers (rootless: the unpack with a layer on its
// stdin, the upper dir's walk and the copy-out through a StdoutPipe, a
// rootfs tarred through one) are cloned by reexec's intermediate, and do
// what they do from a small process.
func TestHelpersFromLargeProcess(t *testing.T) {
	testutil.Ballast(t, reexec.LargeAnon+32<<20)
	if !reexec.Large() {
		t.Fatal("reexec.Large() = false with the ballast")
	}
	t.Run("ImportFormats", TestImportFormats)
	t.Run("Commit", TestCommit)
	t.Run("CopyOutXattrs", TestCopyOutXattrs)
	t.Run("ImportRootOwnedSystemDir", TestImportRootOwnedSystemDir)
}
