//go:build linux

package integration

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// streamed is what a streaming request's exec.output notifications
// carried, per stream, as received.
type streamed struct {
	stdout, stderr []string
}

func (s *streamed) add(t *testing.T, n execOutput) {
	t.Helper()
	switch n.Stream {
	case "stdout":
		s.stdout = append(s.stdout, n.Data)
	case "stderr":
		s.stderr = append(s.stderr, n.Data)
	default:
		t.Fatalf("exec.output notification of stream %q, want stdout or stderr", n.Stream)
	}
}

// drain adds the notifications that came before the response: all of
// them are in notes once the response has been read.
func (s *streamed) drain(t *testing.T, notes <-chan execOutput) {
	t.Helper()
	for {
		select {
		case n := <-notes:
			s.add(t, n)
		default:
			return
		}
	}
}

// until adds notifications until the stream's data so far is want (as
// cat says how it joins them); it fails when the response comes first or
// the data stops being a prefix of want.
func (s *streamed) until(t *testing.T, p *apiProc, notes <-chan execOutput, resp <-chan apiResponse, stream, want string, cat func([]string) string) {
	t.Helper()
	for {
		got := cat(s.stdout)
		if stream == "stderr" {
			got = cat(s.stderr)
		}
		if got == want {
			return
		}
		if !strings.HasPrefix(want, got) {
			t.Fatalf("%s notifications so far carry %q, want them to carry %q (no more, no other)", stream, got, want)
		}
		select {
		case n := <-notes:
			s.add(t, n)
		case r := <-resp:
			t.Fatalf("the response came before the %s notifications carried %q (they carried %q): %s %+v", stream, want, got, r.Result, r.Error)
		case <-p.done:
			t.Fatalf("lightbox api ended; stderr: %s", p.stderr())
		case <-time.After(2 * time.Minute):
			t.Fatalf("no %s notification carrying %q in 2 minutes (so far %q)", stream, want, got)
		}
	}
}

func joinText(chunks []string) string { return strings.Join(chunks, "") }

func joinBase64(chunks []string) string {
	var b []byte
	for _, c := range chunks {
		d, err := base64.StdEncoding.DecodeString(c)
		if err != nil {
			return fmt.Sprintf("(chunk %q is no base64: %v)", c, err)
		}
		b = append(b, d...)
	}
	return string(b)
}

// release lets a command blocked reading the fifo f go on: the open
// waits for the command's (the shell opens it for reading).
func release(t *testing.T, f string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- os.WriteFile(f, []byte("go\n"), 0) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("the command did not open %s for reading in 2 minutes", f)
	}
}

// TestAPIServerStream: with "stream": true, sandbox.shell and sandbox.exec
// send what the command writes as exec.output notifications while it
// runs, each stream's in order and all before the response, whose result
// is what it is without streaming.
//   - Causality, no timing: the command prints a line, then blocks on a
//     fifo the test writes only once it has the line's notification.
//   - Order and completeness: 1.2 MB on stdout and 1.3 MB on stderr,
//     written at once, come whole and in order (text and base64).
//   - A UTF-8 character split across the command's writes (the second
//     half written only after the first half was read) arrives whole,
//     and a run of bytes that is not UTF-8 across them is one U+FFFD, as
//     in the result; base64 sends the bytes as they come.
//   - A background job holding the output does not hold the answer.
//   - The notifications carry the request's id as sent (a string).
func TestAPIServerStream(t *testing.T) {
	root, _ := newStore(t)
	host := t.TempDir()
	fifo := func(name string) string {
		f := filepath.Join(host, name)
		if err := syscall.Mkfifo(f, 0o666); err != nil {
			t.Fatal(err)
		}
		return f
	}
	p := startAPI(t, root)
	p.ok("sandbox.launch", map[string]any{"snapshot": "busybox", "name": "api-stream", "network": "none",
		"mounts": map[string]any{"/h": map[string]any{"source": host}}}, nil)
	type result struct {
		ExitCode       int
		Stdout, Stderr string
		Encoding       string
	}
	decodeResult := func(what string, r apiResponse) result {
		t.Helper()
		if r.Error != nil {
			t.Fatalf("%s: error %s: %s", what, r.Error.kind(), r.Error.Message)
		}
		var res result
		if err := json.Unmarshal(r.Result, &res); err != nil {
			t.Fatalf("%s: result %s: %v", what, r.Result, err)
		}
		return res
	}

	// Causality.
	go1 := fifo("go1")
	ch, notes, _ := p.sendStream("sandbox.shell", map[string]any{"name": "api-stream",
		"script": "echo first; read x < /h/go1; echo second >&2; echo third"})
	var s streamed
	s.until(t, p, notes, ch, "stdout", "first\n", joinText)
	release(t, go1)
	res := decodeResult("streamed shell", p.receive("streamed shell", ch))
	s.drain(t, notes)
	if res.ExitCode != 0 || res.Stdout != "first\nthird\n" || res.Stderr != "second\n" {
		t.Errorf("streamed shell's result = %+v, want exit 0, stdout first and third, stderr second", res)
	}
	if got := joinText(s.stdout); got != res.Stdout {
		t.Errorf("stdout notifications carry %q, the result %q", got, res.Stdout)
	}
	if got := joinText(s.stderr); got != res.Stderr {
		t.Errorf("stderr notifications carry %q, the result %q", got, res.Stderr)
	}

	// A background job holding the output: answered once the command
	// exited (the 2 s WaitDelay at most), as without streaming.
	ch, notes, _ = p.sendStream("sandbox.shell", map[string]any{"name": "api-stream", "script": "sleep 1001 & echo started"})
	res = decodeResult("streamed shell leaving a job", p.receive("streamed shell leaving a job", ch))
	s = streamed{}
	s.drain(t, notes)
	if res.Stdout != "started\n" || joinText(s.stdout) != "started\n" || s.stderr != nil {
		t.Errorf("streamed shell leaving a job: result %+v, notifications %q %q; want started in both", res, s.stdout, s.stderr)
	}

	// Order and completeness, at once on both streams.
	seq := func(from, to int) string {
		var b strings.Builder
		for i := from; i <= to; i++ {
			fmt.Fprintf(&b, "%d\n", i)
		}
		return b.String()
	}
	wantOut, wantErr := seq(1, 200000), seq(300001, 500000)
	for _, enc := range []string{"utf8", "base64"} {
		join := joinText
		if enc == "base64" {
			join = joinBase64
		}
		ch, notes, _ := p.sendStream("sandbox.exec", map[string]any{"name": "api-stream", "encoding": enc,
			"path": "sh", "args": []string{"-c", "seq 1 200000 & seq 300001 500000 >&2; wait"}})
		res := decodeResult("streamed seq", p.receive("streamed seq", ch))
		var s streamed
		s.drain(t, notes)
		if got := join(s.stdout); got != wantOut {
			t.Errorf("%s: stdout notifications carry %d bytes (%.40q…), want %d: seq 1 200000", enc, len(got), got, len(wantOut))
		}
		if got := join(s.stderr); got != wantErr {
			t.Errorf("%s: stderr notifications carry %d bytes (%.40q…), want %d: seq 300001 500000", enc, len(got), got, len(wantErr))
		}
		if len(s.stdout) < 2 || len(s.stderr) < 2 {
			t.Errorf("%s: %d stdout and %d stderr notifications for over a megabyte each, want it in chunks as it comes", enc, len(s.stdout), len(s.stderr))
		}
		if enc == "base64" {
			res.Stdout, res.Stderr = join([]string{res.Stdout}), join([]string{res.Stderr})
		}
		if res.Stdout != wantOut || res.Stderr != wantErr {
			t.Errorf("%s: streamed seq's result has %d and %d bytes, want the result as without streaming (%d and %d)", enc, len(res.Stdout), len(res.Stderr), len(wantOut), len(wantErr))
		}
	}

	// A character and a run not UTF-8 split across writes.
	for _, enc := range []string{"utf8", "base64"} {
		f1, f2 := fifo("split1-"+enc), fifo("split2-"+enc)
		ch, notes, _ := p.sendStream("sandbox.shell", map[string]any{"name": "api-stream", "encoding": enc,
			"script": `printf 'a\342'; read x < /h/split1-` + enc + `; printf '\202\254b\377'; read x < /h/split2-` + enc + `; printf '\376c'`})
		var s streamed
		want1, want2, want := "a", "a€b\uFFFD", "a€b\uFFFDc"
		join := joinText
		if enc == "base64" {
			want1, want2, want, join = "a\xe2", "a\xe2\x82\xacb\xff", "a\xe2\x82\xacb\xff\xfec", joinBase64
		}
		s.until(t, p, notes, ch, "stdout", want1, join)
		release(t, f1)
		s.until(t, p, notes, ch, "stdout", want2, join)
		release(t, f2)
		res := decodeResult("split "+enc, p.receive("split "+enc, ch))
		s.drain(t, notes)
		if got := join(s.stdout); got != want {
			t.Errorf("%s: split character: stdout notifications carry %q, want %q", enc, got, want)
		}
		if enc == "base64" {
			res.Stdout = join([]string{res.Stdout})
		}
		if res.Stdout != want {
			t.Errorf("%s: split character: result's stdout %q, want %q", enc, res.Stdout, want)
		}
	}

	// The id as sent.
	req := `{"jsonrpc":"2.0","id":"s 1","method":"sandbox.shell","params":{"name":"api-stream","script":"echo hi","stream":true}}` + "\n"
	if _, err := p.stdin.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	strays := func() []string {
		p.mu.Lock()
		defer p.mu.Unlock()
		return append([]string(nil), p.stray...)
	}
	waitFor(t, `the answer to the request of id "s 1"`, func() bool { return len(strays()) >= 2 })
	if got, want := strays(), []string{
		`{"jsonrpc":"2.0","method":"exec.output","params":{"id":"s 1","stream":"stdout","data":"hi\n"}}`,
		`{"jsonrpc":"2.0","id":"s 1","result":{"exitCode":0,"stdout":"hi\n","stderr":""}}`,
	}; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("a streaming request of id \"s 1\" was answered with\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	p.mu.Lock()
	p.stray = nil
	p.mu.Unlock()

	p.fails("invalid_params", "sandbox.shell", map[string]any{"name": "api-stream", "script": "true", "stream": "yes"})
	if err := p.close(); err != nil {
		t.Fatalf("lightbox api exit: %v; stderr: %s", err, p.stderr())
	}
	if s := strays(); s != nil {
		t.Errorf("lines that answered no request (a notification after its response?): %.300q", s)
	}
}

// TestAPIServerStreamCancel: a streaming command cancelled mid-stream
// (request.cancel once its first lines came, or its timeoutMs) is
// killed and answered as without streaming — a canceled error with what
// it wrote — after the notifications of all it wrote, and none after.
func TestAPIServerStreamCancel(t *testing.T) {
	root, _ := newStore(t)
	host := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(host, "never"), 0o666); err != nil {
		t.Fatal(err)
	}
	p := startAPI(t, root)
	p.ok("sandbox.launch", map[string]any{"snapshot": "busybox", "name": "api-stream", "network": "none",
		"mounts": map[string]any{"/h": map[string]any{"source": host}}}, nil)

	ch, notes, id := p.sendStream("sandbox.shell", map[string]any{"name": "api-stream",
		"script": "echo started; echo warn >&2; read x < /h/never; echo never"})
	var s streamed
	s.until(t, p, notes, ch, "stdout", "started\n", joinText)
	s.until(t, p, notes, ch, "stderr", "warn\n", joinText)
	var canceled struct{ Canceled bool }
	p.ok("request.cancel", map[string]any{"id": id}, &canceled)
	if !canceled.Canceled {
		t.Errorf("request.cancel of the streaming shell (id %d): canceled false", id)
	}
	r := p.receive("the cancelled streaming shell", ch)
	s.drain(t, notes)
	wantCanceledByClient(t, "cancelled streaming shell", r)
	if joinText(s.stdout) != "started\n" || joinText(s.stderr) != "warn\n" {
		t.Errorf("cancelled streaming shell's notifications: stdout %q, stderr %q", s.stdout, s.stderr)
	}

	ch, notes, _ = p.sendStream("sandbox.shell", map[string]any{"name": "api-stream", "timeoutMs": 1000,
		"script": "echo a; read x < /h/never; echo never"})
	r = p.receive("the streaming shell past its timeoutMs", ch)
	s = streamed{}
	s.drain(t, notes)
	if r.Error == nil || r.Error.kind() != "canceled" || !strings.Contains(r.Error.Message, "killed as timeoutMs (1000) passed") {
		t.Fatalf("streaming shell past its timeoutMs = %s %+v, want a canceled error that says timeoutMs passed", r.Result, r.Error)
	}
	if d := r.Error.exec(t); d.Stdout != "a\n" || joinText(s.stdout) != "a\n" || s.stderr != nil {
		t.Errorf("streaming shell past its timeoutMs: data %s, notifications %q %q; want a\\n in both", r.Error.Data, s.stdout, s.stderr)
	}
	p.closeClean()
}
