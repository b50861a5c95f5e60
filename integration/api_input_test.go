//go:build linux

package integration

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// seen waits until the stdout notifications of a streaming request carry
// want somewhere (a terminal echoes input and ends lines in \r\n, so a
// prefix would not do); it fails when the response comes first.
func (s *streamed) seen(t *testing.T, p *apiProc, notes <-chan execOutput, resp <-chan apiResponse, want string) {
	t.Helper()
	for !strings.Contains(joinText(s.stdout), want) {
		select {
		case n := <-notes:
			s.add(t, n)
		case r := <-resp:
			t.Fatalf("the response came before stdout carried %q (it carried %q): %s %+v", want, joinText(s.stdout), r.Result, r.Error)
		case <-p.done:
			t.Fatalf("lightbox api ended; stderr: %s", p.stderr())
		case <-time.After(2 * time.Minute):
			t.Fatalf("stdout did not carry %q in 2 minutes (so far %q)", want, joinText(s.stdout))
		}
	}
}

// TestAPIServerStdinStream: with "stdinStream": true the client feeds a
// running command's stdin with exec.input requests naming its id.
//   - An interactive sh fed line by line: each line is sent only once
//     the output of the one before has come (causality, no timing); eof
//     ends its input and the answer has its status.
//   - exec.input to an exec that was answered, or to an id never sent, is
//     not_found; stdinStream without an id, or with stdin, invalid_params.
//   - A command that does not read its stdin, its pipe full and more
//     input queued, holds up nothing: exec.input is answered, other
//     requests are, and another interactive command is fed meanwhile.
//   - exec.signal signals the command.
func TestAPIServerStdinStream(t *testing.T) {
	root, _ := newStore(t)
	host := t.TempDir()
	p := startAPI(t, root)
	p.ok("sandbox.launch", map[string]any{"snapshot": "busybox", "name": "api-in", "network": "none",
		"mounts": map[string]any{"/h": map[string]any{"source": host}}}, nil)

	// Line by line.
	ch, notes, id := p.sendStream("sandbox.exec", map[string]any{"name": "api-in", "path": "sh", "stdinStream": true})
	var s streamed
	want := ""
	for _, word := range []string{"one", "two", "three"} {
		p.ok("exec.input", map[string]any{"id": id, "data": "echo " + word + "\n"}, nil)
		want += word + "\n"
		s.until(t, p, notes, ch, "stdout", want, joinText)
	}
	p.ok("exec.input", map[string]any{"id": id, "data": "(exit 5)\n", "eof": true}, nil)
	r := p.receive("interactive sh", ch)
	if r.Error == nil || r.Error.kind() != "exit" {
		t.Fatalf("interactive sh ended by eof = %s %+v, want an exit error", r.Result, r.Error)
	}
	if d := r.Error.exec(t); d.ExitCode != 5 || d.Stdout != "one\ntwo\nthree\n" {
		t.Errorf("interactive sh ended by eof: data %s, want exitCode 5 and the three lines", r.Error.Data)
	}

	// Finished and unknown ids; bad params.
	if e := p.fails("not_found", "exec.input", map[string]any{"id": id, "data": "echo late\n"}); !strings.Contains(e.Message, "is running") {
		t.Errorf("exec.input to a finished exec: message %q, want it to say no such exec is running", e.Message)
	}
	p.fails("not_found", "exec.input", map[string]any{"id": 99999, "data": "x"})
	p.fails("not_found", "exec.resize", map[string]any{"id": 99999, "rows": 10, "cols": 10})
	p.fails("not_found", "exec.signal", map[string]any{"id": 99999, "signal": "TERM"})
	p.fails("invalid_params", "sandbox.exec", map[string]any{"name": "api-in", "path": "cat", "stdinStream": true, "stdin": "x"})
	p.fails("invalid_params", "sandbox.exec", map[string]any{"name": "api-in", "path": "cat", "ttySize": []int{10, 10}})

	// A command that does not read its stdin: its pipe fills, the rest
	// waits in the server's queue, and nothing else waits for it.
	gate := filepath.Join(host, "gate")
	if err := syscall.Mkfifo(gate, 0o666); err != nil {
		t.Fatal(err)
	}
	stuck, stuckNotes, stuckID := p.sendStream("sandbox.shell", map[string]any{"name": "api-in", "stdinStream": true,
		"script": "echo waiting; read x < /h/gate; echo released"})
	var ss streamed
	ss.until(t, p, stuckNotes, stuck, "stdout", "waiting\n", joinText)
	mib := strings.Repeat("x", 1<<20)
	for i := range 4 { // 4 MiB: far more than a pipe holds
		if r := p.call("exec.input", map[string]any{"id": stuckID, "data": mib}); r.Error != nil {
			t.Fatalf("exec.input %d to a command not reading: %s: %s", i, r.Error.kind(), r.Error.Message)
		}
	}
	var v struct{ Stdout string }
	p.ok("sandbox.shell", map[string]any{"name": "api-in", "script": "echo meanwhile"}, &v)
	if v.Stdout != "meanwhile\n" {
		t.Errorf("a shell while another command's stdin is full: stdout %q", v.Stdout)
	}
	other, otherNotes, otherID := p.sendStream("sandbox.exec", map[string]any{"name": "api-in", "path": "cat", "stdinStream": true})
	var cs streamed
	p.ok("exec.input", map[string]any{"id": otherID, "data": "aGVsbG8K", "encoding": "base64"}, nil)
	cs.until(t, p, otherNotes, other, "stdout", "hello\n", joinText)
	p.ok("exec.signal", map[string]any{"id": otherID, "signal": "SIGTERM"}, nil)
	r = p.receive("signalled cat", other)
	if r.Error == nil || r.Error.kind() != "exit" || !strings.Contains(string(r.Error.Data), `"signal":15`) {
		t.Errorf("cat after exec.signal SIGTERM = %s %+v, want an exit error with signal 15", r.Result, r.Error)
	}
	release(t, gate)
	var res struct {
		ExitCode int
		Stdout   string
	}
	r = p.receive("command not reading its stdin", stuck)
	if r.Error != nil {
		t.Fatalf("command not reading its stdin: %s: %s", r.Error.kind(), r.Error.Message)
	}
	if err := json.Unmarshal(r.Result, &res); err != nil || res.Stdout != "waiting\nreleased\n" {
		t.Errorf("command not reading its stdin: result %s (%v), want waiting and released", r.Result, err)
	}
}

// TestAPIServerTty: "tty": true runs the command on a terminal inside
// the sandbox, of ttySize; exec.resize changes it; its output comes as
// stdout only.
func TestAPIServerTty(t *testing.T) {
	root, _ := newStore(t)
	p := startAPI(t, root)
	p.ok("sandbox.launch", map[string]any{"snapshot": "busybox", "name": "api-tty", "network": "none"}, nil)
	ch, notes, id := p.sendStream("sandbox.exec", map[string]any{"name": "api-tty", "path": "sh",
		"args":        []string{"-c", "tty; stty size; echo ready; read x; stty size; echo oops >&2; exit 7"},
		"stdinStream": true, "tty": true, "ttySize": []int{33, 101}})
	var s streamed
	s.seen(t, p, notes, ch, "ready\r\n")
	out := joinText(s.stdout)
	if !strings.HasPrefix(out, "/dev/pts/") {
		t.Errorf("tty printed %q, want /dev/pts/*", out)
	}
	if !strings.Contains(out, "\r\n33 101\r\n") {
		t.Errorf("stty size on a ttySize [33, 101] terminal: %q, want 33 101", out)
	}
	p.ok("exec.resize", map[string]any{"id": id, "rows": 50, "cols": 132}, nil)
	p.ok("exec.input", map[string]any{"id": id, "data": "go\n"}, nil)
	r := p.receive("sh on a tty", ch)
	if r.Error == nil || r.Error.kind() != "exit" {
		t.Fatalf("sh on a tty ending with exit 7 = %s %+v, want an exit error", r.Result, r.Error)
	}
	if d := r.Error.exec(t); d.ExitCode != 7 || d.Stderr != "" || !strings.HasSuffix(d.Stdout, "ready\r\ngo\r\n50 132\r\noops\r\n") {
		t.Errorf("sh on a tty: data %s, want exitCode 7, the input echoed, stty size 50 132 after exec.resize, oops on stdout and stderr empty", r.Error.Data)
	}

	// exec.resize of a command with no terminal.
	ch, _, id = p.sendStream("sandbox.exec", map[string]any{"name": "api-tty", "path": "cat", "stdinStream": true})
	p.fails("invalid_params", "exec.resize", map[string]any{"id": id, "rows": 10, "cols": 10})
	p.ok("exec.input", map[string]any{"id": id, "eof": true}, nil)
	if r := p.receive("cat", ch); r.Error != nil {
		t.Errorf("cat ended by eof: %s: %s", r.Error.kind(), r.Error.Message)
	}
}
