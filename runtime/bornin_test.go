//go:build linux

package runtime

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/beamhop/lightbox/internal/reexec"
	"github.com/beamhop/lightbox/internal/testutil"
)

// The init is in every one of its sandbox's cgroups from its start (on
// cgroup v1 it is cloned from a launcher thread that joined them), and no
// thread of the launcher is left in them afterwards: the launcher's own
// limits and the sandbox's removal (which kills what its cgroups hold)
// never reach it.
func TestInitBornInCgroup(t *testing.T) {
	e := newEnv(t)
	needCgroup(t)
	var sbs []*Sandbox
	for i := range 3 {
		sbs = append(sbs, e.launch(t, e.spec("born"+strconv.Itoa(i))))
	}
	checkBornIn(t, sbs)
}

// checkBornIn: each sandbox's init is in all its cgroups, and no thread
// of this process is in any of them.
func checkBornIn(t *testing.T, sbs []*Sandbox) {
	t.Helper()
	for _, sb := range sbs {
		st, err := readState(sb.dir)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(sb.Pid()) + "/cgroup")
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range st.Cgroup.dirs() {
			rel := strings.TrimPrefix(d, unifiedMount)
			if st.Cgroup.Version == 1 {
				rel = strings.TrimPrefix(rel, "/"+strings.Split(strings.TrimPrefix(rel, "/"), "/")[0])
			}
			if !strings.Contains(string(b), ":"+rel+"\n") {
				t.Errorf("init %d of %s is not in its cgroup %s:\n%s", sb.Pid(), sb.Name(), d, b)
			}
		}
		tasks, err := filepath.Glob("/proc/self/task/*/cgroup")
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range tasks {
			b, err := os.ReadFile(f)
			if err != nil {
				continue // the thread ended meanwhile
			}
			if strings.Contains(string(b), "/"+filepath.Base(st.Cgroup.dirs()[0])) {
				t.Errorf("a thread of the launcher is in %s's cgroups (%s):\n%s", sb.Name(), f, b)
			}
		}
	}
}

// A launcher that holds much memory starts the init through a small
// intermediate (reexec's StartVia, the clone role) instead of forking
// itself: the init is still this process's child, born in its cgroups,
// with the same user namespace and id mapping; the intermediate is gone
// and reaped; the sandbox works, and a tight pids limit (which would
// count the intermediate's threads had it joined the cgroups) holds.
func TestLaunchVia(t *testing.T) {
	e := newEnv(t)
	forceVia = true
	t.Cleanup(func() { forceVia = false })
	direct := func() *Sandbox {
		forceVia = false
		defer func() { forceVia = true }()
		before := viaLaunches.Load()
		sb := e.launch(t, e.spec("direct"))
		if viaLaunches.Load() != before {
			t.Fatal("a small launcher went through the intermediate")
		}
		return sb
	}()
	spec := e.spec("via")
	spec.Limits = Limits{Pids: 32}
	before := viaLaunches.Load()
	sb := e.launch(t, spec)
	if viaLaunches.Load() != before+1 {
		t.Fatal("the launch did not go through the intermediate")
	}
	if ppid := statField(t, sb.Pid(), 3); ppid != strconv.Itoa(os.Getpid()) {
		t.Errorf("init %d's parent is %s, want this process (%d)", sb.Pid(), ppid, os.Getpid())
	}
	for _, ns := range []string{"user", "pid", "mnt", "net", "uts", "ipc", "cgroup"} {
		a, errA := os.Readlink("/proc/" + strconv.Itoa(sb.Pid()) + "/ns/" + ns)
		b, errB := os.Readlink("/proc/self/ns/" + ns)
		if errA != nil || errB != nil || a == b {
			t.Errorf("init's %s namespace %q (%v), ours %q (%v): want a new one", ns, a, errA, b, errB)
		}
	}
	// The same mapping as a directly cloned init's.
	for _, f := range []string{"uid_map", "gid_map", "setgroups"} {
		a, errA := os.ReadFile("/proc/" + strconv.Itoa(sb.Pid()) + "/" + f)
		b, errB := os.ReadFile("/proc/" + strconv.Itoa(direct.Pid()) + "/" + f)
		if errA != nil || errB != nil || string(a) != string(b) {
			t.Errorf("%s via the intermediate %q (%v), direct %q (%v)", f, a, errA, b, errB)
		}
	}
	if out := sh(t, sb, "id -u; cat /proc/1/comm"); out != "0\n"+statComm(t, sb.Pid())+"\n" {
		t.Errorf("in the sandbox: id -u and PID 1's name %q, want 0 and the init's", out)
	}
	if canCgroup(t) {
		checkBornIn(t, []*Sandbox{sb, direct})
	}
	// No child of ours is a zombie: the intermediate was reaped.
	kids, err := filepath.Glob("/proc/self/task/*/children")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kids {
		b, err := os.ReadFile(k)
		if err != nil {
			continue // the thread ended meanwhile
		}
		for _, pid := range strings.Fields(string(b)) {
			if n, _ := strconv.Atoi(pid); n > 0 && statField(t, n, 2) == "Z" {
				t.Errorf("child %s is a zombie", pid)
			}
		}
	}
}

// statComm is the command name of pid (/proc/PID/comm).
func statComm(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// statField is field i (1-based, after the command's parentheses: 2 is
// the state, 3 the parent's pid) of /proc/PID/stat.
func statField(t *testing.T, pid, i int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "gone"
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return f[i-2]
}

// A launcher holding more than reexec.LargeAnon of anonymous memory goes through
// the intermediate by itself.
func TestLaunchViaLarge(t *testing.T) {
	e := newEnv(t)
	testutil.Ballast(t, reexec.LargeAnon+32<<20)
	before := viaLaunches.Load()
	sb := e.launch(t, e.spec("large"))
	if viaLaunches.Load() != before+1 {
		t.Error("a launcher holding more than reexec.LargeAnon did not go through the intermediate")
	}
	if out := sh(t, sb, "echo ok"); out != "ok\n" {
		t.Errorf("echo ok: %q", out)
	}
}
