//go:build linux

package integration

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunKeepCommit: run --keep leaves the finished sandbox behind, exited,
// listed by ps -a only, until rm; commit takes what it made; commit into a
// taken name is refused unless --replace.
func TestRunKeepCommit(t *testing.T) {
	root, _ := newStore(t)
	r := lb(t, root, "from stdin\n", "run", "--keep", "--network", "none", "--name", "x", "busybox", "sh", "-c", "echo hi > /f; cat; echo err >&2; exit 3")
	if r.code != 3 || r.stdout != "from stdin\n" || r.stderr != "err\n" {
		t.Fatalf("run --keep: exit %d stdout %q stderr %q, want 3, the stdin echoed and err", r.code, r.stdout, r.stderr)
	}
	if _, ok := ps(t, root)["x"]; !ok {
		t.Fatalf("ps -a does not list the kept sandbox")
	}
	if e := ps(t, root)["x"]; e.Status != "exited" || e.ExitCode == nil || *e.ExitCode != 3 {
		t.Errorf("ps -a shows x as %+v, want exited (3)", e)
	}
	if out := lbOK(t, root, "ps"); strings.Contains(out, "x ") {
		t.Errorf("ps (running only) lists the exited sandbox:\n%s", out)
	}
	lbOK(t, root, "commit", "x", "img")
	if out := lbOK(t, root, "run", "--network", "none", "img", "cat", "/f"); out != "hi\n" {
		t.Errorf("the committed snapshot's /f = %q, want hi", out)
	}
	if r := lb(t, root, "", "commit", "x", "img"); r.code == 0 || !strings.Contains(r.stderr, "already exists (--replace replaces it)") {
		t.Errorf("commit into a taken name: exit %d stderr %q, want a refusal", r.code, r.stderr)
	}
	lbOK(t, root, "exec", "-h") // the CLI still answers (no lock left by the refusal)
	lbOK(t, root, "commit", "--replace", "x", "img")
	lbOK(t, root, "rm", "x")
	if got := ps(t, root); len(got) != 0 {
		t.Errorf("ps -a after rm: %v", got)
	}
	// Without --keep a foreground run leaves nothing; docker's --rm says
	// so and is accepted, not with --keep or -d (whose sandbox stays).
	lbOK(t, root, "run", "--network", "none", "--name", "y", "busybox", "true")
	if out := lbOK(t, root, "run", "--rm", "--network", "none", "--name", "y", "busybox", "echo", "rm"); out != "rm\n" {
		t.Errorf("run --rm printed %q, want the command's output", out)
	}
	if got := ps(t, root); len(got) != 0 {
		t.Errorf("ps -a after a run without --keep: %v", got)
	}
	for _, flag := range []string{"--keep", "-d"} {
		if r := lb(t, root, "", "run", "--rm", flag, "--network", "none", "--name", "y", "busybox", "true"); r.code != 125 || !strings.Contains(r.stderr, "--rm") {
			t.Errorf("run --rm %s: exit %d stderr %q, want a refusal", flag, r.code, r.stderr)
		}
		if got := ps(t, root); len(got) != 0 {
			t.Errorf("ps -a after a refused run --rm %s: %v", flag, got)
		}
	}
	// A command that cannot start: 127, and nothing kept.
	if r := lb(t, root, "", "run", "--keep", "--network", "none", "--name", "z", "busybox", "no-such-command"); r.code != 127 {
		t.Errorf("run --keep of a missing command: exit %d stderr %q, want 127", r.code, r.stderr)
	}
}

// TestKeptSandboxStateLost: a kept sandbox whose state.json a crash of
// the machine lost or tore (its exit status, in its lock, survived) is
// dead, not exited: what it ran is unknown. commit says so instead of
// `snapshot name "": invalid name`, and gc removes it.
func TestKeptSandboxStateLost(t *testing.T) {
	root, _ := newStore(t)
	lbOK(t, root, "run", "--keep", "--network", "none", "--name", "torn", "busybox", "sh", "-c", "echo hi > /f")
	// The crash takes the sandbox's cgroups with it (the machine
	// restarts): they go as a reboot would take them, then its state is
	// torn. (Left, nothing would name them: gc learns them from the
	// state.)
	stateFile := filepath.Join(root, "sandboxes", "torn", "state.json")
	b, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Cgroup *struct {
			Paths map[string]string `json:"paths"`
		} `json:"cgroup"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.Cgroup != nil {
		for ctrl, p := range st.Cgroup.Paths {
			dir := filepath.Join("/sys/fs/cgroup", ctrl, p)
			_ = os.Remove(filepath.Join(dir, "workload")) // where the sandbox has one
			if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("remove the exited sandbox's cgroup, as a reboot would: %v", err)
			}
		}
	}
	if err := os.Truncate(stateFile, 0); err != nil {
		t.Fatal(err)
	}
	if e := ps(t, root)["torn"]; e.Status != "dead" {
		t.Errorf("ps -a shows the sandbox without its state as %+v, want dead", e)
	}
	if r := lb(t, root, "", "commit", "torn", "img"); r.code != 125 || !strings.Contains(r.stderr, "its state was lost") {
		t.Errorf("commit of the sandbox without its state: exit %d stderr %q, want 125 and its state named as lost", r.code, r.stderr)
	}
	if out := lbOK(t, root, "gc"); !strings.Contains(out, "sandbox torn") {
		t.Errorf("gc printed %q, want the sandbox removed", out)
	}
	if got := ps(t, root); len(got) != 0 {
		t.Errorf("ps -a after gc: %v", got)
	}
}
