package integration

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beamhop/lightbox/internal/testutil"
)

// TestQuotaVolumeForRootlessUser is the administrator's path that the
// rootless refusal points to: root creates a quota'd volume in an ordinary
// user's store with --owner, and the user then uses it normally.
func TestQuotaVolumeForRootlessUser(t *testing.T) {
	testutil.RootOnly(t)
	name := os.Getenv("LIGHTBOX_TEST_USER")
	if name == "" {
		name = "lbtest"
	}
	u, err := user.Lookup(name)
	testutil.Need(t, err == nil, "needs the unprivileged test user "+name+" (make test creates it)")
	runuser := testutil.NeedTool(t, "runuser")
	base, err := os.MkdirTemp("", "lightbox-admin-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(base, 0o755)
	home := filepath.Join(base, "home")
	os.Mkdir(home, 0o755)
	var uid, gid int
	if _, err := fmtSscan(u.Uid, &uid); err != nil {
		t.Fatal(err)
	}
	fmtSscan(u.Gid, &gid)
	os.Chown(home, uid, gid)
	store := filepath.Join(home, "store")
	t.Cleanup(func() {
		exec.Command(binPath, "--root", store, "volume", "rm", "-f", "q").Run()
		if n := hostMountsUnder(t, base); n != 0 {
			t.Errorf("%d mounts left under %s", n, base)
			return // never delete through a mount
		}
		os.RemoveAll(base)
	})
	// A copy of the busybox rootfs the user can read.
	rootfs := filepath.Join(base, "rootfs")
	if out, err := exec.Command("cp", "-a", testutil.BusyboxRootfs(t), rootfs).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	if out, err := exec.Command("chown", "-R", u.Uid+":"+u.Gid, rootfs).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}
	asUser := func(args ...string) cliResult {
		t.Helper()
		cmd := exec.Command(runuser, append([]string{"-u", name, "--", "env", "HOME=" + home, binPath, "--root", store}, args...)...)
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
	if r := asUser("volume", "ls"); r.code != 0 {
		t.Fatalf("the user's first command: %+v", r)
	}
	r := asUser("volume", "create", "--quota-mib", "16", "q")
	if r.code == 0 || !strings.Contains(r.stderr, "--owner") {
		t.Fatalf("rootless quota: code %d stderr %q, want a refusal explaining --owner", r.code, r.stderr)
	}
	lbOK(t, store, "volume", "create", "--quota-mib", "16", "--owner", name, "q")
	if r := asUser("snapshot", "import", "busybox", rootfs); r.code != 0 {
		t.Fatalf("import as the user: %+v", r)
	}
	r = asUser("run", "--network", "none", "-v", "q:/q", "busybox", "sh", "-c",
		"echo mine > /q/f && cat /q/f && dd if=/dev/zero of=/q/big bs=1M count=64 2>&1")
	if !strings.Contains(r.stdout, "mine") || !strings.Contains(r.stdout, "No space left") {
		t.Errorf("the user writing to its quota'd volume: %+v", r)
	}
	if r := asUser("volume", "rm", "q"); r.code != 0 {
		// Removing a loop-backed volume needs root (it unmounts the image).
		if r2 := lb(t, store, "", "volume", "rm", "q"); r2.code != 0 {
			t.Errorf("volume rm q as the user: %+v; as root: %+v", r, r2)
		}
	}
}
