//go:build linux

package ociruntime_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/beamhop/lightbox/internal/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestOOMTakesTheProcessNotTheInit: a container at its memory limit
// with its memory where no process's RSS shows it (tmpfs), its
// processes at the spec's oom_score_adj (podman --oom-score-adj). The
// init took the spec's score on itself too, and the OOM killer took the
// largest process, the init: the container died with it. Now the init
// keeps the runtime's score, or -1000 where it may (CAP_SYS_RESOURCE),
// the processes have the spec's, and a process is taken.
func TestOOMTakesTheProcessNotTheInit(t *testing.T) {
	testutil.RootOnly(t) // cgroup v1 has no delegation: rootless containers get no memory limit here
	root := stateRoot(t)
	cg := fmt.Sprintf("/%s/oom%d", testCgroupParent, os.Getpid())
	limit := int64(48 << 20)
	score := 1000
	b := bundle(t, func(s *specs.Spec) {
		s.Linux.CgroupsPath = cg
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
		s.Process.OOMScoreAdj = &score
	}, "sleep", "1000")
	mustRunc(t, root, "run", "--detach", "--bundle", b, "oom")
	t.Cleanup(func() {
		runc(t, root, "delete", "--force", "oom")
		removeTestCgroupParent(t)
	})
	init := state(t, root, "oom").Pid
	// The runtime's score (this process's), or -1000 where it may lower
	// it (CAP_SYS_RESOURCE, which this machine's root may lack).
	want := readTrim(t, "/proc/self/oom_score_adj")
	privileged := hasCap(t, unix.CAP_SYS_RESOURCE)
	if privileged {
		want = "-1000"
	}
	if got := readTrim(t, fmt.Sprintf("/proc/%d/oom_score_adj", init)); got != want {
		t.Errorf("the init's oom_score_adj = %s, want %s (CAP_SYS_RESOURCE: %v)", got, want, privileged)
	}
	var ps []int
	if err := json.Unmarshal([]byte(mustRunc(t, root, "ps", "--format", "json", "oom")), &ps); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if got := readTrim(t, fmt.Sprintf("/proc/%d/oom_score_adj", p)); p != init && got != "1000" {
			t.Errorf("the process's oom_score_adj = %s, want the spec's 1000", got)
		}
	}
	if got := strings.TrimSpace(mustRunc(t, root, "exec", "oom", "cat", "/proc/self/oom_score_adj")); got != "1000" {
		t.Errorf("an exec'd process's oom_score_adj = %s, want the container's 1000", got)
	}
	if privileged {
		// Set with privilege, the spec's score is the processes' floor.
		if r := runc(t, root, "exec", "oom", "sh", "-c", "echo 0 > /proc/self/oom_score_adj"); r.code == 0 {
			t.Errorf("an exec'd process lowered its oom_score_adj below the spec's")
		}
	}
	// The filler holds the memory in an unlinked tmpfs file, freed when
	// it dies: the OOM killer ends it (the largest at the spec's score),
	// and nothing else. (It took the init, before, at the same score and
	// larger.)
	runc(t, root, "exec", "oom", "sh", "-c", "exec 3>/dev/shm/fill; rm /dev/shm/fill; exec dd if=/dev/zero bs=4M >&3")
	if st := state(t, root, "oom"); st.Status != "running" || unix.Kill(init, 0) != nil {
		t.Fatalf("after the OOM: status %s, init %d gone", st.Status, init)
	}
	if b, _ := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", cg, "memory.oom_control")); strings.Contains(string(b), "oom_kill 0") {
		t.Errorf("memory.oom_control of the container's cgroup (which engines watch): %q, want an OOM kill counted", b)
	}
}

// hasCap says whether this process has capability c in its effective set.
func hasCap(t *testing.T, c uint) bool {
	for _, l := range strings.Split(readTrim(t, "/proc/self/status"), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && n&(1<<c) != 0
		}
	}
	return false
}

func readTrim(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
