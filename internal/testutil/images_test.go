package testutil

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/umoci/oci/cas/dir"
	"github.com/opencontainers/umoci/oci/casext"
)

func TestBusyboxRootfs(t *testing.T) {
	root := BusyboxRootfs(t)
	out, err := exec.Command(filepath.Join(root, "bin/sh"), "-c", "echo ok").Output()
	if err != nil || string(out) != "ok\n" {
		t.Fatalf("bin/sh -c 'echo ok' = %q, %v", out, err)
	}
	fi, err := os.Stat(filepath.Join(root, "tmp"))
	if err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Fatalf("tmp: %v, %v; want 1777", fi.Mode(), err)
	}
	data, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil || !bytes.Contains(data, []byte("\nuser:x:1000:1000:")) {
		t.Fatalf("etc/passwd = %q, %v", data, err)
	}
}

func TestOCILayout(t *testing.T) {
	layout := OCILayout(t, BusyboxRootfs(t), "v1", ispec.ImageConfig{Cmd: []string{"/bin/sh"}})
	ce, err := dir.Open(layout)
	if err != nil {
		t.Fatal(err)
	}
	e := casext.NewEngine(ce)
	defer e.Close()
	ds, err := e.ResolveReference(t.Context(), "v1")
	if err != nil || len(ds) != 1 {
		t.Fatalf("resolve v1: %v, %v", ds, err)
	}
	// The archive of it holds the layout's files.
	p := filepath.Join(t.TempDir(), "o.tar")
	OCIArchive(t, layout, p)
	if names := tarNames(t, p); !names["index.json"] || !names["oci-layout"] {
		t.Fatalf("oci-archive entries = %v", names)
	}
}

func TestDockerArchive(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d.tar")
	layer := Tar(t, TarFile{Hdr: tar.Header{Name: "hello"}, Body: "hi"})
	DockerArchive(t, p, "x:1", ispec.ImageConfig{}, layer)
	f, _ := os.Open(p)
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no manifest.json: %v", err)
		}
		if h.Name != "manifest.json" {
			continue
		}
		var m []struct{ RepoTags, Layers []string }
		data, _ := io.ReadAll(tr)
		if err := json.Unmarshal(data, &m); err != nil || len(m) != 1 || m[0].RepoTags[0] != "x:1" || len(m[0].Layers) != 1 {
			t.Fatalf("manifest.json = %s, %v", data, err)
		}
		return
	}
}

func tarNames(t *testing.T, p string) map[string]bool {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names[h.Name] = true
	}
}
