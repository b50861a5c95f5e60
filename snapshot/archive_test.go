package snapshot

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beamhop/lightbox/internal/testutil"
)

// TestArchiveLinks checks the links `docker save` uses to share layers
// resolve inside the archive, and those leading out do not.
func TestArchiveLinks(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.tar")
	os.WriteFile(p, testutil.Tar(t,
		testutil.TarFile{Hdr: tar.Header{Name: "abc/layer.tar"}, Body: "layer"},
		testutil.TarFile{Hdr: tar.Header{Name: "def/layer.tar", Typeflag: tar.TypeSymlink, Linkname: "../abc/layer.tar"}},
		testutil.TarFile{Hdr: tar.Header{Name: "./ghi/layer.tar", Typeflag: tar.TypeLink, Linkname: "def/layer.tar"}},
		testutil.TarFile{Hdr: tar.Header{Name: "out", Typeflag: tar.TypeSymlink, Linkname: "../../etc/passwd"}},
		testutil.TarFile{Hdr: tar.Header{Name: "loop", Typeflag: tar.TypeSymlink, Linkname: "loop"}},
	), 0o644)
	a, err := openArchive(p)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	for _, n := range []string{"abc/layer.tar", "def/layer.tar", "ghi/layer.tar"} {
		r, err := a.openFile(n)
		if err != nil {
			t.Fatalf("open %s: %v", n, err)
		}
		if data, _ := io.ReadAll(r); string(data) != "layer" {
			t.Fatalf("%s = %q, want layer", n, data)
		}
	}
	for n, want := range map[string]string{"out": "leads out of the archive", "loop": "too many links", "nope": "no entry"} {
		if _, err := a.openFile(n); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("open %s = %v, want an error containing %q", n, err, want)
		}
	}
}
