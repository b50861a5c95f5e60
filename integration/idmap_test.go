//go:build linux

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/beamhop/lightbox/internal/testutil"
)

// TestCLIBindOwnedByUser: as root, `run -v ./proj:/work` over a checkout an
// ordinary user owns leaves what the sandbox's root writes there owned by
// that user, and a setuid file planted there (break 4 of issue 12) is not
// root's on the host.
func TestCLIBindOwnedByUser(t *testing.T) {
	testutil.RootOnly(t)
	u, uid, gid := testutil.TestUser(t)
	name := u.Username
	root, _ := newStore(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	proj := filepath.Join(dir, "proj")
	if err := os.Mkdir(proj, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(proj, uid, gid); err != nil {
		t.Fatal(err)
	}
	cmd := "mkdir /work/node_modules && cp /bin/busybox /work/rs && chmod 4755 /work/rs && id -u"
	r := lb(t, root, "", "run", "--network", "none", "-v", proj+":/work", "busybox", "sh", "-c", cmd)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "0" {
		t.Fatalf("run: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	for _, p := range []string{"node_modules", "rs"} {
		fi, err := os.Lstat(filepath.Join(proj, p))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != uid || int(st.Gid) != gid {
			t.Errorf("%s written by the sandbox's root into %s's checkout: owner %d:%d on the host, want %d:%d", p, name, st.Uid, st.Gid, uid, gid)
		}
	}
}

// TestCLIIdentityMappingFlag: --identity-mapping makes an identity store
// (the sandbox's root writes as host root), and is refused on a store
// with a private range, naming its mapping.
func TestCLIIdentityMappingFlag(t *testing.T) {
	testutil.RootOnly(t)
	idRoot := filepath.Join(t.TempDir(), "store")
	t.Cleanup(func() { removeStore(t, idRoot) })
	lbOK(t, idRoot, "--identity-mapping", "snapshot", "import", "busybox", testBusybox(t))
	out := lbOK(t, idRoot, "run", "--network", "none", "busybox", "sh", "-c", "touch /f && stat -c %u /f")
	if strings.TrimSpace(out) != "0" {
		t.Errorf("in an identity store the sandbox's root writes as %q", out)
	}

	rangeRoot, _ := newStore(t)
	r := lb(t, rangeRoot, "", "--identity-mapping", "ps")
	if r.code == 0 || !strings.Contains(r.stderr, "uid 0:") || !strings.Contains(r.stderr, ":65536") {
		t.Errorf("--identity-mapping on a range store: exit %d, stderr %q; want a refusal naming the recorded range", r.code, r.stderr)
	}
}
