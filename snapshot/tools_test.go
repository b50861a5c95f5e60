package snapshot

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/beamhop/lightbox/internal/testutil"
)

// TestImportFromOtherTools imports images made by umoci's and skopeo's
// command-line tools: an OCI layout, and skopeo's docker-archive (the
// `docker save` format), oci-archive and oci outputs.
func TestImportFromOtherTools(t *testing.T) {
	umoci := testutil.NeedTool(t, "umoci")
	skopeo := testutil.NeedTool(t, "skopeo")
	ctx := t.Context()
	rootfs := testutil.BusyboxRootfs(t)
	tmp := t.TempDir()
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = tmp
		cmd.Env = append(os.Environ(), "HOME="+tmp)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	insert := []string{"insert"}
	if os.Geteuid() != 0 {
		insert = append(insert, "--rootless")
	}
	run(umoci, "init", "--layout", "L")
	run(umoci, "new", "--image", "L:t")
	run(umoci, append(insert, "--image", "L:t", rootfs, "/")...)
	run(umoci, "config", "--image", "L:t", "--config.env", "FOO=bar", "--config.workingdir", "/root", "--config.cmd", "/bin/sh")
	run(skopeo, "copy", "oci:L:t", "docker-archive:d.tar:example.org/busybox:t")
	run(skopeo, "copy", "oci:L:t", "oci-archive:o.tar:t2")
	run(skopeo, "copy", "oci:L:t", "oci:C:t3")

	s := openStore(t)
	for name, src := range map[string]string{
		"umoci-layout":       filepath.Join(tmp, "L") + ":t",
		"skopeo-docker":      filepath.Join(tmp, "d.tar"),
		"skopeo-docker-tag":  filepath.Join(tmp, "d.tar") + ":example.org/busybox:t",
		"skopeo-oci-archive": filepath.Join(tmp, "o.tar"),
		"skopeo-oci":         filepath.Join(tmp, "C") + ":t3",
	} {
		sn, err := s.Import(ctx, name, src, ImportOptions{})
		if err != nil {
			t.Fatalf("import %s: %v", src, err)
		}
		if len(sn.Layers) != 1 {
			t.Fatalf("%s: layers = %v", name, sn.Layers)
		}
		if _, err := os.Stat(filepath.Join(sn.Layers[0], "bin/busybox")); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if sn.Config.WorkingDir != "/root" || len(sn.Config.Cmd) != 1 || sn.Config.Cmd[0] != "/bin/sh" {
			t.Fatalf("%s: config = %+v", name, sn.Config)
		}
	}
}
