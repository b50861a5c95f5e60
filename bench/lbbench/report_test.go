package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeepStderr: a batch whose runs fail leaves what its commands said
// on stderr in the mode's work dir, and fileTail reads its end back for
// results.json.
func TestKeepStderr(t *testing.T) {
	m := &mode{dir: t.TempDir()}
	it := &item{key: "batch50/x", argv: batch(3, 2, []string{"sh", "-c", "echo failed {} >&2; exit 1"})}
	keepStderr(m, it)
	if it.stderr != filepath.Join(m.dir, "stderr-batch50-x.log") {
		t.Fatalf("stderr kept in %q", it.stderr)
	}
	if err := exec.Command(it.argv[0], it.argv[1:]...).Run(); err == nil {
		t.Fatal("a batch of failing commands exited 0")
	}
	got := fileTail(it.stderr, 4096)
	for _, want := range []string{"failed 1", "failed 2", "failed 3"} {
		if !strings.Contains(got, want) {
			t.Errorf("kept stderr %q lacks %q", got, want)
		}
	}
	if tail := fileTail(it.stderr, 5); len(tail) != 5 || !strings.HasSuffix(got, tail) {
		t.Errorf("fileTail(5) = %q, not the last 5 bytes of %q", tail, got)
	}
	if fileTail(filepath.Join(m.dir, "none"), 10) != "" {
		t.Error("fileTail of a missing file is not empty")
	}
}
