//go:build linux

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAPIServerExportDestination: snapshot.export (format oci, an image
// layout directory) to a destination that is a file, a link to a file,
// or a link to nothing is exists, and the message says what is there;
// nothing is written through the link. (Before: an error code "error"
// naming oci-layout inside a file, or a failed mkdir.)
func TestAPIServerExportDestination(t *testing.T) {
	root, _ := newStore(t)
	out := t.TempDir()
	file := filepath.Join(out, "file")
	if err := os.WriteFile(file, []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(file, filepath.Join(out, "tofile")); err != nil {
		t.Fatal(err)
	}
	nowhere := filepath.Join(out, "nowhere")
	if err := os.Symlink(nowhere, filepath.Join(out, "dangling")); err != nil {
		t.Fatal(err)
	}
	p := startAPI(t, root)
	for dst, want := range map[string]string{
		"file":     "is a file, not a directory",
		"tofile":   "is a file, not a directory",
		"dangling": "is a symbolic link to nothing",
	} {
		e := p.fails("exists", "snapshot.export", map[string]any{"name": "busybox", "destination": filepath.Join(out, dst)})
		if !strings.Contains(e.Message, want) || e.Code != -32002 {
			t.Errorf("snapshot.export to %s: %d %q; want -32002 saying it %s", dst, e.Code, e.Message, want)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "mine\n" {
		t.Errorf("the file at the destination: %q, %v; want it untouched", b, err)
	}
	if _, err := os.Lstat(nowhere); !os.IsNotExist(err) {
		t.Errorf("the dangling link's target: %v; want nothing made there", err)
	}
	if err := p.close(); err != nil {
		t.Fatalf("lightbox api exit: %v; stderr: %s", err, p.stderr())
	}
}
