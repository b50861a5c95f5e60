//go:build linux

package integration

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// waitResult is sandbox.wait's answer; exitCode must be there.
type waitResult struct {
	ExitCode *int `json:"exitCode"`
}

func (p *apiProc) waitCode(name string) int {
	p.t.Helper()
	var w waitResult
	p.ok("sandbox.wait", map[string]any{"name": name}, &w)
	if w.ExitCode == nil {
		p.t.Fatalf("sandbox.wait of %s: no exitCode in the result", name)
	}
	return *w.ExitCode
}

// logsResult is sandbox.logs' answer.
type logsResult struct {
	Stdout, Stderr string
	Encoding       string
}

// inspected is the part of sandbox.inspect's answer the tests look at.
type inspected struct {
	Name     string `json:"name"`
	Status   string `json:"status"`
	ExitCode *int   `json:"exitCode"`
	Detached bool   `json:"detached"`
}

func (p *apiProc) inspect(name string) inspected {
	p.t.Helper()
	var in inspected
	p.ok("sandbox.inspect", map[string]any{"name": name}, &in)
	return in
}

// TestAPIServerWaitLogs: a client that launched a sandbox with a main
// command gets its exit status (sandbox.wait) and its output
// (sandbox.logs), also once it has exited; follow streams the output as
// the command writes it, as logs.output notifications of the request's
// id, and answers once the command has ended; past 16 MiB the answer has
// the newest 16 MiB and says how much was left out; sandbox.inspect
// describes a sandbox by name.
//   - Causality, no timing: the command prints a line, then blocks on a
//     fifo the test writes only once the line's notification came.
func TestAPIServerWaitLogs(t *testing.T) {
	root, _ := newStore(t)
	host := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(host, "go"), 0o666); err != nil {
		t.Fatal(err)
	}
	p := startAPI(t, root)
	p.ok("sandbox.launch", map[string]any{"snapshot": "busybox", "name": "api-exit", "network": "none",
		"command": []string{"sh", "-c", "echo out; echo err >&2; exit 3"}}, nil)
	if code := p.waitCode("api-exit"); code != 3 {
		t.Errorf("sandbox.wait = %d, want 3 (the main command's exit)", code)
	}
	if code := p.waitCode("api-exit"); code != 3 {
		t.Errorf("a second sandbox.wait = %d, want 3 again", code)
	}
	var logs logsResult
	p.ok("sandbox.logs", map[string]any{"name": "api-exit"}, &logs)
	if logs != (logsResult{Stdout: "out\n", Stderr: "err\n"}) {
		t.Errorf("sandbox.logs = %+v, want stdout out, stderr err", logs)
	}
	p.ok("sandbox.logs", map[string]any{"name": "api-exit", "encoding": "base64"}, &logs)
	if logs != (logsResult{Stdout: "b3V0Cg==", Stderr: "ZXJyCg==", Encoding: "base64"}) {
		t.Errorf("sandbox.logs in base64 = %+v, want the base64 of out and err", logs)
	}
	if in := p.inspect("api-exit"); in.Name != "api-exit" || in.Status != "exited" || in.ExitCode == nil || *in.ExitCode != 3 {
		t.Errorf("sandbox.inspect = %+v, want api-exit, exited, exitCode 3", in)
	}

	// Errors.
	p.ok("sandbox.launch", map[string]any{"snapshot": "busybox", "name": "api-idle", "network": "none"}, nil)
	if e := p.fails("no_command", "sandbox.wait", map[string]any{"name": "api-idle"}); e.Code != -32012 {
		t.Errorf("sandbox.wait of a sandbox without a main command: code %d, want -32012", e.Code)
	}
	for _, m := range []string{"sandbox.wait", "sandbox.logs", "sandbox.inspect"} {
		p.fails("not_found", m, map[string]any{"name": "api-nosuch"})
		p.fails("invalid_params", m, map[string]any{"name": "api-exit", "Name": "x"})
		p.fails("invalid_params", m, map[string]any{})
	}
	p.fails("invalid_name", "sandbox.inspect", map[string]any{"name": "../x"})
	p.fails("invalid_params", "sandbox.wait", map[string]any{"name": "api-exit", "timeoutMs": -1})
	p.fails("invalid_params", "sandbox.logs", map[string]any{"name": "api-exit", "encoding": "hex"})

	// Follow of a sandbox that has exited: what it wrote, then the
	// answer; the notifications carry the request's id as sent.
	req := `{"jsonrpc":"2.0","id":"l 1","method":"sandbox.logs","params":{"name":"api-exit","follow":true}}` + "\n"
	if _, err := p.stdin.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	strays := func() []string {
		p.mu.Lock()
		defer p.mu.Unlock()
		return append([]string(nil), p.stray...)
	}
	waitFor(t, `the answer to the sandbox.logs of id "l 1"`, func() bool { return len(strays()) >= 3 })
	if got, want := strays(), []string{
		`{"jsonrpc":"2.0","method":"logs.output","params":{"id":"l 1","stream":"stdout","data":"out\n"}}`,
		`{"jsonrpc":"2.0","method":"logs.output","params":{"id":"l 1","stream":"stderr","data":"err\n"}}`,
		`{"jsonrpc":"2.0","id":"l 1","result":{"stdout":"out\n","stderr":"err\n"}}`,
	}; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("a follow of an exited sandbox's logs was answered with\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	p.mu.Lock()
	p.stray = nil
	p.mu.Unlock()
	p.fails("invalid_params", "sandbox.logs", map[string]any{"name": "api-exit", "follow": "yes"})

	// Follow of a running main command: a line, then (once the test saw
	// it) the rest; the answer comes when the command has ended.
	p.ok("sandbox.launch", map[string]any{"snapshot": "busybox", "name": "api-follow", "network": "none",
		"mounts":  map[string]any{"/h": map[string]any{"source": host}},
		"command": []string{"sh", "-c", "echo first; read x < /h/go; echo second; echo late >&2"}}, nil)
	ch, id := p.sendWith("sandbox.logs", map[string]any{"name": "api-follow", "follow": true}, make(chan execOutput, 1<<10))
	p.mu.Lock()
	notes := p.notes[id]
	p.mu.Unlock()
	var s streamed
	s.until(t, p, notes, ch, "stdout", "first\n", joinText)
	release(t, filepath.Join(host, "go"))
	r := p.receive("the follow", ch)
	s.drain(t, notes)
	if r.Error != nil {
		t.Fatalf("sandbox.logs with follow: error %s: %s", r.Error.kind(), r.Error.Message)
	}
	logs = logsResult{}
	if err := json.Unmarshal(r.Result, &logs); err != nil {
		t.Fatal(err)
	}
	if logs != (logsResult{Stdout: "first\nsecond\n", Stderr: "late\n"}) {
		t.Errorf("sandbox.logs with follow answered %+v, want all the command wrote", logs)
	}
	if out, errs := joinText(s.stdout), joinText(s.stderr); out != "first\nsecond\n" || errs != "late\n" {
		t.Errorf("follow's notifications carried stdout %q, stderr %q; want all the command wrote", out, errs)
	}
	if code := p.waitCode("api-follow"); code != 0 {
		t.Errorf("sandbox.wait of the followed command = %d, want 0", code)
	}

	// Past 16 MiB (logs not capped on disk): the newest 16 MiB, and how
	// much older output was left out.
	p.ok("sandbox.launch", map[string]any{"snapshot": "busybox", "name": "api-big", "network": "none",
		"resources": map[string]any{"logMiB": -1},
		"command":   []string{"sh", "-c", "head -c 17000000 /dev/zero | tr '\\0' a; echo end"}}, nil)
	if code := p.waitCode("api-big"); code != 0 {
		t.Fatalf("sandbox.wait of 17 MB of output = %d, want 0", code)
	}
	var big struct {
		Stdout        string
		StdoutDropped int64
		StderrDropped int64
	}
	p.ok("sandbox.logs", map[string]any{"name": "api-big"}, &big)
	const limit = 16 << 20
	if len(big.Stdout) != limit || !strings.HasSuffix(big.Stdout, "aaaend\n") || big.StdoutDropped != 17000000+4-limit || big.StderrDropped != 0 {
		t.Errorf("sandbox.logs of 17 MB: %d bytes ending %q, stdoutDropped %d, stderrDropped %d; want the newest %d, ending in end, %d dropped",
			len(big.Stdout), big.Stdout[max(0, len(big.Stdout)-8):], big.StdoutDropped, big.StderrDropped, limit, 17000000+4-limit)
	}

	if err := p.close(); err != nil {
		t.Fatalf("lightbox api exit: %v; stderr: %s", err, p.stderr())
	}
	if s := strays(); s != nil {
		t.Errorf("lines that answered no request (a notification after its response?): %.300q", s)
	}
	if got := sandboxNames(t, root); len(got) != 0 {
		t.Errorf("sandboxes left after the server ended: %v", got)
	}
}

// TestAPIServerWaitCancel: a sandbox.wait or a follow of sandbox.logs
// that ends before the main command does (request.cancel, timeoutMs) is
// a canceled error that says why, and the sandbox runs on: a later wait
// gets the command's status. Both for a sandbox the server launched and
// for a detached one it only attached to (made by the CLI).
func TestAPIServerWaitCancel(t *testing.T) {
	root, _ := newStore(t)
	host := t.TempDir()
	for _, f := range []string{"go-own", "go-det"} {
		if err := syscall.Mkfifo(filepath.Join(host, f), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	lbOK(t, root, "run", "-d", "--network", "none", "--name", "api-det", "-v", host+":/h",
		"busybox", "sh", "-c", "echo started; read x < /h/go-det; exit 2")
	defer lb(t, root, "", "rm", "-f", "api-det")
	p := startAPI(t, root)
	p.ok("sandbox.launch", map[string]any{"snapshot": "busybox", "name": "api-own", "network": "none",
		"mounts":  map[string]any{"/h": map[string]any{"source": host}},
		"command": []string{"sh", "-c", "echo started; read x < /h/go-own; exit 5"}}, nil)

	for _, c := range []struct {
		name string
		code int
	}{{"api-own", 5}, {"api-det", 2}} {
		ch, id := p.sendWith("sandbox.wait", map[string]any{"name": c.name}, nil)
		var canceled struct{ Canceled bool }
		p.ok("request.cancel", map[string]any{"id": id}, &canceled)
		if !canceled.Canceled {
			t.Errorf("%s: request.cancel of the wait: canceled false", c.name)
		}
		r := p.receive("the cancelled wait", ch)
		if r.Error == nil || r.Error.kind() != "canceled" || !strings.Contains(r.Error.Message, "the client cancelled the request (request.cancel)") {
			t.Fatalf("%s: cancelled sandbox.wait = %s %+v, want a canceled error that says the client cancelled it", c.name, r.Result, r.Error)
		}
		e := p.fails("canceled", "sandbox.wait", map[string]any{"name": c.name, "timeoutMs": 300})
		if !strings.Contains(e.Message, "timeoutMs (300) passed") || !strings.Contains(e.Message, "runs on") {
			t.Errorf("%s: sandbox.wait past its timeoutMs: message %q, want it to say timeoutMs passed and the sandbox runs on", c.name, e.Message)
		}

		ch, id = p.sendWith("sandbox.logs", map[string]any{"name": c.name, "follow": true}, make(chan execOutput, 1<<10))
		p.mu.Lock()
		notes := p.notes[id]
		p.mu.Unlock()
		var s streamed
		s.until(t, p, notes, ch, "stdout", "started\n", joinText)
		p.ok("request.cancel", map[string]any{"id": id}, &canceled)
		r = p.receive("the cancelled follow", ch)
		if r.Error == nil || r.Error.kind() != "canceled" || !strings.Contains(r.Error.Message, "the client cancelled the request (request.cancel)") {
			t.Fatalf("%s: cancelled follow = %s %+v, want a canceled error that says the client cancelled it", c.name, r.Result, r.Error)
		}

		if in := p.inspect(c.name); in.Status != "running" {
			t.Errorf("%s after the cancelled wait and follow: %+v, want it running", c.name, in)
		}
		release(t, filepath.Join(host, "go-"+strings.TrimPrefix(c.name, "api-")))
		if code := p.waitCode(c.name); code != c.code {
			t.Errorf("%s: sandbox.wait after the cancels = %d, want %d", c.name, code, c.code)
		}
	}
	p.closeClean()
}

// TestAPIServerRemoveGC: sandbox.remove removes a sandbox by name that
// the server did not launch (a detached one, made by the CLI), as
// `lightbox rm`: a running one is in_use and left running unless force;
// also one the server launched. server.gc removes a dead sandbox (its
// init killed) and says so, and leaves the live and exited ones.
func TestAPIServerRemoveGC(t *testing.T) {
	root, _ := newStore(t)
	lbOK(t, root, "run", "-d", "--network", "none", "--name", "api-det", "busybox", "sleep", "100000")
	defer lb(t, root, "", "rm", "-f", "api-det")
	lbOK(t, root, "run", "-d", "--network", "none", "--name", "api-done", "busybox", "sh", "-c", "echo bye; exit 2")
	defer lb(t, root, "", "rm", "-f", "api-done")
	p := startAPI(t, root)

	e := p.fails("in_use", "sandbox.remove", map[string]any{"name": "api-det"})
	if !strings.Contains(e.Message, "running") {
		t.Errorf("sandbox.remove of a running sandbox: message %q, want it to say it runs", e.Message)
	}
	if in := p.inspect("api-det"); in.Status != "running" || !in.Detached {
		t.Errorf("api-det after a refused sandbox.remove: %+v, want it running, detached", in)
	}
	p.fails("invalid_params", "sandbox.remove", map[string]any{"name": "api-det", "timeoutMs": -1})
	p.fails("invalid_params", "sandbox.remove", map[string]any{"name": "api-det", "forse": true})
	p.ok("sandbox.remove", map[string]any{"name": "api-det", "force": true, "timeoutMs": 0}, nil)
	p.fails("not_found", "sandbox.inspect", map[string]any{"name": "api-det"})
	p.fails("not_found", "sandbox.remove", map[string]any{"name": "api-det"})

	// Exited: its status and logs, then removed without force.
	if code := p.waitCode("api-done"); code != 2 {
		t.Errorf("sandbox.wait of a detached sandbox = %d, want 2", code)
	}
	var logs logsResult
	p.ok("sandbox.logs", map[string]any{"name": "api-done"}, &logs)
	if logs.Stdout != "bye\n" {
		t.Errorf("sandbox.logs of a detached sandbox: stdout %q, want bye", logs.Stdout)
	}
	p.ok("sandbox.remove", map[string]any{"name": "api-done"}, nil)

	// One the server launched: removed, and not destroyed again at exit.
	p.ok("sandbox.launch", map[string]any{"snapshot": "busybox", "name": "api-own", "network": "none"}, nil)
	p.ok("sandbox.remove", map[string]any{"name": "api-own", "force": true}, nil)
	p.fails("not_found", "sandbox.inspect", map[string]any{"name": "api-own"})

	// gc: the dead one goes, the exited one the server holds stays.
	p.ok("sandbox.launch", map[string]any{"snapshot": "busybox", "name": "api-kept", "network": "none",
		"command": []string{"true"}}, nil)
	p.waitCode("api-kept")
	lbOK(t, root, "run", "-d", "--network", "none", "--name", "api-dead", "busybox")
	killInit(t, root, "api-dead")
	old := staleInit(t, root, "e7") // an older lightbox's sandbox init
	var got struct {
		Sandboxes, Disks, Layers, Inits []string
	}
	p.ok("server.gc", nil, &got)
	if !slices.Equal(got.Sandboxes, []string{"api-dead"}) || got.Disks == nil || got.Layers == nil || !slices.Equal(got.Inits, []string{old}) {
		t.Errorf("server.gc = %+v, want sandboxes [api-dead], inits [%s] and the other lists (empty or not)", got, old)
	}
	p.ok("server.gc", nil, &got)
	if got.Sandboxes == nil || len(got.Sandboxes) != 0 || len(got.Inits) != 0 {
		t.Errorf("a second server.gc = %+v, want no sandbox (an empty list)", got)
	}
	p.fails("invalid_params", "server.gc", map[string]any{"all": true})
	if in := p.inspect("api-kept"); in.Status != "exited" {
		t.Errorf("api-kept after server.gc: %+v, want it there, exited", in)
	}
	if err := p.close(); err != nil {
		t.Fatalf("lightbox api exit: %v; stderr: %s", err, p.stderr())
	}
	if got := sandboxNames(t, root); len(got) != 0 {
		t.Errorf("sandboxes left after the server ended: %v", got)
	}
}
