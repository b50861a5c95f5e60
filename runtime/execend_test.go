//go:build linux

package runtime

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestExecEndsWithSandbox: commands that ended just before the sandbox
// did (its main command's end ends it) hear their exit status, not "lost
// the init": the init reaps them in the same wait4 loop as the main
// command, and its exit must not outrun their replies. The window is made
// certain by stopping the init (SIGSTOP from the host) while the commands
// and then the main command end, so that the init, continued, finds them
// all ended at once. Once for an init that never handed over (the main
// command's launcher attached), once after a handover (detached, as
// TestInitHandoverTty, where this was found as a flake).
func TestExecEndsWithSandbox(t *testing.T) {
	for _, handover := range []bool{false, true} {
		t.Run(fmt.Sprintf("handover=%v", handover), func(t *testing.T) {
			e := newEnv(t)
			for i := range 4 {
				var sb *Sandbox
				name := fmt.Sprintf("exec-end-%d", i)
				if handover {
					cmd := e.helper(t, "detach-sleep", name)
					if err := cmd.Wait(); err != nil {
						t.Fatalf("helper: %v", err)
					}
					var err error
					if sb, err = e.m.Attach(t.Context(), name); err != nil {
						t.Fatal(err)
					}
					waitGen(t, sb.Pid(), 1)
				} else {
					spec := e.spec(name)
					spec.Command = []string{"sleep", "1000"}
					sb = e.launch(t, spec)
				}
				execsEndWithMain(t, sb)
				if err := sb.Destroy(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// execsEndWithMain ends three commands and then sb's main command while
// its init is stopped, and checks each command's status, and that a
// fourth, still running when the sandbox ends, fails with ErrNotRunning.
func execsEndWithMain(t *testing.T, sb *Sandbox) {
	t.Helper()
	init := sb.Pid()
	before := childrenOf(t, init)
	if len(before) != 1 {
		t.Fatalf("init %d: children %v, want the main command alone", init, before)
	}
	mainPid := before[0]
	var cmds []*Cmd
	var stdins []*os.File
	for range 3 {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		c := sb.Command("cat")
		c.Stdin = pr
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		_ = pr.Close() // the init has its copy
		cmds, stdins = append(cmds, c), append(stdins, pw)
	}
	running := sb.Command("sleep", "1000")
	if err := running.Start(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(init, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if stopped {
			_ = syscall.Kill(init, syscall.SIGCONT) // the test failed before it continued the init: let the cleanup's destroy reach it
		}
	}()
	stopped = true
	waitState(t, init, 'T')
	var ends []int
	for _, pid := range childrenOf(t, init) {
		if pid != mainPid && comm(pid) == "cat" {
			ends = append(ends, pid)
		}
	}
	if len(ends) != len(cmds) {
		t.Fatalf("init %d: children %v, want the main command, a sleep and %d cats", init, childrenOf(t, init), len(cmds))
	}
	for _, w := range stdins {
		_ = w.Close() // cat reads EOF and exits 0
	}
	for _, pid := range ends {
		waitState(t, pid, 'Z')
	}
	if err := syscall.Kill(mainPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitState(t, mainPid, 'Z')
	if err := syscall.Kill(init, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Errorf("command %d, ended before the sandbox: %v", i, err)
		}
	}
	if err := running.Wait(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("command still running when the sandbox ended: %v, want ErrNotRunning", err)
	}
	code, err := sb.Wait(t.Context())
	if err != nil || code != 128+int(syscall.SIGKILL) {
		t.Errorf("Wait = %d, %v; want %d", code, err, 128+int(syscall.SIGKILL))
	}
}

// childrenOf lists the host pids of pid's children (each process's PPid
// in /proc).
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue // gone meanwhile
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "PPid:" && f[1] == strconv.Itoa(pid) {
				kids = append(kids, p)
			}
		}
	}
	return kids
}

// comm is process pid's command name ("" once it is gone).
func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)) // gone meanwhile: ""
	return strings.TrimSpace(string(b))
}

// waitState waits until process pid is in state (/proc/PID/stat: 'T'
// stopped, 'Z' a zombie).
func waitState(t *testing.T, pid int, state byte) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		// The state follows the command's name, in parentheses.
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) && b[i+2] == state {
			return
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("process %d: not in state %c (%q, %v)", pid, state, b, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
