//go:build linux

package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sandboxCgroups is the part of a sandbox's state.json that names its
// cgroup (runtime's cgroupState).
type sandboxCgroups struct {
	Cgroup *struct {
		Version int               `json:"version"`
		Paths   map[string]string `json:"paths"`
		Path    string            `json:"path"`
	} `json:"cgroup"`
}

// cgroupDirs lists the host directories of the cgroup recorded in a
// sandbox's state (none when it has no cgroup).
func cgroupDirs(t *testing.T, stateFile string) []string {
	t.Helper()
	b, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	var st sandboxCgroups
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.Cgroup == nil {
		return nil
	}
	if st.Cgroup.Version == 2 {
		return []string{filepath.Join("/sys/fs/cgroup", st.Cgroup.Path)}
	}
	var out []string
	for c, p := range st.Cgroup.Paths {
		out = append(out, filepath.Join("/sys/fs/cgroup", c, p))
	}
	return out
}

// startRun starts `lightbox run --name NAME --network none busybox sh -c
// SCRIPT` with a stdin pipe, and waits until the sandbox's state names its
// init (its cgroup is recorded before); it returns the command, the
// stdin pipe and the sandbox's cgroup directories.
func startRun(t *testing.T, root, name, script string) (*exec.Cmd, *os.File, []string, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(binPath, "--root", root, "run", "--name", name, "--network", "none", "busybox", "sh", "-c", script)
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stdin, cmd.Stderr = inR, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = inR.Close() // the child has its copy
	t.Cleanup(func() {
		_ = inW.Close()           // ends the command if the test failed early
		_ = cmd.Process.Kill()    // likewise; gone already when the test went well
		_, _ = cmd.Process.Wait() // reaped: nothing to report
	})
	stateFile := filepath.Join(root, "sandboxes", name, "state.json")
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(stateFile)
		if err == nil && bytes.Contains(b, []byte(`"pid"`)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox %s never started: %s", name, errb.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cmd, inW, cgroupDirs(t, stateFile), &errb
}

// gone polls until none of paths exists, failing after the deadline.
func gone(t *testing.T, what string, paths []string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var left []string
		for _, p := range paths {
			if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still there after %v: %v", what, d, left)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// asideDirs lists the .rm- entries of a store's sandboxes directory.
func asideDirs(t *testing.T, root string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(root, "sandboxes", ".rm-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// `lightbox run` returns the command's status before the teardown, which
// a detached reaper finishes: the sandbox's directory (set aside) and its
// cgroups are gone within a deadline, and the name is free at once.
func TestRunTeardownAfterReturn(t *testing.T) {
	root, _ := newStore(t)
	cmd, in, cgs, errb := startRun(t, root, "reaped", "read x; exit 3")
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("run: %v, want exit 3; stderr: %s", err, errb.String())
	}
	if _, err := os.Lstat(filepath.Join(root, "sandboxes", "reaped")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the name's directory is still there once run returned: %v", err)
	}
	gone(t, "the sandbox's cgroups", cgs, 10*time.Second)
	gone(t, "the sandbox's directory, set aside", asideDirs(t, root), 10*time.Second)
	// The name is free at once, and so on, run after run.
	for i := range 3 {
		if r := lb(t, root, "", "run", "--name", "reaped", "--network", "none", "busybox", "true"); r.code != 0 {
			t.Fatalf("run %d with the same name: exit %d: %s", i, r.code, r.stderr)
		}
	}
	// What the sandbox held for its life is free once run returns: its
	// volume can be removed at once.
	if r := lb(t, root, "", "run", "--network", "none", "-v", "vol:/v", "busybox", "true"); r.code != 0 {
		t.Fatalf("run with a volume: exit %d: %s", r.code, r.stderr)
	}
	lbOK(t, root, "volume", "rm", "vol")
	gone(t, "the sandboxes' directories, set aside", asideDirs(t, root), 10*time.Second)
}

// A reaper killed with SIGKILL mid-teardown leaves only what `lightbox
// gc` removes: the directory set aside (its lock is free once the reaper
// is gone) and the cgroups it records.
func TestRunReaperKilled(t *testing.T) {
	root, _ := newStore(t)
	// Many files in the upper dir: the reaper is still unlinking them
	// when we find it.
	cmd, in, cgs, errb := startRun(t, root, "killreap", "mkdir /many && cd /many && seq 1 30000 | xargs touch && { read x; true; }")
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run: %v; stderr: %s", err, errb.String())
	}
	pid := findReaper(t, filepath.Join(root, "sandboxes", ".rm-killreap-"))
	if pid == 0 {
		t.Fatal("the reaper was gone before it could be killed: nothing of this test ran")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	// Once the reaper is gone, what is left is garbage gc removes.
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("reaper %d still there after SIGKILL", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(asideDirs(t, root)) == 0 {
		t.Fatal("the reaper had removed everything before the kill landed: nothing was left for gc")
	}
	lbOK(t, root, "gc")
	if left := asideDirs(t, root); len(left) > 0 {
		t.Errorf("gc left %v", left)
	}
	for _, d := range cgs {
		if _, err := os.Lstat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left after gc: %v", d, err)
		}
	}
}

// findReaper polls the process table for the reaper of the directory set
// aside under prefix, returning its pid (0 when none showed up in time).
func findReaper(t *testing.T, prefix string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ents, err := os.ReadDir("/proc")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err != nil {
				continue
			}
			args := strings.Split(string(b), "\x00")
			if len(args) >= 2 && args[0] == "lightbox-reap" && strings.Contains(args[1], prefix) {
				return pid
			}
		}
		if len(asideDirs(t, filepath.Dir(filepath.Dir(prefix)))) == 0 {
			return 0 // done already
		}
	}
	return 0
}
