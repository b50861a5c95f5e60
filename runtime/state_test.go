//go:build linux

package runtime

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestTornStateCollected: a launch killed while it wrote state.json (in
// place, no temporary file) leaves a sandbox whose state does not parse;
// with its lock free it reads as dead, GC removes it, and its name can be
// launched again.
func TestTornStateCollected(t *testing.T) {
	e := newEnv(t)
	e.launch(t, e.spec("first")) // the store's layout, made by a launch
	for _, torn := range []string{"", `{"version":1,"name":"torn`} {
		dir := filepath.Join(e.root, "torn")
		if err := os.MkdirAll(filepath.Join(dir, "upper"), 0o755); err != nil {
			t.Fatal(err)
		}
		for n, b := range map[string]string{"lock": "", "state.json": torn} {
			if err := os.WriteFile(filepath.Join(dir, n), []byte(b), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		info, err := e.m.status("torn")
		if err != nil || info.Status != StatusDead {
			t.Errorf("state.json %q: status %q, %v; want dead", torn, info.Status, err)
		}
		if err := e.m.GC(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("state.json %q: GC left the sandbox: %v", torn, err)
		}
	}
	sb := e.launch(t, e.spec("torn"))
	if got := sh(t, sb, "hostname"); got != "torn\n" {
		t.Errorf("relaunched: hostname %q", got)
	}
}

// TestStatePid: the state names the init once the launch returns (the
// pid is added to state.json in place).
func TestStatePid(t *testing.T) {
	e := newEnv(t)
	sb := e.launch(t, e.spec("pid"))
	st, err := readState(filepath.Join(e.root, "pid"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Pid != sb.Pid() || st.PidStart == 0 || st.Name != "pid" {
		t.Errorf("state: pid %d start %d name %q; want pid %d, a start time, name pid", st.Pid, st.PidStart, st.Name, sb.Pid())
	}
	if start, err := pidStart(sb.Pid()); err != nil || start != st.PidStart {
		t.Errorf("pidStart(%d) = %d, %v; state says %d", sb.Pid(), start, err, st.PidStart)
	}
}

// TestStatusAfterInitLog: the lock file is also the init's stderr; what
// the init logged before its status (written here as the init would) does
// not hide the status, nor does a line logged after it.
func TestStatusAfterInitLog(t *testing.T) {
	e := newEnv(t)
	sp := e.spec("logged")
	sp.Command = []string{"sh", "-c", "read x; exit 5"}
	in, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = in.Close() }()
	sp.Stdin, sp.Stdout, sp.Stderr = in, io.Discard, io.Discard
	sb := e.launch(t, sp)
	lock := filepath.Join(e.root, "logged", "lock")
	appendLine := func(s string) {
		f, err := os.OpenFile(lock, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	appendLine("lightbox init: a warning while running\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if code, err := sb.Wait(t.Context()); err != nil || code != 5 {
		t.Fatalf("Wait = %d, %v; want 5", code, err)
	}
	appendLine("lightbox init: a line after the status\n")
	info, err := sb.Status(t.Context())
	if err != nil || info.Status != StatusExited || info.ExitCode != 5 {
		b, _ := os.ReadFile(lock)
		t.Errorf("Status = %+v, %v; want exited with 5 (lock file %q)", info, err, b)
	}
}
