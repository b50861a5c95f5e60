//go:build linux

package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
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

// COPY and COPY --from of an empty directory make the destination, as
// docker does: as the source directory is, or plain (0755, --chown's)
// when the destination ends in "/". They used to make nothing, and the
// next step found no such directory.
func TestBuildCopyEmptyDir(t *testing.T) {
	root, _ := newStore(t)
	ctx := buildContextDir(t, `FROM busybox AS a
RUN mkdir -p /e && chmod 700 /e
FROM busybox
COPY empty /ctx-empty
COPY --chown=7:8 empty /ctx-slash/
COPY --from=a /e /from-empty
COPY --from=a --chown=7:8 /e /from-slash/
COPY empty /tmp
`, map[string]string{})
	if err := os.Mkdir(filepath.Join(ctx, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(ctx, "empty"), 0o700); err != nil { // whatever the umask
		t.Fatal(err)
	}
	lbOK(t, root, "snapshot", "build", "-q", "-t", "empties", "--network", "none", ctx)
	got := shellIn(t, root, "empties", nil, `for d in /ctx-empty /ctx-slash /from-empty /from-slash /tmp; do stat -c '%n %F %a %u:%g' $d; done`)
	// A destination the image has (/tmp) is left as it is.
	tmp := shellIn(t, root, "busybox", nil, `stat -c '%n %F %a %u:%g' /tmp`)
	want := "/ctx-empty directory 700 0:0\n/ctx-slash directory 755 7:8\n/from-empty directory 700 0:0\n/from-slash directory 755 7:8\n" + tmp
	if got != want {
		t.Errorf("the built snapshot shows:\n%s\nwant:\n%s", got, want)
	}
}
