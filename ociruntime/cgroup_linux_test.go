package ociruntime

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/beamhop/lightbox/internal/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// envNewCgroup makes the test binary, run with it set, call newCgroup
// for the path it names, print what came back and exit, before any test
// (newCgroupHelper, from init).
const envNewCgroup = "LIGHTBOX_TEST_NEWCGROUP"

func init() {
	if arg := os.Getenv(envNewCgroup); arg != "" {
		newCgroupHelper(arg)
		os.Exit(0)
	}
}

// newCgroupHelper is the test binary's helper mode (envNewCgroup): it
// calls newCgroup for the path, with a pids limit when the value ends in
// ":pids", and prints "none", "cgroup" or "error: …".
func newCgroupHelper(arg string) {
	path, limit := strings.CutSuffix(arg, ":pids")
	var res *specs.LinuxResources
	if limit {
		ten := int64(10)
		res = &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &ten}}
	}
	rec, c, err := newCgroup(path, res)
	switch {
	case err != nil:
		fmt.Println("error:", err)
	case rec == nil && c == nil:
		fmt.Println("none")
	default:
		fmt.Println("cgroup")
	}
}

// TestRootlessLeavesRootsCgroup: a rootless lightbox-runc whose
// container's cgroup path is one root made already (a root container of
// the same id: the default path is /lightbox-runc/ID for both) runs the
// container without a cgroup, as where it can make none, and touches
// nothing of root's; asked for a limit there, it says no cgroup can be
// made. Before, it took root's cgroup for its own and its create failed
// writing the cgroup's tasks (EACCES): the root and rootless test
// passes, run at once with the same container ids, met that.
func TestRootlessLeavesRootsCgroup(t *testing.T) {
	testutil.RootOnly(t)
	u, uid, gid := testutil.TestUser(t)
	name := u.Username
	path := fmt.Sprintf("/lightbox-runc-test-%d", os.Getpid())
	rec, c, err := newCgroup(path, nil)
	if err != nil || c == nil {
		t.Fatalf("newCgroup(%s) as root = %v, %v, %v", path, rec, c, err)
	}
	defer func() {
		if err := c.remove(); err != nil {
			t.Errorf("remove root's cgroup: %v", err)
		}
	}()
	for arg, want := range map[string]string{path: "none", path + ":pids": "error: linux.resources: no cgroup can be made here"} {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), envNewCgroup+"="+arg)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("newCgroup(%s) as %s: %v: %s", arg, name, err, out)
		}
		if got := strings.TrimSpace(string(out)); !strings.HasPrefix(got, want) {
			t.Errorf("newCgroup(%s) as %s, over root's cgroup: %q, want %q", arg, name, got, want)
		}
	}
	if err := writable(rec); err != nil {
		t.Errorf("root's cgroup after the rootless calls: %v", err)
	}
}
