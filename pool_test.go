//go:build linux

package lightbox

import (
	"bufio"
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beamhop/lightbox/runtime"
	"golang.org/x/sys/unix"
)

// startChild runs test (this test binary) again as a child with env set
// to root, and returns it with the first line it prints.
func startChild(t *testing.T, test, env, root string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(os.Environ(), env+"="+root)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n') // a failed read leaves line short: the caller reports it
	return cmd, line
}

// running lists the running sandboxes by name, with their init's pid.
func running(t *testing.T, r *Runtime) map[string]int {
	t.Helper()
	list, err := r.ListSandboxes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, in := range list {
		if in.Status == "running" {
			out[in.Name] = in.Pid
		}
	}
	return out
}

// prewarmedOne opens a store of its own with busybox and a pool of one
// sandbox of it (the returned options), and waits until that one runs:
// the running sandboxes' inits by name. The store is closed when the
// test ends.
func prewarmedOne(t *testing.T) (*Runtime, SandboxOptions, map[string]int) {
	t.Helper()
	r, err := Open(Options{Root: filepath.Join(t.TempDir(), "store")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() }) // the pool's sandboxes go; its error is the tests' concern elsewhere
	importBusybox(t, r)
	pooled := SandboxOptions{Snapshot: "busybox", Network: NetworkNone}
	if err := r.PrewarmSandboxes(t.Context(), pooled, 1); err != nil {
		t.Fatal(err)
	}
	return r, pooled, waitRunning(t, r, 1)
}

// takeFirst launches pooled as name, which must take the one sandbox of
// the pool warm (destroyed when the test ends), and runs its first
// command, whose end starts the pool's refill.
func takeFirst(t *testing.T, r *Runtime, pooled SandboxOptions, name string, warm map[string]int) {
	t.Helper()
	pooled.Name = name
	sb, err := r.LaunchSandbox(t.Context(), pooled)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Destroy(context.WithoutCancel(t.Context())) })
	if pid := running(t, r)[name]; len(warm) != 1 || !slices.Contains(mapsValues(warm), pid) {
		t.Fatalf("%s runs init %d, not the pool's %v", name, pid, warm)
	}
	if _, err := sb.Exec(t.Context(), "/bin/true"); err != nil {
		t.Fatal(err)
	}
}

// poolReady returns a sandbox r's pool holds ready (of any set), or nil.
func poolReady(r *Runtime) *Sandbox {
	r.pool.mu.Lock()
	defer r.pool.mu.Unlock()
	for _, set := range r.pool.sets {
		if len(set.ready) > 0 {
			return set.ready[0]
		}
	}
	return nil
}

// waitRunning polls until want sandboxes other than except run.
func waitRunning(t *testing.T, r *Runtime, want int, except ...string) map[string]int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		m := running(t, r)
		for _, n := range except {
			delete(m, n)
		}
		if len(m) == want {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sandboxes running (%v), want %d", len(m), m, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPrewarmTake: a request that matches takes a pooled sandbox (same
// init) and gets its name, hostname, environment, workdir and — as real
// root — a read-only bind mount; the pool refills; a request that does
// not match launches cold; Close destroys the pool.
func TestPrewarmTake(t *testing.T) {
	r, err := Open(Options{Root: filepath.Join(t.TempDir(), "store")})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	importBusybox(t, r)
	if err := r.Prewarm(t.Context(), "busybox", 0); err != nil {
		t.Fatalf("Prewarm 0 = %v", err)
	}
	pooled := SandboxOptions{Snapshot: "busybox", Network: NetworkNone}
	if err := r.PrewarmSandboxes(t.Context(), pooled, 2); err != nil {
		t.Fatal(err)
	}
	before := waitRunning(t, r, 2)

	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "f"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	req := pooled
	req.Name, req.Env, req.Workdir = "taken", []string{"TAKE=yes"}, "/w/x"
	root := os.Geteuid() == 0
	// Mounts beyond the four descriptors of an exec's reply: a take of
	// five or more was read with four and fell back to a cold launch.
	const more = 6
	if root {
		req.Mounts = map[string]Mount{"/m": {Source: host, ReadOnly: true}}
		for i := range more {
			d := filepath.Join(t.TempDir(), "d")
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, "f"), []byte(strconv.Itoa(i)), 0o644); err != nil {
				t.Fatal(err)
			}
			req.Mounts["/d/"+strconv.Itoa(i)] = Mount{Source: d}
		}
	}
	script := `hostname; cat /etc/hostname; echo "$TAKE"; pwd`
	if root {
		script += `; cat /m/f; if touch /m/g 2>/dev/null; then echo writable; else echo read-only; fi; cat /d/*/f; echo`
	}
	var pid int
	err = r.RunInSandbox(t.Context(), req, func(sb *Sandbox) error {
		if sb.Name() != "taken" {
			t.Errorf("Name() = %q, want taken", sb.Name())
		}
		pid = running(t, r)["taken"]
		res, err := sb.Shell(t.Context(), script)
		if err != nil {
			return err
		}
		want := "taken\ntaken\nyes\n/w/x\n"
		if root {
			want += "from the host\nread-only\n012345\n"
		}
		if string(res.Stdout) != want {
			t.Errorf("in the taken sandbox:\n%s\nwant\n%s(stderr %s)", res.Stdout, want, res.Stderr)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(mapsValues(before), pid) {
		t.Errorf("the sandbox named taken ran init %d, not one of the pool's %v", pid, before)
	}
	if _, err := os.Stat(filepath.Join(host, "g")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the read-only mount was written through: %v", err)
	}
	// The pool refills in the background.
	after := waitRunning(t, r, 2)
	// A request that does not match (a command, another network) does not
	// take from the pool; rootless, neither does one with a bind mount.
	cold := []SandboxOptions{{Snapshot: "busybox", Network: NetworkHost}, {Snapshot: "busybox", Network: NetworkNone, Resources: Resources{PidsLimit: 64}}}
	if !root {
		cold = append(cold, SandboxOptions{Snapshot: "busybox", Network: NetworkNone, Mounts: map[string]Mount{"/m": {Source: host}}})
	}
	for _, o := range cold {
		if err := r.RunInSandbox(t.Context(), o, func(sb *Sandbox) error {
			if _, ok := after[sb.Name()]; ok {
				t.Errorf("%+v took pooled sandbox %s", o, sb.Name())
			}
			return nil
		}); err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
	}
	// A take that cannot be applied falls back to a cold launch, which
	// reports the error.
	bad := pooled
	bad.Workdir = "/etc/passwd"
	if err := r.RunInSandbox(t.Context(), bad, func(*Sandbox) error { return nil }); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("workdir /etc/passwd = %v, want not a directory", err)
	}
	waitRunning(t, r, 2)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r2, err := Open(Options{Root: r.root})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if m := running(t, r2); len(m) != 0 {
		t.Errorf("running after Close: %v", m)
	}
}

// TestPrewarmTakeEtcVolume: a take that mounts a volume at /etc keeps
// the sandbox's own /etc/hostname and /etc/hosts, made for the take's
// name, over it (as a cold launch does, and docker): the volume only
// gets the empty mount points. As real root the take mounts it into a
// pooled sandbox; rootless the request launches cold, and must show the
// same.
func TestPrewarmTakeEtcVolume(t *testing.T) {
	r, pooled, before := prewarmedOne(t)
	var err error
	req := pooled
	req.Name = "taken"
	req.Mounts = map[string]Mount{"/etc": {Volume: "ev", NoCopy: true}}
	var pid int
	err = r.RunInSandbox(t.Context(), req, func(sb *Sandbox) error {
		pid = running(t, r)["taken"]
		res, err := sb.Shell(t.Context(), "cat /etc/hostname; grep -c taken /etc/hosts; true")
		if err != nil {
			return err
		}
		if got, want := string(res.Stdout), "taken\n1\n"; got != want {
			t.Errorf("a volume at /etc, in the taken sandbox: /etc/hostname and the lines of /etc/hosts naming it:\n%s\nwant\n%s(stderr %s)", got, want, res.Stderr)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if took := slices.Contains(mapsValues(before), pid); took != runtime.CanTakeMounts() {
		t.Errorf("the sandbox ran init %d, the pool's were %v: taken from the pool = %v, want %v", pid, before, took, runtime.CanTakeMounts())
	}
	for _, n := range []string{"hostname", "hosts"} {
		if b, err := os.ReadFile(filepath.Join(r.root, "volumes", "ev", "data", n)); err != nil || len(b) != 0 {
			t.Errorf("the volume's %s on the host = %q, %v; want the empty mount point", n, b, err)
		}
	}
}

func mapsValues(m map[string]int) []int {
	var out []int
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestPrewarmKilled: a process killed with its pool leaves no sandbox
// running, and gc removes what it left.
func TestPrewarmKilled(t *testing.T) {
	if root := os.Getenv("LIGHTBOX_TEST_POOL_CHILD"); root != "" {
		poolChild(root)
		return
	}
	root := filepath.Join(t.TempDir(), "store")
	r, err := Open(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	importBusybox(t, r)
	cmd, line := startChild(t, "TestPrewarmKilled", "LIGHTBOX_TEST_POOL_CHILD", root)
	if line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child said %q, want ready", line)
	}
	pids := running(t, r)
	if len(pids) != 3 {
		t.Errorf("child's pool: %v, want 3 sandboxes", pids)
	}
	cmd.Process.Kill()
	cmd.Wait()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	// Every init ends (its lock is free: a zombie leader whose threads
	// are still exiting holds it yet).
	for len(running(t, r)) > 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("pooled sandboxes still running after their process was killed: %v", running(t, r))
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := r.GC(t.Context()); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(root, "sandboxes"))
	for _, e := range ents {
		if names := e.Name(); names != ".lock" && names != ".targets" && !strings.HasPrefix(names, ".init-") {
			t.Errorf("left after gc: %s", names)
		}
	}
	if t.Failed() {
		list, err := r.ListSandboxes(t.Context())
		t.Logf("sandboxes: %+v (%v)", list, err)
		for n, pid := range pids {
			b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
			t.Logf("%s: pid %d: kill 0 = %v, stat %q %v", n, pid, unix.Kill(pid, 0), b, err)
		}
	}
}

// poolChild prewarms 3 sandboxes, says ready, and waits to be killed.
func poolChild(root string) {
	r, err := Open(Options{Root: root})
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	if err := r.PrewarmSandboxes(context.Background(), SandboxOptions{Snapshot: "busybox", Network: NetworkNone}, 3); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("ready\n")
	select {}
}

// TestPrewarmHandoverAfterTake: a pooled sandbox's init does not hand
// over to a fresh copy of itself while it waits in the pool (a take after
// a handover paid the fresh copy's first-use costs: bench/NOTES.md) — a
// sandbox launched after it, idle as long, has handed over by then — and
// hands over once taken, used and idle; the sandbox keeps what the take
// gave it (its name in the hostname, /etc/hostname and /etc/hosts, which
// the new init rewrites through the descriptors the handover carried, and
// its environment, workdir and — as real root — a read-only bind mount)
// on both sides of that handover.
func TestPrewarmHandoverAfterTake(t *testing.T) {
	r, pooled, warm := prewarmedOne(t)
	pid := mapsValues(warm)[0]
	// The witness: launched after the pool's sandbox was ready (cold:
	// a take does not apply a timeout), it idles as long and hands over
	// at its launch's first trim.
	cold := pooled
	cold.Timeout = time.Hour
	witness, err := r.LaunchSandbox(t.Context(), cold)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = witness.Destroy(context.WithoutCancel(t.Context())) })
	if wpid := running(t, r)[witness.Name()]; wpid == pid {
		t.Fatalf("the witness took the pool's sandbox")
	} else {
		waitHandedOver(t, "the witness's init", wpid)
	}
	if err := witness.Destroy(t.Context()); err != nil {
		t.Fatal(err)
	}
	if handedOver(t, pid) {
		t.Fatalf("the pooled init %d handed over while it waited in the pool", pid)
	}

	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "f"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	req := pooled
	req.Name, req.Env, req.Workdir = "late", []string{"TAKE=yes"}, "/w/x"
	script := `hostname; cat /etc/hostname; grep -c late /etc/hosts; echo "$TAKE"; pwd`
	want := "late\nlate\n1\nyes\n/w/x\n"
	root := os.Geteuid() == 0
	if root {
		req.Mounts = map[string]Mount{"/m": {Source: host, ReadOnly: true}}
		script += `; cat /m/f; if touch /m/g 2>/dev/null; then echo writable; else echo read-only; fi`
		want += "from the host\nread-only\n"
	}
	err = r.RunInSandbox(t.Context(), req, func(sb *Sandbox) error {
		if p := running(t, r)["late"]; p != pid {
			t.Errorf("the sandbox named late ran init %d, not the pool's %d", p, pid)
		}
		for _, when := range []string{"taken", "after its init handed over"} {
			if when != "taken" {
				waitHandedOver(t, "the taken sandbox's init", pid)
			}
			res, err := sb.Shell(t.Context(), script)
			if err != nil {
				return err
			}
			if got := string(res.Stdout); got != want {
				t.Errorf("in the sandbox %s:\n%s\nwant (its name in the hostname, /etc/hostname and /etc/hosts, env, workdir, mount)\n%s(stderr %q)", when, got, want, res.Stderr)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(host, "g")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the read-only mount was written through: %v", err)
	}
}

// handedOver says whether the init pid runs as a handover's new init.
func handedOver(t *testing.T, pid int) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		t.Fatalf("init %d: %v", pid, err)
	}
	return strings.Contains(string(b), "\x00handover\x00")
}

// waitHandedOver polls until the init pid has handed over.
func waitHandedOver(t *testing.T, what string, pid int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !handedOver(t, pid); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s (%d) never handed over", what, pid)
		}
	}
}

// TestPrewarmInvalidRequest: a request whose options are invalid fails
// with the same error as without a pool and leaves the pool's sandbox
// alone; each such request destroyed a warm sandbox (and made the pool
// launch another).
func TestPrewarmInvalidRequest(t *testing.T) {
	r, err := Open(Options{Root: filepath.Join(t.TempDir(), "store")})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	importBusybox(t, r)
	ctx := t.Context()
	if err := r.Prewarm(ctx, "busybox", 1); err != nil {
		t.Fatal(err)
	}
	warm := running(t, r)
	for _, opts := range []SandboxOptions{
		{Snapshot: "busybox", Env: []string{"=x"}},
		{Snapshot: "busybox", Name: "a/b"},
		{Snapshot: "busybox", Workdir: "rel"},
		// Not known without the disk, but before a take (as root, a
		// take makes bind mounts).
		{Snapshot: "busybox", Mounts: map[string]Mount{"/w": {Source: filepath.Join(t.TempDir(), "missing")}}},
	} {
		if _, err := r.LaunchSandbox(ctx, opts); err == nil {
			t.Fatalf("LaunchSandbox(%+v) succeeded, want an error", opts)
		}
	}
	if got := running(t, r); !maps.Equal(got, warm) {
		t.Errorf("running after invalid requests: %v, want the warm sandbox as it was: %v", got, warm)
	}
}

// TestPrewarmVolumeFill: a request whose new volume is to be filled from
// the image (a warm sandbox is past the setup that fills it) launches
// cold and sees the image's files in the volume, leaving the pool as it
// was; as root, one whose volume's mount point the image lacks (nothing
// to fill) still takes from the pool.
func TestPrewarmVolumeFill(t *testing.T) {
	r, pooled, before := prewarmedOne(t)
	var err error
	req := pooled
	req.Mounts = map[string]Mount{"/bin": {Volume: "bin"}}
	err = r.RunInSandbox(t.Context(), req, func(sb *Sandbox) error {
		if pid := running(t, r)[sb.Name()]; slices.Contains(mapsValues(before), pid) {
			t.Errorf("a request filling a new volume took pooled sandbox %s", sb.Name())
		}
		res, err := sb.Exec(t.Context(), "/bin/busybox", "echo", "filled")
		if err != nil || string(res.Stdout) != "filled\n" {
			t.Errorf("/bin/busybox in a new volume over /bin: %v, %v; want the image's busybox", res, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		return // rootless, a request with a mount never takes
	}
	if after := waitRunning(t, r, 1); !maps.Equal(after, before) {
		t.Errorf("the pool changed from %v to %v for a request it did not serve", before, after)
	}
	req.Mounts = map[string]Mount{"/cache": {Volume: "cache"}}
	err = r.RunInSandbox(t.Context(), req, func(sb *Sandbox) error {
		if pid := running(t, r)[sb.Name()]; !slices.Contains(mapsValues(before), pid) {
			t.Errorf("a request with a volume where the image has nothing launched cold (init %d, the pool's %v)", pid, before)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPrewarmTakeEnded: a pooled sandbox that ended while pooled (`lightbox
// rm -f` of its generated name, as ListSandboxes shows it; an api client's
// sandbox.destroy) is never handed out: a request with nothing to apply
// to it (no name, mounts, env, workdir, user) got the dead sandbox, whose
// first Exec failed with ErrNotRunning. The request launches cold.
func TestPrewarmTakeEnded(t *testing.T) {
	r, pooled, warm := prewarmedOne(t)
	var name string
	for n := range warm {
		name = n
	}
	if err := r.RemoveSandbox(t.Context(), name, RemoveSandboxOptions{Force: true, Grace: time.Second}); err != nil {
		t.Fatal(err)
	}
	// The pool's handle learns of the end when its launcher reaps the
	// init, just after the removal saw the init gone.
	pooledSb := poolReady(r)
	if pooledSb == nil || pooledSb.name != name {
		t.Fatalf("the pool does not hold %s: %v", name, pooledSb)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !pooledSb.rs.InitExited() {
		if time.Now().After(deadline) {
			t.Fatalf("the pool's handle on %s never saw its init exit", name)
		}
		time.Sleep(5 * time.Millisecond)
	}
	err := r.RunInSandbox(t.Context(), pooled, func(sb *Sandbox) error {
		if sb.Name() == name {
			t.Errorf("the request got %s, the sandbox removed while pooled", name)
		}
		res, err := sb.Exec(t.Context(), "/bin/echo", "alive")
		if err != nil || string(res.Stdout) != "alive\n" {
			t.Errorf("Exec in the sandbox the request got: %v, %v; want alive", res, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPrewarmListsPooled: ListSandboxes says which sandboxes a warm pool
// holds (they run under generated names, and `lightbox ps` lists them);
// one a launch took is no longer pooled, whether the request named it or
// took it as it is.
func TestPrewarmListsPooled(t *testing.T) {
	r, pooled, warm := prewarmedOne(t)
	listed := func() map[string]bool {
		t.Helper()
		list, err := r.ListSandboxes(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, in := range list {
			out[in.Name] = in.Pooled
		}
		return out
	}
	first := slices.Collect(maps.Keys(warm))[0]
	if got := listed(); !maps.Equal(got, map[string]bool{first: true}) {
		t.Fatalf("listed (name: pooled) %v, want %s pooled", got, first)
	}
	// Nothing to apply: the request takes the sandbox as it is.
	sb, err := r.LaunchSandbox(t.Context(), pooled)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Destroy(context.WithoutCancel(t.Context())) })
	if sb.Name() != first {
		t.Fatalf("the launch got %s, not the pool's %s", sb.Name(), first)
	}
	if _, err := sb.Exec(t.Context(), "/bin/true"); err != nil {
		t.Fatalf("Exec in the sandbox taken as it is: %v", err)
	}
	if listed()[first] {
		t.Errorf("%s, taken, is still listed as pooled", first)
	}
	second := slices.Collect(maps.Keys(waitRunning(t, r, 1, first)))[0]
	if got := listed(); !got[second] {
		t.Errorf("listed (name: pooled) %v, want the refill %s pooled", got, second)
	}
	// Listed from its launch's start; a take needs it ready.
	for deadline := time.Now().Add(20 * time.Second); poolReady(r) == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the pool's refill %s never became ready", second)
		}
	}
	named := pooled
	named.Name = "named"
	nsb, err := r.LaunchSandbox(t.Context(), named)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nsb.Destroy(context.WithoutCancel(t.Context())) })
	if got := listed(); got["named"] || got[first] {
		t.Errorf("listed (name: pooled) %v, want named and %s not pooled", got, first)
	} else if _, ok := got[second]; ok {
		t.Errorf("listed %v: the pool's %s is still there under its name, not taken as named", got, second)
	}
}

// TestPrewarmShrinkWaitsForRefill: Prewarm(0) right after a take, while
// the refill that take started is still launching, returns only once
// that launch is gone too: a caller that empties the pool and then
// removes the snapshot (or lists its sandboxes) found a pooled sandbox
// still there, holding a lease on it (the TypeScript client's test of
// prewarm saw it listed).
func TestPrewarmShrinkWaitsForRefill(t *testing.T) {
	r, pooled, warm := prewarmedOne(t)
	// Prewarm(0) comes as soon as the refill's sandbox shows, early in
	// its launch.
	takeFirst(t, r, pooled, "taken", warm)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Millisecond) {
		infos, err := r.ListSandboxes(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) > 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pool did not start its refill")
		}
	}
	if err := r.PrewarmSandboxes(t.Context(), pooled, 0); err != nil {
		t.Fatal(err)
	}
	infos, err := r.ListSandboxes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, in := range infos {
		names = append(names, in.Name+":"+in.Status)
	}
	if len(infos) != 1 || infos[0].Name != "taken" {
		t.Errorf("after Prewarm(0): sandboxes %v, want only taken", names)
	}
}

// TestPrewarmRetriesAfterFailure: a refill whose launch fails (here made
// to, once) is tried again after a back-off: before, one failed launch
// (a transient one under load included) stopped the pool's refills until
// the next Prewarm, and every later request launched cold.
func TestPrewarmRetriesAfterFailure(t *testing.T) {
	r, pooled, warm := prewarmedOne(t)
	var failed sync.Once
	launch := fillLaunch
	fillLaunch = func(ctx context.Context, r *Runtime, opts SandboxOptions) (sb *Sandbox, err error) {
		failed.Do(func() { err = errors.New("a launch made to fail") })
		if err != nil {
			return nil, err
		}
		return launch(ctx, r, opts)
	}
	t.Cleanup(func() { fillLaunch = launch })
	// The refill fails; the retry a second later fills the pool again.
	takeFirst(t, r, pooled, "taken", warm)
	var refilled string
	for deadline := time.Now().Add(20 * time.Second); refilled == ""; time.Sleep(10 * time.Millisecond) {
		if sb := poolReady(r); sb != nil {
			refilled = sb.name
		}
		if time.Now().After(deadline) {
			t.Fatal("the pool was not refilled after its failed launch")
		}
	}
	refill := running(t, r)
	second := pooled
	second.Name = "second"
	sb, err := r.LaunchSandbox(t.Context(), second)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(context.WithoutCancel(t.Context()))
	if pid := running(t, r)["second"]; pid != refill[refilled] {
		t.Errorf("second runs init %d, not the retried refill's (%s, %d)", pid, refilled, refill[refilled])
	}
}
