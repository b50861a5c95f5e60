//go:build linux

package ociruntime_test

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestNprocCannotKillInit is an attack: the container's processes fill
// the RLIMIT_NPROC of its process.rlimits (rootless, where a container
// gets no cgroup on v1, the way to bound its processes), then the
// engine asks for execs. The init, which took the limit on itself and
// shares the container's root's count, could not make a thread, and
// died of it with the container. (As root with no user namespace, root
// is exempt from RLIMIT_NPROC: the burst is bounded for that pass.)
func TestNprocCannotKillInit(t *testing.T) {
	const limit = 12
	root := stateRoot(t)
	b := bundle(t, func(s *specs.Spec) {
		s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_NPROC", Soft: limit, Hard: limit})
	}, "sleep", "1000")
	mustRunc(t, root, "run", "--detach", "--bundle", b, "np")
	t.Cleanup(func() { runc(t, root, "delete", "--force", "np") })
	init := state(t, root, "np").Pid
	// The processes have the limit, set before start and exec return
	// (the main process its own, a detached exec'd one the container's),
	// the init has not.
	mustRunc(t, root, "exec", "--detach", "np", "sleep", "1000")
	var ps []int
	if err := json.Unmarshal([]byte(mustRunc(t, root, "ps", "--format", "json", "np")), &ps); err != nil || len(ps) != 3 {
		t.Fatalf("ps: %v (%v), want the init, its process and the exec'd one", ps, err)
	}
	for _, p := range ps {
		l, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", p))
		if err != nil {
			t.Fatal(err)
		}
		if has := nprocLine.Match(l); has == (p == init) {
			t.Errorf("/proc/%d/limits (the init: %v) has RLIMIT_NPROC %d: %v", p, p == init, limit, has)
		}
	}
	runc(t, root, "exec", "np", "sh", "-c", "for i in $(seq 40); do sleep 1000 & done")
	for i := range 10 {
		if st := state(t, root, "np"); st.Status != "running" || unix.Kill(init, 0) != nil {
			t.Fatalf("after %d rounds of execs at RLIMIT_NPROC: status %s, init %d gone", i, st.Status, init)
		}
		// Eight at once: the init needs a thread for each.
		var wg sync.WaitGroup
		errs := make(chan string, 8)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if r := runc(t, root, "exec", "np", "true"); r.code != 0 && !strings.Contains(r.err, "resource temporarily unavailable") {
					errs <- fmt.Sprintf("exec at RLIMIT_NPROC: exit %d, %q; want EAGAIN", r.code, r.err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	}
	if st := state(t, root, "np"); st.Status != "running" || unix.Kill(init, 0) != nil {
		t.Fatalf("after execs at RLIMIT_NPROC: status %s, init %d gone", st.Status, init)
	}
	if err := json.Unmarshal([]byte(mustRunc(t, root, "ps", "--format", "json", "np")), &ps); err != nil || (os.Geteuid() != 0 && len(ps) > limit+1) {
		t.Errorf("the container has %d processes with the init, limit %d (%v)", len(ps), limit, err)
	}
}

var nprocLine = regexp.MustCompile(`Max processes +12 +12 `)
