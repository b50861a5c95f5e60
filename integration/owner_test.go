//go:build linux

package integration

import (
	"archive/tar"
	"strings"
	"testing"

	"github.com/beamhop/lightbox/internal/testutil"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestVolumeTakesTargetOwner: a snapshot whose user is not root can write
// to a new volume mounted on its cache dir, because the volume's root
// takes the owner and mode of the mount target as the snapshot has it.
// The image config's User, Env and WorkingDir apply.
func TestVolumeTakesTargetOwner(t *testing.T) {
	root, _ := newStore(t)
	layout := testutil.NewOCILayout(t)
	app := testutil.Tar(t,
		testutil.TarFile{Hdr: tar.Header{Name: "home/", Typeflag: tar.TypeDir, Mode: 0o755}},
		testutil.TarFile{Hdr: tar.Header{Name: "home/app/", Typeflag: tar.TypeDir, Mode: 0o750, Uid: 1000, Gid: 1000}},
		testutil.TarFile{Hdr: tar.Header{Name: "home/app/.cache/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: 1000, Gid: 1000}},
	)
	testutil.AddOCIImage(t, layout, "app", ispec.ImageConfig{
		User: "1000:1000", WorkingDir: "/home/app", Env: []string{"PATH=/bin", "APP=1"},
	}, testutil.TarDir(t, testutil.BusyboxRootfs(t)), app)
	lbOK(t, root, "snapshot", "import", "app", layout+":app")
	out := lbOK(t, root, "run", "--network", "none", "-v", "appcache:/home/app/.cache", "app", "sh", "-c",
		"id -u; pwd; echo $APP; stat -c '%u %g %a' /home/app/.cache; echo ok > /home/app/.cache/f && cat /home/app/.cache/f")
	if want := "1000\n/home/app\n1\n1000 1000 700\nok\n"; out != want {
		t.Errorf("in the app snapshot:\n%s\nwant\n%s", out, want)
	}
	if strings.Contains(out, "denied") {
		t.Errorf("the snapshot's user could not write to its new volume")
	}
}
