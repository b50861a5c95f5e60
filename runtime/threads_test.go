//go:build linux

package runtime

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// threadsInWaitid counts this process's OS threads blocked in waitid
// (/proc/self/task/*/syscall starts with the number of the system call a
// blocked thread is in).
func threadsInWaitid(t *testing.T) int {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/syscall")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // a thread that ended meanwhile
		}
		if f := strings.Fields(string(b)); len(f) > 0 && f[0] == strconv.Itoa(unix.SYS_WAITID) {
			n++
		}
	}
	return n
}

// A live sandbox holds no OS thread of its launcher: the wait for its
// init's exit is in the poller, not a goroutine blocked in waitid (which
// held a thread per sandbox: an embedding program or a warm pool with
// many sandboxes grew a thread for each).
func TestLaunchedSandboxesHoldNoThread(t *testing.T) {
	e := newEnv(t)
	before := threadsInWaitid(t)
	const n = 6
	for i := range n {
		e.launch(t, e.spec("t"+strconv.Itoa(i)))
	}
	if after := threadsInWaitid(t); after-before >= n/2 {
		t.Errorf("threads in waitid: %d before %d sandboxes, %d with them; want fewer than %d more (a thread per sandbox)", before, n, after, n/2)
	}
}

// The init's threads run with initTimerSlack (fewer wake-ups of the Go
// runtime's sysmon), inherited from the thread that cloned it, which
// gets its own back; workloads get the kernel's default from the
// spawner.
func TestTimerSlack(t *testing.T) {
	t.Run("fork", testTimerSlack)
	t.Run("via", func(t *testing.T) { // through the intermediate
		forceVia = true
		t.Cleanup(func() { forceVia = false })
		testTimerSlack(t)
	})
}

func testTimerSlack(t *testing.T) {
	slack := func(pid string) string {
		t.Helper()
		b, err := os.ReadFile("/proc/" + pid + "/timerslack_ns")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	// Another thread's slack is readable with CAP_SYS_NICE over it
	// only: as root, every thread of ours and the init's; rootless, the
	// init's (its user namespace is ours) and the workload's.
	root := os.Geteuid() == 0
	own := ""
	if root {
		own = slack(strconv.Itoa(os.Getpid()))
	}
	e := newEnv(t)
	sb := e.launch(t, e.spec("slack"))
	if root {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			if got := slack(task.Name()); got != own {
				t.Errorf("launcher's thread %s: timer slack %s after a launch, want the process's %s", task.Name(), got, own)
			}
		}
	}
	if got, want := slack(strconv.Itoa(sb.pid)), strconv.Itoa(initTimerSlack); got != want {
		t.Errorf("init's timer slack = %s, want %s", got, want)
	}
	if got, want := sh(t, sb, "cat /proc/self/timerslack_ns"), strconv.Itoa(workloadSlack)+"\n"; got != want {
		t.Errorf("workload's timer slack = %q, want %q (the kernel's default)", got, want)
	}
}

// workloadSlack is nsinit's workloadTimerSlack: the kernel's default.
const workloadSlack = 50_000
