//go:build linux

package integration

import (
	"os"
	"strings"
	"testing"

	"github.com/beamhop/lightbox/internal/testutil"
)

// TestDebianBase imports a real Debian (debootstrap --variant=minbase
// bookworm, as a tarball that `make test` prepares: LIGHTBOX_DEBIAN_TAR)
// and checks that owners, modes and setuid bits survived — rootless too,
// through the store's subordinate id range — and that apt runs.
func TestDebianBase(t *testing.T) {
	tarball := os.Getenv("LIGHTBOX_DEBIAN_TAR")
	testutil.Need(t, tarball != "", "needs LIGHTBOX_DEBIAN_TAR, a tarball of a debootstrap'd Debian (make test makes it with hack/debian-base.sh)")
	root, _ := newStore(t)
	lbOK(t, root, "snapshot", "import", "debian", tarball)
	out := lbOK(t, root, "run", "--network", "none", "debian", "sh", "-c",
		"stat -c '%n %U %G %a' /usr/bin/su /etc/shadow /var/mail /usr/bin/chage; apt-get --version | head -1; id -u _apt")
	want := []string{"/usr/bin/su root root 4755", "/etc/shadow root shadow 640", "/var/mail root mail 2775", "/usr/bin/chage root shadow 2755", "apt ", "42"}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("inside the debian snapshot:\n%s\nwant a line with %q", out, w)
		}
	}
	// apt can drop to _apt (a subordinate id rootless) and write as it.
	out = lbOK(t, root, "run", "--network", "none", "debian", "sh", "-c",
		"mkdir /tmp/x && chown _apt /tmp/x && su -s /bin/sh _apt -c 'touch /tmp/x/f && stat -c %U /tmp/x/f'")
	if strings.TrimSpace(out) != "_apt" {
		t.Errorf("a file made as _apt is owned by %q", out)
	}
}
