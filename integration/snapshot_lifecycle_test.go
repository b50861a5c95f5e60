//go:build linux

package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
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

// A kept (exited) sandbox holds no lease on its snapshot, so the name can
// be replaced meanwhile; its commit then used to put the sandbox's
// changes on the new image, silently: files the sandbox saw were gone
// and others it never saw were there. It is refused now, saying why. A
// replace by the very same image changes nothing (not even while a
// sandbox uses it), and the commit goes ahead.
func TestCommitAfterParentReplaced(t *testing.T) {
	root, _ := newStore(t)
	tmp := t.TempDir()
	rootfs := testBusybox(t)
	lbOK(t, root, "snapshot", "import", "par", rootfs)
	lbOK(t, root, "run", "--keep", "--name", "other", "--network", "none", "par", "sh", "-c", "echo other > /other")
	lbOK(t, root, "commit", "other", "otherimg")
	lbOK(t, root, "snapshot", "export", "otherimg", filepath.Join(tmp, "other.tar"))
	lbOK(t, root, "run", "--keep", "--name", "k", "--network", "none", "par", "sh", "-c", "echo up > /up")
	// Another image under the name: k's commit is refused.
	lbOK(t, root, "snapshot", "import", "--replace", "par", filepath.Join(tmp, "other.tar"))
	res := lb(t, root, "", "commit", "k", "wrong")
	if res.code != 125 || !strings.Contains(res.stderr, "snapshot par was replaced") {
		t.Errorf("commit of k after par was replaced: exit %d, stderr %q; want 125 saying par was replaced", res.code, res.stderr)
	}
	if r := lb(t, root, "", "snapshot", "inspect", "wrong"); r.code == 0 {
		t.Errorf("the refused commit made snapshot wrong, which shows:\n%s", shellIn(t, root, "wrong", nil, "ls /other /up"))
	}
	// The same image again: a no-op, allowed while a sandbox runs it,
	// and a commit from before it goes ahead.
	lbOK(t, root, "run", "--keep", "--name", "k2", "--network", "none", "par", "sh", "-c", "echo up > /up")
	before := lbOK(t, root, "snapshot", "inspect", "par")
	lbOK(t, root, "run", "-d", "--name", "busy", "--network", "none", "par", "sleep", "1000")
	lbOK(t, root, "snapshot", "import", "--replace", "par", filepath.Join(tmp, "other.tar"))
	if after := lbOK(t, root, "snapshot", "inspect", "par"); after != before {
		t.Errorf("replaced by the same image, inspect par shows:\n%s\nwant as before:\n%s", after, before)
	}
	lbOK(t, root, "rm", "-f", "busy")
	lbOK(t, root, "commit", "k2", "same")
	if got := shellIn(t, root, "same", nil, "cat /up /other"); got != "up\nother\n" {
		t.Errorf("commit after a same-image replace: cat /up /other = %q, want up and other", got)
	}
	lbOK(t, root, "rm", "k", "k2", "other")
}

// A flag after the arguments of a snapshot command (as docker takes
// "build . --no-cache") used to be ignored, quietly: urfave/cli stops
// reading flags at the first argument, so "export NAME DST --format
// oci-archive" wrote a directory. An argument too many is refused too,
// before anything is done.
func TestSnapshotArgsAfterFlags(t *testing.T) {
	root, _ := newStore(t)
	dst := filepath.Join(t.TempDir(), "out")
	ctx := buildContextDir(t, "FROM busybox\nRUN true\n", map[string]string{})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"snapshot", "export", "busybox", dst, "--format", "oci-archive"}, "--format after NAME DST: flags go before the arguments"},
		{[]string{"snapshot", "build", "-t", "b", ctx, "--no-cache"}, "--no-cache after CONTEXT: flags go before the arguments"},
		{[]string{"snapshot", "import", "again", testBusybox(t), "--replace"}, "--replace after NAME SOURCE"},
		{[]string{"snapshot", "inspect", "busybox", "nope"}, `unexpected argument "nope"`},
	} {
		res := lb(t, root, "", tc.args...)
		if res.code == 0 || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("lightbox %s: exit %d, stderr %q; want a failure saying %q", strings.Join(tc.args, " "), res.code, res.stderr, tc.want)
		}
	}
	if _, err := os.Lstat(dst); err == nil {
		t.Errorf("the refused export wrote %s", dst)
	}
	for _, name := range []string{"b", "again"} {
		if r := lb(t, root, "", "snapshot", "inspect", name); r.code == 0 {
			t.Errorf("a refused command made snapshot %s", name)
		}
	}
}

// "USER app / WORKDIR /home/app/work / RUN touch x" builds with docker:
// buildkit makes the WORKDIR (and the parents it makes) the USER's. It
// used to fail here with "touch: x: Permission denied" (root's 0755).
func TestBuildWorkdirOfUser(t *testing.T) {
	root, _ := newStore(t)
	ctx := buildContextDir(t, `FROM busybox
RUN echo "app:x:1000:1000::/home/app:/bin/sh" >> /etc/passwd && echo "app:x:1000:" >> /etc/group
USER app
WORKDIR /home/app/work
RUN touch x
`, map[string]string{})
	if res := lb(t, root, "", "snapshot", "build", "-q", "-t", "wu", "--network", "none", ctx); res.code != 0 {
		t.Fatalf("build: exit %d\n%s", res.code, res.stderr)
	}
	got := shellIn(t, root, "wu", nil, "stat -c '%n %u:%g %a' /home/app /home/app/work /home/app/work/x")
	want := "/home/app 1000:1000 755\n/home/app/work 1000:1000 755\n/home/app/work/x 1000:1000 644\n"
	if got != want {
		t.Errorf("the built snapshot shows:\n%s\nwant:\n%s", got, want)
	}
}

// On a merged-/usr image (/bin -> usr/bin, as Debian 12, Ubuntu and
// Fedora have it) "COPY tool /bin/" wrote the layer entry bin/tool: a
// directory bin in the new layer that hid the image's /bin symlink, and
// every program under it, so the next RUN found no /bin/sh; so did
// "COPY rootfs/ /" with a rootfs/bin/. COPY and WORKDIR go through the
// image's symlinks now, as docker's do (docker refuses the second).
func TestBuildCopyIntoMergedUsr(t *testing.T) {
	root, _ := newStore(t)
	merge := buildContextDir(t, `FROM busybox
RUN ["/bin/busybox", "sh", "-c", "mkdir -p /usr && cp -a /bin /usr/ && /usr/bin/busybox rm -rf /bin && /usr/bin/busybox ln -s usr/bin /bin"]
`, map[string]string{})
	lbOK(t, root, "snapshot", "build", "-q", "-t", "merged", "--network", "none", merge)
	ctx := buildContextDir(t, `FROM merged
COPY tool /bin/
COPY rootfs/ /
WORKDIR /bin/work
RUN /bin/tool && /bin/sh -c 'echo sh works' && pwd
`, map[string]string{"tool": "#!/bin/sh\necho tool runs\n", "rootfs/bin/extra": "extra\n"})
	if err := os.Chmod(filepath.Join(ctx, "tool"), 0o755); err != nil {
		t.Fatal(err)
	}
	res := lb(t, root, "", "snapshot", "build", "-t", "app", "--network", "none", ctx)
	if res.code != 0 {
		t.Fatalf("build on the merged-/usr image: exit %d\n%s", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "tool runs\nsh works\n/usr/bin/work\n") {
		t.Errorf("the RUN printed:\n%s\nwant tool runs, sh works, /usr/bin/work (the WORKDIR through /bin)", res.stderr)
	}
	got := shellIn(t, root, "app", nil, "readlink /bin; ls /usr/bin/tool; cat /usr/bin/extra; test -d /usr/bin/work && echo workdir in /usr/bin")
	if want := "usr/bin\n/usr/bin/tool\nextra\nworkdir in /usr/bin\n"; got != want {
		t.Errorf("the built snapshot shows:\n%s\nwant:\n%s", got, want)
	}
}

// snapshot rm of the snapshot an exited, kept sandbox ran is refused, as
// docker's rmi refuses an image a stopped container uses: it used to
// remove it, and gc then freed the layers that sandbox's changes are
// over, so its commit could only fail.
func TestSnapshotRmKeptSandbox(t *testing.T) {
	root, _ := newStore(t)
	lbOK(t, root, "snapshot", "import", "par", testBusybox(t))
	lbOK(t, root, "run", "--keep", "--name", "k", "--network", "none", "par", "sh", "-c", "echo up > /up")
	res := lb(t, root, "", "snapshot", "rm", "par")
	if res.code == 0 || !strings.Contains(res.stderr, "sandbox k (exited) uses it") {
		t.Errorf("snapshot rm par while k is kept: exit %d, stderr %q; want a refusal naming k", res.code, res.stderr)
	}
	lbOK(t, root, "gc")
	lbOK(t, root, "commit", "k", "kept")
	if got := shellIn(t, root, "kept", nil, "cat /up"); got != "up\n" {
		t.Errorf("cat /up in the commit = %q, want up", got)
	}
	lbOK(t, root, "rm", "k")
	lbOK(t, root, "snapshot", "rm", "par")
}
