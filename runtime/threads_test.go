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
