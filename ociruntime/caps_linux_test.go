//go:build linux

package ociruntime_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A process whose config gives no capabilities gets none, and an exec'd
// one whose process.json gives none gets the container's, as runc has it:
// both got every capability of the init (without a user namespace the
// host root's: CAP_SYS_ADMIN, CAP_SYS_MODULE…). The attack mounts a tmpfs,
// which takes CAP_SYS_ADMIN.
func TestNoCapabilitiesGivenIsNone(t *testing.T) {
	root := stateRoot(t)
	const probe = `mount -t tmpfs t /tmp 2>/dev/null && echo MOUNTED; grep CapBnd /proc/self/status`
	b := bundle(t, func(s *specs.Spec) { s.Process.Capabilities = nil }, "sh", "-c", probe)
	r := runc(t, root, "run", "--bundle", b, "nocaps")
	if r.code != 0 || strings.Contains(r.out, "MOUNTED") || !strings.Contains(r.out, "CapBnd:\t0000000000000000") {
		t.Errorf("run without capabilities: exit %d, stdout %q, stderr %q; want no capability (no mount)", r.code, r.out, r.err)
	}

	// lightbox-runc spec's set (podman's): 0x800405fb.
	b = bundle(t, nil, "sleep", "60")
	mustRunc(t, root, "create", "--bundle", b, "ex")
	t.Cleanup(func() { runc(t, root, "delete", "--force", "ex") })
	mustRunc(t, root, "start", "ex")
	pj := filepath.Join(t.TempDir(), "process.json")
	pb, err := json.Marshal(specs.Process{Args: []string{"sh", "-c", probe}, Cwd: "/", Env: []string{"PATH=/bin"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pj, pb, 0o644); err != nil {
		t.Fatal(err)
	}
	r = runc(t, root, "exec", "--process", pj, "ex")
	if r.code != 0 || strings.Contains(r.out, "MOUNTED") || !strings.Contains(r.out, "CapBnd:\t00000000800405fb") {
		t.Errorf("exec --process without capabilities: exit %d, stdout %q, stderr %q; want the container's (00000000800405fb, no mount)", r.code, r.out, r.err)
	}
}
