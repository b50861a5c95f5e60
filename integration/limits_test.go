//go:build linux

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/testutil"
	"github.com/containerd/cgroups/v3"
	"golang.org/x/sys/unix"
)

// Bad resource flags are refused before anything is created, naming the
// flag and the reason.
func TestCLILimitsBadInput(t *testing.T) {
	root, _ := newStore(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--memory", "0"}, "--memory"},
		{[]string{"--memory", "12x"}, "--memory"},
		{[]string{"--memory", "1m"}, "below"},
		{[]string{"--cpus", "-1"}, "--cpus"},
		{[]string{"--cpus", "1000"}, "--cpus"},
		{[]string{"--pids-limit", "1"}, "--pids-limit"},
		{[]string{"--shm-size", "-5m"}, "--shm-size"},
		{[]string{"--memory-swap", "64m"}, "--memory-swap"},
		{[]string{"--memory", "99999999999g"}, "too large"},
		// Past what the host's filesystem takes in one file (the loop
		// backend's image); rootless, refused for want of a backend.
		{[]string{"--disk-mib", "99999999999"}, "writable layer"},
	} {
		args := append(append([]string{"run", "--network", "none", "--name", "bad"}, tc.args...), "busybox", "true")
		r := lb(t, root, "", args...)
		if r.code != 125 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("run %s: exit %d, stderr %q; want 125 and an error saying %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
		}
	}
	if ents, _ := os.ReadDir(root + "/sandboxes"); len(ents) > 1 { // .lock only
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("refused runs left %v in the sandboxes dir", names)
	}
	if ents, _ := os.ReadDir(root + "/disks"); len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("refused runs left %v in the disks dir", names)
	}
}

// The largest --pids-limit the library accepts (the kernel's maximum)
// runs where a cgroup holds it: the sandbox's cgroup, which allows the
// init's threads beyond it, stays within what pids.max takes. Where
// RLIMIT_NPROC holds it (no cgroup), a limit above the caller's own hard
// limit is refused before anything is made, saying so.
func TestCLIPidsLimitAtKernelMaximum(t *testing.T) {
	root, _ := newStore(t)
	r := lb(t, root, "", "run", "--network", "none", "--name", "maxpids", "--pids-limit", "4194304", "busybox", "echo", "ran")
	var nproc unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NPROC, &nproc); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 && cgroups.Mode() != cgroups.Unified && nproc.Max < 4194304 {
		if r.code != 125 || !strings.Contains(r.stderr, "--pids-limit") || !strings.Contains(r.stderr, "hard RLIMIT_NPROC") || !strings.Contains(r.stderr, "at most") {
			t.Errorf("rootless run --pids-limit 4194304: exit %d, stderr %q; want 125 and the caller's hard RLIMIT_NPROC as the reason", r.code, r.stderr)
		}
		if strings.Contains(r.stderr, "launch sandbox") {
			t.Errorf("rootless run --pids-limit 4194304 was refused only at launch: %q", r.stderr)
		}
		return
	}
	if r.code != 0 || r.stdout != "ran\n" {
		t.Errorf("run --pids-limit 4194304: exit %d, stdout %q, stderr %q; want it to run", r.code, r.stdout, r.stderr)
	}
}

// --pids-limit N lets the workloads run N processes at once and refuses
// the N+1st: the main command's own (sh and N-1 sleeps, then one more
// fork), and the main command's and an Exec's together (then one more
// fork, and then one more Exec). The init's spawner thread, which forks
// every workload from inside the workloads' cgroup, took one of the N:
// sh and 15 sleeps were refused at --pids-limit 16. Where RLIMIT_NPROC
// holds the limit (no cgroup: rootless on cgroup v1) the kernel counts
// per uid, and root's count holds the init's threads too (Resources.
// PidsLimit says so): there the workloads run as uid 1000, whose count
// is theirs alone.
func TestCLIPidsLimitRunsN(t *testing.T) {
	root, _ := newStore(t)
	const n = 16
	limit := []string{"--network", "none", "--pids-limit", fmt.Sprint(n)}
	var user []string
	cgroupHolds := os.Geteuid() == 0 || cgroups.Mode() == cgroups.Unified
	if !cgroupHolds {
		user = []string{"--user", "1000"}
	}
	// sleeps forks sleepers that hold no pipe of the command's.
	sleeps := func(k int) string {
		return fmt.Sprintf("for i in $(seq %d); do sleep 1000 </dev/null >/dev/null 2>&1 & done", k)
	}
	args := append(append(append([]string{"run", "--rm"}, limit...), user...), "busybox", "sh", "-c",
		fmt.Sprintf("%s; echo %d; sleep 1000 </dev/null >/dev/null 2>&1 & echo %d", sleeps(n-1), n, n+1))
	if r := lb(t, root, "", args...); r.stdout != fmt.Sprintf("%d\n", n) || r.code == 0 || !strings.Contains(r.stderr, "can't fork") {
		t.Errorf("run --pids-limit %d: sh and %d sleeps, then one more: exit %d, stdout %q, stderr %q; want %d processes and then a refused fork", n, n-1, r.code, r.stdout, r.stderr, n)
	}

	lbOK(t, root, append(append(append([]string{"run", "-d", "--name", "full"}, limit...), user...), "busybox", "sleep", "1000")...)
	// The main command, an Exec's sh and n-2 sleeps: n; one fork more.
	args = append(append([]string{"exec"}, user...), "full", "sh", "-c",
		fmt.Sprintf("%s; echo %d; sleep 1000 </dev/null >/dev/null 2>&1 & echo %d", sleeps(n-2), n, n+1))
	if r := lb(t, root, "", args...); r.stdout != fmt.Sprintf("%d\n", n) || r.code == 0 || !strings.Contains(r.stderr, "can't fork") {
		t.Errorf("exec at --pids-limit %d: the main command, sh and %d sleeps, then one more: exit %d, stdout %q, stderr %q; want %d processes and then a refused fork", n, n-2, r.code, r.stdout, r.stderr, n)
	}
	// n-1 are left (the Exec's sh is gone): an Exec that stays makes
	// them n, and it says so once it is the n-th.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	nth := exec.CommandContext(ctx, binPath, append(append([]string{"--root", root, "exec"}, user...), "full", "sh", "-c", "echo in; exec sleep 1000")...)
	out, err := nth.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var nthErr testutil.Buffer
	nth.Stderr = &nthErr
	if err := nth.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		// Its sandbox is gone by now, or goes in the cleanup: its exit
		// status is not the test's.
		_ = nth.Process.Kill()
		_ = nth.Wait()
	}()
	if line, err := bufio.NewReader(out).ReadString('\n'); line != "in\n" {
		_ = nth.Process.Kill()
		_ = nth.Wait() // its stderr, complete
		t.Fatalf("exec of the %d-th process: %q, %v, stderr %q; want it to run", n, line, err, nthErr.String())
	}
	// One more Exec is refused. (Not where RLIMIT_NPROC holds it: the
	// init forks as root and the child becomes uid 1000 before its exec,
	// and the kernel checks the new uid's count at setuid before the
	// child is counted in it: an Exec as another user makes N+1, whose
	// own forks are then refused.)
	if r := lb(t, root, "", append(append([]string{"exec"}, user...), "full", "true")...); cgroupHolds && (r.code == 0 || !strings.Contains(r.stderr, "pids limit")) {
		t.Errorf("exec with the workloads at --pids-limit %d: exit %d, stderr %q; want a refusal naming the limit", n, r.code, r.stderr)
	}
	var info []struct {
		Limits map[string]string `json:"limits"`
		Usage  *struct {
			Pids      int64 `json:"pids"`
			PidsLimit int64 `json:"pidsLimit"`
		} `json:"usage"`
	}
	if err := json.Unmarshal([]byte(lbOK(t, root, "inspect", "full")), &info); err != nil || len(info) != 1 {
		t.Fatalf("inspect full: %v %v", info, err)
	}
	if !strings.HasSuffix(info[0].Limits["pids"], fmt.Sprintf(" %d", n)) && !strings.Contains(info[0].Limits["pids"], fmt.Sprintf(" %d per uid", n)) {
		t.Errorf("inspect: limits[pids] = %q, want it to say %d", info[0].Limits["pids"], n)
	}
	if cgroupHolds {
		if u := info[0].Usage; u == nil || u.Pids != n || u.PidsLimit != n {
			t.Errorf("inspect with the workloads at their limit: usage %+v, want pids %d of %d", u, n, n)
		}
	} else if !strings.HasPrefix(info[0].Limits["pids"], "rlimit ") {
		t.Errorf("inspect: limits[pids] = %q, want RLIMIT_NPROC to hold it (the workloads run as uid 1000 for it)", info[0].Limits["pids"])
	}
	lbOK(t, root, "rm", "-f", "full")
}

// What --pids-limit N counts, as a user sees it: a main command that
// forks until refused. Where a cgroup holds the limit (root; a delegated
// v2 subtree) it bounds the workloads alone: sh and N-1 sleeps run, the
// init's threads are beside them. Where RLIMIT_NPROC holds it (rootless
// on cgroup v1) the kernel counts every task of the uid in the sandbox's
// user namespace, and the init runs as the sandbox's root: its threads
// and the workloads' processes make N together, so a root workload gets
// N less the init's threads (Resources.PidsLimit, README's Limits). Each
// step prints the workloads' count and every task in the sandbox's pid
// namespace (the init's threads included), read with shell builtins only.
func TestCLIPidsLimitCounts(t *testing.T) {
	root, _ := newStore(t)
	cgroupHolds := os.Geteuid() == 0 || cgroups.Mode() == cgroups.Unified
	const script = `i=1; while :; do set -- /proc/[0-9]*/task/*; echo "$i $#"; sleep 1000 </dev/null >/dev/null 2>&1 & i=$((i+1)); done`
	for _, n := range []int{16, 32} {
		r := lb(t, root, "", "run", "--rm", "--network", "none", "--pids-limit", fmt.Sprint(n), "busybox", "sh", "-c", script)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		var workloads, tasks int
		if _, err := fmt.Sscanf(lines[len(lines)-1], "%d %d", &workloads, &tasks); err != nil || r.code == 0 || !strings.Contains(r.stderr, "can't fork") {
			t.Errorf("run --pids-limit %d, forking until refused: exit %d, last line %q (%v), stderr %q; want counts and a refused fork", n, r.code, lines[len(lines)-1], err, r.stderr)
			continue
		}
		initThreads := tasks - workloads
		t.Logf("--pids-limit %d: %d workload processes, %d tasks in all (the init's %d threads)", n, workloads, tasks, initThreads)
		if initThreads < 1 {
			t.Errorf("--pids-limit %d: %d tasks for %d workload processes; want the init's threads among them", n, tasks, workloads)
		}
		if cgroupHolds && workloads != n {
			t.Errorf("--pids-limit %d in a cgroup: %d workload processes before a fork was refused, want %d (the init's %d threads are not counted)", n, workloads, n, initThreads)
		}
		if !cgroupHolds && tasks != n {
			t.Errorf("--pids-limit %d as RLIMIT_NPROC: %d workload processes and the init's %d threads before a fork was refused, want %d together", n, workloads, initThreads, n)
		}
	}
}

// gc removes a capped layer's loop image that a crash left without its
// directory (Create makes the image, then the directory).
func TestCLIGCRemovesOrphanDiskImage(t *testing.T) {
	root, _ := newStore(t)
	if err := os.MkdirAll(root+"/disks", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root+"/disks/crashed-0123abcd.img", make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	out := lbOK(t, root, "gc")
	if !strings.Contains(out, "disk crashed-0123abcd") {
		t.Errorf("gc printed %q; want it to name disk crashed-0123abcd", out)
	}
	if ents, _ := os.ReadDir(root + "/disks"); len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("gc left %v in the disks dir", names)
	}
}

// A memory hog is reported as out of memory with 137 (where a cgroup can
// be made); rootless on cgroup v1 --memory is refused with the reason.
func TestCLIOutOfMemory(t *testing.T) {
	root, _ := newStore(t)
	r := lb(t, root, "", "run", "--network", "none", "--memory", "64m", "busybox", "sh", "-c", "head -c 300m /dev/zero | tail >/dev/null")
	if os.Geteuid() != 0 && cgroups.Mode() != cgroups.Unified {
		if r.code != 125 || !strings.Contains(r.stderr, "no delegation") || !strings.Contains(r.stderr, "root") {
			t.Errorf("rootless --memory on cgroup v1: exit %d, stderr %q; want 125 and the reason", r.code, r.stderr)
		}
		return
	}
	if r.code != 137 || !strings.Contains(r.stderr, "out of memory") {
		t.Errorf("memory hog: exit %d, stderr %q; want 137 and \"out of memory\"", r.code, r.stderr)
	}
}

// ps --format json and inspect say how each limit holds; logs of a
// detached sandbox are capped and say so.
func TestCLILimitsReported(t *testing.T) {
	root, _ := newStore(t)
	lbOK(t, root, "run", "-d", "--network", "none", "--name", "chatty", "busybox", "sh", "-c",
		"i=0; while [ $i -lt 20 ]; do head -c 1048576 /dev/zero | tr '\\0' a; echo; i=$((i+1)); done; echo last-line")
	lb(t, root, "", "wait", "chatty")
	var list []struct {
		Name   string            `json:"name"`
		Limits map[string]string `json:"limits"`
	}
	if err := json.Unmarshal([]byte(lbOK(t, root, "ps", "-a", "--format", "json")), &list); err != nil || len(list) != 1 {
		t.Fatalf("ps --format json: %v %v", list, err)
	}
	l := list[0].Limits
	wantPids := "cgroup v1 4096"
	switch {
	case cgroups.Mode() == cgroups.Unified:
		wantPids = "" // v2: depends on delegation
	case os.Geteuid() != 0:
		// lbtest has a subordinate range: the kernel counts per uid.
		wantPids = "rlimit 4096 per uid (RLIMIT_NPROC: a process that changes uid starts a new count)"
		if !strings.Contains(l["memory"], "no cgroup delegation") {
			t.Errorf("limits[memory] = %q, want it to say there is no cgroup delegation", l["memory"])
		}
	}
	if wantPids != "" && l["pids"] != wantPids {
		t.Errorf("limits[pids] = %q, want %q", l["pids"], wantPids)
	}
	if l["shm"] != "tmpfs 64 MiB" || l["logs"] != "16 MiB per stream, newest kept" {
		t.Errorf("limits = %v, want shm tmpfs 64 MiB and logs capped at 16 MiB", l)
	}
	r := lb(t, root, "", "logs", "chatty")
	if !strings.HasSuffix(r.stdout, "last-line\n") || !strings.Contains(r.stderr, "dropped") || len(r.stdout) > 16<<20 {
		t.Errorf("logs: %d bytes ending %q, stderr %q; want at most 16 MiB ending with last-line and a note that older output was dropped", len(r.stdout), r.stdout[max(0, len(r.stdout)-20):], r.stderr)
	}
	if out := lbOK(t, root, "inspect", "chatty"); !strings.Contains(out, `"limits"`) {
		t.Errorf("inspect: %s", out)
	}
	lbOK(t, root, "rm", "chatty")
}

// TestCLIStats: stats reports, per running sandbox, its CPU over a short
// sample, its memory and pids against their limits (where a cgroup holds
// them; rootless on this host none is delegated, and the row says so),
// in a table and as JSON; an unknown name is an error, and docker's
// --no-stream is accepted (stats prints once).
func TestCLIStats(t *testing.T) {
	root, _ := newStore(t)
	cgroupLimits := os.Geteuid() == 0 || cgroups.Mode() == cgroups.Unified
	limits := []string{"--pids-limit", "50"}
	if cgroupLimits {
		limits = append(limits, "-m", "64m") // refused where no cgroup can hold it
	}
	lbOK(t, root, append(append([]string{"run", "-d", "--network", "none", "--name", "busy"}, limits...), "busybox", "sh", "-c", "while :; do :; done")...)
	lbOK(t, root, append(append([]string{"run", "-d", "--network", "none", "--name", "idle"}, limits...), "busybox", "sleep", "1000")...)
	defer lb(t, root, "", "rm", "-f", "busy", "idle")
	var rows []struct {
		Name       string  `json:"name"`
		Status     string  `json:"status"`
		CPUPercent float64 `json:"cpuPercent"`
		Usage      *struct {
			MemoryBytes      int64 `json:"memoryBytes"`
			MemoryLimitBytes int64 `json:"memoryLimitBytes"`
			Pids             int64 `json:"pids"`
			PidsLimit        int64 `json:"pidsLimit"`
		} `json:"usage"`
		Note string `json:"note"`
	}
	out := lbOK(t, root, "stats", "--format", "json", "busy", "idle")
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 2 || rows[0].Name != "busy" || rows[1].Name != "idle" {
		t.Fatalf("stats --format json busy idle: %v\n%s", err, out)
	}
	table := lbOK(t, root, "stats", "--no-stream")
	if !strings.HasPrefix(table, "NAME  ") || !strings.Contains(table, "\nbusy ") || !strings.Contains(table, "\nidle ") {
		t.Errorf("stats table:\n%s", table)
	}
	for _, r := range rows {
		if r.Status != "running" {
			t.Errorf("%s: status %q", r.Name, r.Status)
		}
		if !cgroupLimits {
			if r.Usage != nil || !strings.Contains(r.Note, "no cgroup") {
				t.Errorf("%s rootless without delegation: usage %+v, note %q; want none and a note saying there is no cgroup", r.Name, r.Usage, r.Note)
			}
			continue
		}
		if r.Usage == nil {
			t.Fatalf("%s: no usage (note %q)", r.Name, r.Note)
		}
		if u := r.Usage; u.MemoryLimitBytes != 64<<20 || u.PidsLimit != 50 || u.MemoryBytes <= 0 || u.Pids < 1 {
			t.Errorf("%s: usage %+v, want memory under a 64 MiB limit and pids under 50", r.Name, u)
		}
	}
	if cgroupLimits {
		// A loop that never sleeps against one that only sleeps.
		if busy, idle := rows[0].CPUPercent, rows[1].CPUPercent; busy < 5 || idle >= busy {
			t.Errorf("cpu: busy %.2f%%, idle %.2f%%; want the busy loop's above 5%% and above the sleeper's", busy, idle)
		}
		if !strings.Contains(table, "/ 64MiB") || !strings.Contains(table, " / 50") {
			t.Errorf("stats table without the limits:\n%s", table)
		}
	}
	if r := lb(t, root, "", "stats", "nosuch"); r.code != 125 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("stats nosuch: exit %d, stderr %q; want 125, not found", r.code, r.stderr)
	}
}
