package ociruntime_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestExecStatusAtContainerEnd: an exec'd process that exits in the
// moment the container's process ends reports its own status, as under
// runc (whose exec waits for the process itself), not 137. The
// container's process reads a FIFO until the exec'd one, which holds it
// open for writing, exits 7: both end together, every time. (The init
// exited with the container's status before it passed the exec's on: its
// client saw the connection close and said 137: 10 runs of 60 as root,
// 12 rootless, here.)
func TestExecStatusAtContainerEnd(t *testing.T) {
	root := stateRoot(t)
	b := bundle(t, nil, "sh", "-c", "cat /f >/dev/null; exit 3")
	if err := unix.Mkfifo(filepath.Join(b, "rootfs", "f"), 0o666); err != nil {
		t.Fatal(err)
	}
	const runs = 60
	var wrong []string
	for i := range runs {
		id := fmt.Sprintf("x%d", i)
		mustRunc(t, root, "create", "--bundle", b, id)
		mustRunc(t, root, "start", id)
		r := runc(t, root, "exec", id, "sh", "-c", "exec 3>/f; exit 7")
		if r.code != 7 {
			wrong = append(wrong, fmt.Sprintf("%s: %d %q", id, r.code, r.err))
		}
		waitStatus(t, root, id, "stopped")
		mustRunc(t, root, "delete", id)
	}
	if len(wrong) > 0 {
		t.Errorf("exec sh -c 'exec 3>/f; exit 7' ending the container: %d runs of %d did not exit 7: %v", len(wrong), runs, wrong)
	}
}

// TestExecKilledAtContainerEnd: an exec'd process still running when the
// container's process ends is killed, and its exec says 137, as under
// runc (the kernel kills a pid namespace's processes as its PID 1
// exits); the container stops at once. As root, one runs as another user
// than the init's too.
func TestExecKilledAtContainerEnd(t *testing.T) {
	root := stateRoot(t)
	b := bundle(t, nil, "sh", "-c", "cat /f >/dev/null; exit 3")
	if err := unix.Mkfifo(filepath.Join(b, "rootfs", "f"), 0o666); err != nil {
		t.Fatal(err)
	}
	mustRunc(t, root, "create", "--bundle", b, "k")
	mustRunc(t, root, "start", "k")
	users := [][]string{nil}
	if os.Geteuid() == 0 {
		users = append(users, []string{"--user", "1000:1000"})
	}
	var execs []*exec.Cmd
	for i, u := range users {
		args := append([]string{"--root", root, "exec"}, u...)
		args = append(args, "k", "sleep", fmt.Sprint(60+i))
		cmd := exec.Command(runcBin, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		execs = append(execs, cmd)
	}
	// Both sleeps run before the container's process ends.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var ps []int
		if err := json.Unmarshal([]byte(mustRunc(t, root, "ps", "--format", "json", "k")), &ps); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, pid := range ps {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.HasPrefix(string(b), "sleep\x00") {
				n++
			}
		}
		if n == len(execs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d exec'd sleeps running after 20 s", n, len(execs))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := runc(t, root, "exec", "k", "sh", "-c", "exec 3>/f; exit 7"); r.code != 7 {
		t.Errorf("exec ending the container: exit %d %q, want 7", r.code, r.err)
	}
	for i, cmd := range execs {
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 137 {
			t.Errorf("exec %v sleep: %v, want exit status 137", users[i], err)
		}
	}
	waitStatus(t, root, "k", "stopped")
	mustRunc(t, root, "delete", "k")
}
