//go:build linux

package integration

import (
	"encoding/json"
	"testing"

	"github.com/beamhop/lightbox"
)

// A recipe whose steps change nothing makes an image that lists one
// empty layer several times, as docker's does: its later steps and its
// sandboxes still run (overlayfs refuses one directory as two layers,
// with ELOOP, "too many levels of symbolic links"), and inspect still
// counts every layer of the manifest.
func TestBuildRepeatedLayer(t *testing.T) {
	root, _ := newStore(t)
	ctx := buildContextDir(t, "FROM busybox\nRUN true\nRUN :\nRUN echo made > /made\n", map[string]string{})
	if res := lb(t, root, "", "snapshot", "build", "-q", "-t", "rep", "--network", "none", ctx); res.code != 0 {
		t.Fatalf("build with two steps that change nothing: exit %d\n%s", res.code, res.stderr)
	}
	if got := shellIn(t, root, "rep", nil, "cat /made"); got != "made\n" {
		t.Errorf("run rep cat /made = %q, want %q", got, "made\n")
	}
	var sn lightbox.Snapshot
	if err := json.Unmarshal([]byte(lbOK(t, root, "snapshot", "inspect", "rep")), &sn); err != nil {
		t.Fatal(err)
	}
	if sn.Layers != 4 {
		t.Errorf("inspect rep: layers = %d, want 4 (busybox's and one per RUN)", sn.Layers)
	}
	// A commit of a sandbox that changed nothing, twice, does the same.
	lbOK(t, root, "run", "--keep", "--name", "c1", "--network", "none", "rep", "true")
	lbOK(t, root, "commit", "c1", "rep2")
	lbOK(t, root, "run", "--keep", "--name", "c2", "--network", "none", "rep2", "true")
	lbOK(t, root, "commit", "c2", "rep3")
	lbOK(t, root, "rm", "c1", "c2")
	if got := shellIn(t, root, "rep3", nil, "cat /made"); got != "made\n" {
		t.Errorf("run rep3 cat /made = %q, want %q", got, "made\n")
	}
}
