package snapshot

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/testutil"
)

func TestExport(t *testing.T) {
	ctx := t.Context()
	s := openStore(t)
	layout := testutil.OCILayout(t, testutil.BusyboxRootfs(t), "v1", busyCfg)
	orig, err := s.Import(ctx, "bb", layout, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	dirOut := filepath.Join(tmp, "out")
	tarOut := filepath.Join(tmp, "out.tar")
	if err := s.Export(ctx, "bb", dirOut, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Export(ctx, "bb", dirOut, ExportOptions{Tag: "second"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Export(ctx, "bb", tarOut, ExportOptions{Format: FormatOCIArchive}); err != nil {
		t.Fatal(err)
	}
	// Every file of the layout is readable as its oci-layout file is (umoci
	// wrote index.json 0600: another user's podman or skopeo could not
	// read which images it holds).
	layoutSt, err := os.Stat(filepath.Join(dirOut, "oci-layout"))
	if err != nil {
		t.Fatal(err)
	}
	if err := filepath.WalkDir(dirOut, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		st, err := os.Stat(p)
		if err == nil && st.Mode().Perm() != layoutSt.Mode().Perm() {
			t.Errorf("%s: mode %v, want %v as oci-layout's", p, st.Mode().Perm(), layoutSt.Mode().Perm())
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Export(ctx, "bb", tarOut, ExportOptions{Format: FormatOCIArchive}); !errors.Is(err, errdefs.ErrExists) {
		t.Fatalf("export over an existing archive = %v, want ErrExists", err)
	}
	if err := s.Export(ctx, "nope", dirOut, ExportOptions{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("export of a missing snapshot = %v, want ErrNotFound", err)
	}
	s2 := openStore(t)
	for name, src := range map[string]string{"a": dirOut + ":bb", "b": dirOut + ":second", "c": tarOut} {
		sn, err := s2.Import(ctx, name, src, ImportOptions{})
		if err != nil {
			t.Fatalf("re-import %s: %v", src, err)
		}
		if sn.Digest != orig.Digest {
			t.Errorf("re-imported %s digest %s, want %s", src, sn.Digest, orig.Digest)
		}
	}
	if skopeo, err := exec.LookPath("skopeo"); err == nil {
		for _, ref := range []string{"oci:" + dirOut + ":bb", "oci-archive:" + tarOut} {
			if out, err := exec.Command(skopeo, "inspect", "--raw", ref).CombinedOutput(); err != nil {
				t.Errorf("skopeo inspect %s: %v: %s", ref, err, out)
			}
		}
	}
}

// Export into an existing empty directory (mktemp -d's) makes the layout
// there; a directory with other files in it is refused, untouched.
func TestExportIntoExistingDir(t *testing.T) {
	ctx := t.Context()
	s := openStore(t)
	layout := testutil.OCILayout(t, testutil.BusyboxRootfs(t), "v1", busyCfg)
	orig, err := s.Import(ctx, "bb", layout, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	if err := s.Export(ctx, "bb", empty, ExportOptions{}); err != nil {
		t.Fatalf("export into an empty directory: %v", err)
	}
	ents, err := os.ReadDir(empty)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{"blobs", "index.json", "oci-layout"}; !slices.Equal(names, want) {
		t.Errorf("the layout holds %v, want %v", names, want)
	}
	sn, err := openStore(t).Import(ctx, "again", empty+":bb", ImportOptions{})
	if err != nil {
		t.Fatalf("re-import: %v", err)
	}
	if sn.Digest != orig.Digest {
		t.Errorf("re-imported digest %s, want %s", sn.Digest, orig.Digest)
	}
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "notes"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = s.Export(ctx, "bb", other, ExportOptions{})
	if !errors.Is(err, errdefs.ErrExists) || !strings.Contains(err.Error(), "nor an OCI image layout") {
		t.Errorf("export into a directory of other files = %v, want ErrExists saying it is no layout", err)
	}
	if ents, _ := os.ReadDir(other); len(ents) != 1 {
		t.Errorf("the refused directory holds %d entries, want its one file", len(ents))
	}
}
