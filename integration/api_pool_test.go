//go:build linux

package integration

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// running lists the store's running sandboxes through sandbox.list,
// with their init's pid.
func (p *apiProc) running() map[string]int {
	p.t.Helper()
	var list []struct {
		Name, Status string
		Pid          int
		Detached     bool
	}
	p.ok("sandbox.list", nil, &list)
	out := map[string]int{}
	for _, s := range list {
		if s.Status == "running" {
			out[s.Name] = s.Pid
		}
	}
	return out
}

// waitRunning polls sandbox.list until want sandboxes run, each with its
// init's pid recorded (a sandbox being launched is running, its lock
// held, before its state names its init).
func (p *apiProc) waitRunning(want int) map[string]int {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := p.running()
		if len(m) == want && !slices.Contains(slices.Collect(maps.Values(m)), 0) {
			return m
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%d sandboxes running (%v), want %d", len(m), m, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// poolParams are sandbox.prewarm's params for busybox with no network and
// a pids limit (a cgroup as root, whose removal the tests check), n
// sandboxes; poolLaunch the sandbox.launch that matches them, named.
func poolParams(n int) map[string]any {
	return map[string]any{"snapshot": "busybox", "network": "none", "resources": map[string]any{"pidsLimit": 64}, "n": n}
}

func poolLaunch(name string) map[string]any {
	return map[string]any{"snapshot": "busybox", "network": "none", "resources": map[string]any{"pidsLimit": 64}, "name": name}
}

// initsGone: the init processes of pids are gone (not even zombies)
// within a deadline.
func initsGone(t *testing.T, what string, pids []int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var left []int
		for _, pid := range pids {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: init processes %v still there", what, left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sandboxDirs lists the sandboxes' directories of a store (its own
// dot-files aside: the lock, the targets, the init binaries).
func sandboxDirs(t *testing.T, root string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(root, "sandboxes"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if n := e.Name(); !strings.HasPrefix(n, ".") || strings.HasPrefix(n, ".rm-") {
			out = append(out, n)
		}
	}
	return out
}

// poolCgroups adds the cgroup directories of the running sandboxes in m
// to cgs.
func poolCgroups(t *testing.T, root string, m map[string]int, cgs []string) []string {
	t.Helper()
	for name := range m {
		for _, d := range cgroupDirs(t, filepath.Join(root, "sandboxes", name, "state.json")) {
			if !slices.Contains(cgs, d) {
				cgs = append(cgs, d)
			}
		}
	}
	return cgs
}

// TestAPIServerPrewarm: sandbox.prewarm keeps n sandboxes ready (they show
// in sandbox.list under generated names, as ListSandboxes shows a Go
// program's pool); a matching sandbox.launch takes one (the init that ran
// in the pool runs the named sandbox) and the pool refills; a second
// prewarm sets the pool's size (the surplus goes), 0 empties it; params a
// take applies, unknown ones, and a missing or negative n are
// invalid_params naming the field; and when the server's input ends its
// pool goes with what it launched: no sandbox, directory, init or cgroup
// is left.
func TestAPIServerPrewarm(t *testing.T) {
	root, _ := newStore(t)
	p := startAPI(t, root)
	for _, c := range []struct {
		field  string // what the message must name
		params map[string]any
	}{
		{"name", map[string]any{"snapshot": "busybox", "n": 1, "name": "x"}},
		{"mounts", map[string]any{"snapshot": "busybox", "n": 1, "mounts": map[string]any{"/v": map[string]any{"volume": "v"}}}},
		{"env", map[string]any{"snapshot": "busybox", "n": 1, "env": []string{"A=b"}}},
		{"workdir", map[string]any{"snapshot": "busybox", "n": 1, "workdir": "/tmp"}},
		{"command", map[string]any{"snapshot": "busybox", "n": 1, "command": []string{"true"}}},
		{"timeoutMs", map[string]any{"snapshot": "busybox", "n": 1, "timeoutMs": 1000}},
		{"netwrok", map[string]any{"snapshot": "busybox", "n": 1, "netwrok": "none"}},
		{"no n", map[string]any{"snapshot": "busybox"}},
		{"n is -1", map[string]any{"snapshot": "busybox", "n": -1}},
		{"no snapshot", map[string]any{"n": 1}},
	} {
		if e := p.fails("invalid_params", "sandbox.prewarm", c.params); !strings.Contains(e.Message, c.field) {
			t.Errorf("sandbox.prewarm(%v): %q, want a message naming %s", c.params, e.Message, c.field)
		}
	}
	if m := p.running(); len(m) != 0 {
		t.Fatalf("refused prewarms started sandboxes: %v", m)
	}
	p.fails("not_found", "sandbox.prewarm", map[string]any{"snapshot": "nosuch", "network": "none", "n": 1})

	p.ok("sandbox.prewarm", poolParams(2), nil)
	pooled := p.running()
	if len(pooled) != 2 {
		t.Fatalf("after sandbox.prewarm n=2, running: %v, want 2", pooled)
	}
	// lightbox ps, another process, marks them.
	for n := range pooled {
		if out := lbOK(t, root, "ps"); !regexp.MustCompile(`(?m)^` + n + `\s+busybox\s+running, pooled\s`).MatchString(out) {
			t.Errorf("lightbox ps does not show %s as running, pooled:\n%s", n, out)
		}
	}
	pids := slices.Collect(maps.Values(pooled))
	cgs := poolCgroups(t, root, pooled, nil)
	if os.Geteuid() == 0 && len(cgs) == 0 {
		t.Errorf("as root, pooled sandboxes with a pids limit have no cgroup: nothing of their removal is checked")
	}
	// A second call sets the size: one of the two goes, at once.
	p.ok("sandbox.prewarm", poolParams(1), nil)
	one := p.running()
	if len(one) != 1 {
		t.Fatalf("after sandbox.prewarm n=1, running: %v, want 1", one)
	}
	var warm int
	for _, pid := range one {
		warm = pid
	}
	if !slices.Contains(pids, warm) {
		t.Errorf("the sandbox left after n=1 (init %d) is not one of the pool's %v", warm, pooled)
	}

	var ref struct{ Name string }
	p.ok("sandbox.launch", poolLaunch("taken"), &ref)
	if ref.Name != "taken" {
		t.Fatalf("launch returned %q, want taken", ref.Name)
	}
	var res struct{ Stdout string }
	p.ok("sandbox.shell", map[string]any{"name": "taken", "script": "hostname"}, &res)
	if res.Stdout != "taken\n" {
		t.Errorf("hostname in the taken sandbox = %q, want taken", res.Stdout)
	}
	if pid := p.running()["taken"]; pid != warm {
		t.Errorf("sandbox taken runs init %d, not the pool's %d: the launch did not take from the pool", pid, warm)
	}
	if out := lbOK(t, root, "ps"); !regexp.MustCompile(`(?m)^taken\s+busybox\s+running\s`).MatchString(out) {
		t.Errorf("lightbox ps does not show taken as running (and not pooled):\n%s", out)
	}
	// The pool refills in the background; the refill shows as a running
	// sandbox beside the taken one.
	refilled := p.waitRunning(2)
	cgs = poolCgroups(t, root, refilled, cgs)
	for n, pid := range refilled {
		if n != "taken" && slices.Contains(pids, pid) {
			t.Errorf("the refill %s runs an init of before, %d", n, pid)
		}
	}
	pids = append(pids, slices.Collect(maps.Values(refilled))...)
	// A launch that does not match the pool (no pids limit) launches
	// cold.
	p.ok("sandbox.launch", map[string]any{"snapshot": "busybox", "network": "none", "name": "cold"}, &ref)
	if pid := p.running()["cold"]; slices.Contains(slices.Collect(maps.Values(refilled)), pid) {
		t.Errorf("a launch without the pool's pids limit took pooled init %d", pid)
	}
	p.ok("sandbox.destroy", map[string]any{"name": "cold"}, nil)

	// 0 empties the pool: only what was launched runs on.
	p.ok("sandbox.prewarm", poolParams(0), nil)
	if m := p.running(); !maps.Equal(m, map[string]int{"taken": warm}) {
		t.Errorf("after sandbox.prewarm n=0, running: %v, want only taken (%d)", m, warm)
	}
	p.ok("sandbox.prewarm", poolParams(1), nil)
	last := p.running()
	if len(last) != 2 {
		t.Fatalf("after a new sandbox.prewarm n=1, running: %v, want taken and one pooled", last)
	}
	pids = append(pids, slices.Collect(maps.Values(last))...)
	cgs = poolCgroups(t, root, last, cgs)

	if err := p.close(); err != nil {
		t.Fatalf("lightbox api exited with %v; stderr: %s", err, p.stderr())
	}
	initsGone(t, "after the api server's input ended", pids)
	if left := sandboxNames(t, root); len(left) != 0 {
		t.Errorf("after the api server's input ended, lightbox ps shows %v", left)
	}
	gone(t, "the pooled sandboxes' directories", sandboxDirs(t, root), 10*time.Second)
	gone(t, "the pooled sandboxes' cgroups", cgs, 10*time.Second)
}

// TestAPIServerPrewarmKilled: an api server killed with SIGKILL leaves its
// pool's sandboxes (and the one it took from the pool) to their inits,
// which see their liveness pipe close and end; `lightbox gc` removes what
// they leave on disk, cgroups included.
func TestAPIServerPrewarmKilled(t *testing.T) {
	root, _ := newStore(t)
	p := startAPI(t, root)
	p.ok("sandbox.prewarm", poolParams(2), nil)
	before := p.running()
	p.ok("sandbox.launch", poolLaunch("taken"), nil)
	all := p.waitRunning(3)
	if pid := all["taken"]; !slices.Contains(slices.Collect(maps.Values(before)), pid) {
		t.Errorf("sandbox taken runs init %d, not one of the pool's %v", pid, before)
	}
	cgs := poolCgroups(t, root, all, nil)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := p.close(); err == nil {
		t.Fatal("lightbox api exited 0 after SIGKILL")
	}
	initsGone(t, "after SIGKILL of the api server", slices.Collect(maps.Values(all)))
	lbOK(t, root, "gc")
	if left := sandboxNames(t, root); len(left) != 0 {
		t.Errorf("after gc, lightbox ps shows %v", left)
	}
	if left := sandboxDirs(t, root); len(left) != 0 {
		t.Errorf("after gc, sandbox directories are left: %v", left)
	}
	gone(t, "the sandboxes' cgroups after gc", cgs, 10*time.Second)
}
