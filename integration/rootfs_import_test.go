//go:build linux

package integration

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/testutil"
)

// TestRootlessImportOfRootOwnedDir (issue 11): an ordinary user imports a
// root-owned, world-readable root filesystem directory, as a tarball of the
// same tree imports (root's files are root's inside, other owners keep
// their numbers); a tree with a file the user cannot read is refused
// before anything is written, naming the first such file.
//
// Root makes the tree (this is the root pass); the imports run as the
// unprivileged test user (LIGHTBOX_TEST_USER) through the CLI, in a store
// that user owns.
func TestRootlessImportOfRootOwnedDir(t *testing.T) {
	testutil.RootOnly(t)
	u, _, _ := testutil.TestUser(t)
	name := u.Username
	runuser := testutil.NeedTool(t, "runuser")
	base, err := os.MkdirTemp("", "lightbox-rootimport-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if n := hostMountsUnder(t, base); n != 0 {
			t.Errorf("%d mounts left under %s", n, base)
			return // never delete through a mount
		}
		os.RemoveAll(base)
	})
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(base, "home")
	if out, err := exec.Command("install", "-d", "-o", u.Uid, "-g", u.Gid, home).CombinedOutput(); err != nil {
		t.Fatalf("install -d: %v: %s", err, out)
	}
	store := filepath.Join(home, "store")

	// The tree: busybox, root's, world-readable; one file of uid 33.
	tree := filepath.Join(base, "tree")
	if out, err := exec.Command("cp", "-a", testutil.BusyboxRootfs(t), tree).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(exec.Command("chown", "-R", "0:0", tree).Run())
	must(os.Chmod(tree, 0o755))
	must(os.Chmod(filepath.Join(tree, "root"), 0o755))
	must(os.MkdirAll(filepath.Join(tree, "srv/www"), 0o755))
	must(os.WriteFile(filepath.Join(tree, "srv/www/index"), []byte("page\n"), 0o644))
	must(os.Chown(filepath.Join(tree, "srv/www/index"), 33, 33))
	must(os.WriteFile(filepath.Join(tree, "etc/motd"), []byte("hello\n"), 0o644))
	tarball := filepath.Join(base, "tree.tar")
	if out, err := exec.Command("tar", "-C", tree, "-cpf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}

	asUser := func(args ...string) cliResult {
		t.Helper()
		cmd := exec.Command(runuser, append([]string{"-u", name, "--", "env", "HOME=" + home, binPath, "--root", store}, args...)...)
		cmd.Dir = base
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return cliResult{out.String(), errb.String(), code}
	}
	if r := asUser("snapshot", "import", "fromdir", tree); r.code != 0 {
		t.Fatalf("rootless import of the root-owned directory: %+v", r)
	}
	if r := asUser("snapshot", "import", "fromtar", tarball); r.code != 0 {
		t.Fatalf("rootless import of its tarball: %+v", r)
	}
	const probe = "stat -c '%n %u:%g %a' / /bin/busybox /etc/motd /root /srv/www /srv/www/index; cat /srv/www/index"
	want := "/ 0:0 755\n/bin/busybox 0:0 755\n/etc/motd 0:0 644\n/root 0:0 755\n/srv/www 0:0 755\n/srv/www/index 33:33 644\npage\n"
	for _, sn := range []string{"fromdir", "fromtar"} {
		r := asUser("run", "--network", "none", sn, "sh", "-c", probe)
		if r.code != 0 || r.stdout != want {
			t.Errorf("owners in a sandbox of %s: code %d\n%s%s\nwant\n%s", sn, r.code, r.stdout, r.stderr, want)
		}
	}

	// A file the user cannot read (and a later one): refused, the first
	// named, the store unchanged.
	must(os.WriteFile(filepath.Join(tree, "etc/secret"), []byte("key\n"), 0o600))
	must(os.Chmod(filepath.Join(tree, "root"), 0o700))
	// The runs above return before their reapers finish removing the
	// sandboxes' directories: wait for that, it is not the import's doing.
	gone(t, "the sandboxes' directories, set aside", asideDirs(t, store), 10*time.Second)
	before := listTree(t, store)
	r := asUser("snapshot", "import", "secret", tree)
	if r.code == 0 {
		t.Fatalf("import of a tree with an unreadable file succeeded: %+v", r)
	}
	first := filepath.Join(tree, "etc/secret")
	if !strings.Contains(r.stderr, first+" ") || strings.Contains(r.stderr, filepath.Join(tree, "root")+" ") ||
		!strings.Contains(r.stderr, "tarball") || strings.Contains(r.stderr, "rename") {
		t.Errorf("import of a tree with an unreadable file: stderr %q; want it to name %s first and suggest a tarball", r.stderr, first)
	}
	if after := listTree(t, store); !slices.Equal(before, after) {
		t.Errorf("the store changed after the refused import:\nbefore %q\nafter  %q", before, after)
	}
	if r := asUser("snapshot", "ls"); r.code != 0 || strings.Contains(r.stdout, "secret") {
		t.Errorf("snapshot ls after the refused import: %+v", r)
	}
}

// listTree lists every path under dir with its type and size (directories
// without a size), sorted.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		size := fi.Size()
		if fi.IsDir() {
			size = 0
		}
		out = append(out, fmt.Sprintf("%s %s %d", strings.TrimPrefix(p, dir), fi.Mode().Type(), size))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}
