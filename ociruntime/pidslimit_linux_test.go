//go:build linux

package ociruntime_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestPidsLimitCannotKillInit is an attack: the container's processes
// fill its pids limit, then the engine asks the init for execs (each
// needs a new thread of the init). Before, the init, counted in the
// same pids cgroup, died of Go's "failed to create new OS thread" and
// took the container with it; now an exec fails with EAGAIN, as it
// would with runc, the init and the container's processes live on,
// and the limit still holds every process of the container, exactly.
func TestPidsLimitCannotKillInit(t *testing.T) {
	testutil.RootOnly(t) // cgroup v1 has no delegation: rootless containers get no pids limit here
	var limit int64 = 12
	root := stateRoot(t)
	cg := fmt.Sprintf("/%s/pids%d", testCgroupParent, os.Getpid())
	b := bundle(t, func(s *specs.Spec) {
		s.Linux.CgroupsPath = cg
		s.Linux.Resources = &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &limit}}
	}, "sleep", "1000")
	mustRunc(t, root, "run", "--detach", "--bundle", b, "pl")
	t.Cleanup(func() {
		runc(t, root, "delete", "--force", "pl")
		removeTestCgroupParent(t)
	})
	init := state(t, root, "pl").Pid
	// The burst: sleeps until fork fails (the shell then gives up; its
	// sleeps stay, children of the init), then execs up to the limit
	// (the processes' own forks stop one short of it: the init's main
	// thread, which engines find the cgroup from, holds a place). Execs
	// until one is refused: the burst can stop one more short when it
	// races the exit of the init's thread that forked the shell (still
	// counted for a moment after the limit is put back), which left an
	// exec of true room once in five runs with two fixed execs here.
	runc(t, root, "exec", "pl", "sh", "-c", "while :; do sleep 1000 & done")
	for i := 0; ; i++ {
		r := runc(t, root, "exec", "--detach", "pl", "sleep", "1000")
		if r.code != 0 {
			if !strings.Contains(r.err, "resource temporarily unavailable: the container is at its pids limit") {
				t.Fatalf("exec of a sleep to fill the pids limit: exit %d, %q; want EAGAIN once full", r.code, r.err)
			}
			t.Logf("%d execs of a sleep after the burst took the container to its pids limit", i)
			break
		}
		if i > 3 {
			t.Fatalf("%d execs started after the burst: the pids limit %d does not hold", i+1, limit)
		}
	}
	for i := range 20 {
		st := state(t, root, "pl")
		if st.Status != "running" || unix.Kill(init, 0) != nil {
			t.Fatalf("after %d execs at the pids limit: status %s, init %d gone", i, st.Status, init)
		}
		if r := runc(t, root, "exec", "pl", "true"); r.code == 0 || !strings.Contains(r.err, "resource temporarily unavailable: the container is at its pids limit") {
			t.Fatalf("exec at the pids limit: exit %d, %q; want EAGAIN", r.code, r.err)
		}
	}
	if st := state(t, root, "pl"); st.Status != "running" || unix.Kill(init, 0) != nil {
		t.Fatalf("after execs at the pids limit: status %s, init %d gone", st.Status, init)
	}
	// Every process of the container is held by the limit, and counted
	// in the cgroup the engine named (which the init is in too).
	var ps []int
	if err := json.Unmarshal([]byte(mustRunc(t, root, "ps", "--format", "json", "pl")), &ps); err != nil {
		t.Fatal(err)
	}
	if int64(len(ps)) != limit+1 {
		t.Errorf("the container has %d processes with the init, want its limit %d and the init: %v", len(ps), limit, ps)
	}
	// The cgroup the engine named has the spec's limit and counts the
	// container's processes, and the init's main thread only (/proc/PID/
	// cgroup of the init names it), as engines look for it.
	dir := filepath.Join("/sys/fs/cgroup/pids", cg)
	if got := readTrim(t, filepath.Join(dir, "pids.max")); got != strconv.FormatInt(limit, 10) {
		t.Errorf("pids.max of %s = %s, want the spec's %d", cg, got, limit)
	}
	testutil.WaitFor(t, 10*time.Second, "pids.current to count the container's processes and the init's main thread (the last exec's thread gone)", func() bool {
		return readTrim(t, filepath.Join(dir, "pids.current")) == strconv.FormatInt(limit+1, 10)
	})
	tasks := strings.Fields(readTrim(t, filepath.Join(dir, "tasks")))
	threads, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", init))
	if err != nil {
		t.Fatal(err)
	}
	for _, th := range threads {
		if in := slices.Contains(tasks, th.Name()); in != (th.Name() == strconv.Itoa(init)) {
			t.Errorf("the init's thread %s in the container's pids cgroup: %v (its main thread only should be)", th.Name(), in)
		}
	}
	if cgs := readTrim(t, fmt.Sprintf("/proc/%d/cgroup", init)); !strings.Contains(cgs, ":pids:"+cg+"\n") && !strings.HasSuffix(cgs, ":pids:"+cg) {
		t.Errorf("/proc/%d/cgroup of the init does not name %s for pids: %s", init, cg, cgs)
	}
	var ev struct {
		Data struct {
			Pids struct{ Current, Limit int64 }
		}
	}
	if err := json.Unmarshal([]byte(mustRunc(t, root, "events", "--stats", "pl")), &ev); err != nil || ev.Data.Pids.Limit != limit {
		t.Errorf("events --stats: pids %+v (%v), want limit %d", ev.Data.Pids, err, limit)
	}
}
