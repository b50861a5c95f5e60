//go:build linux

package integration

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAPIServerFollowCappedLogs: a follow of sandbox.logs of a sandbox
// whose logs are capped (resources.logMiB) goes on past the cap. The
// init keeps a capped log by moving its newest half to the file's front
// when it fills; the follow reads on from where the output it had read
// up to moved, not from its old offset past the file's new end (where it
// saw nothing more until the command ended, and then answered without
// what came after the cut). Output dropped before the follow read it is
// said on stderr, and nothing is sent twice.
//   - Causality, no timing: the command writes, then blocks on a fifo
//     the test writes only once the follow has sent all it wrote: 0.9 MB
//     (under the 1 MiB cap), then 0.2 MB (past it: the log is cut once,
//     and the follow has read all it held, so nothing is dropped unread),
//     then 3.6 MB at once (cut several times, as fast as the follow reads
//     or not: what it missed is said, never repeated).
func TestAPIServerFollowCappedLogs(t *testing.T) {
	root, _ := newStore(t)
	host := t.TempDir()
	for _, f := range []string{"go1", "go2"} {
		if err := syscall.Mkfifo(filepath.Join(host, f), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	p := startAPI(t, root)
	p.ok("sandbox.launch", map[string]any{"snapshot": "busybox", "name": "api-capfollow", "network": "none",
		"resources": map[string]any{"logMiB": 1},
		"mounts":    map[string]any{"/h": map[string]any{"source": host}},
		"command": []string{"sh", "-c", "seq 1 150000; echo MARK1; read x < /h/go1; " +
			"seq 150001 180000; echo MARK2; read x < /h/go2; seq 180001 700000; echo END"}}, nil)
	ch, id := p.sendWith("sandbox.logs", map[string]any{"name": "api-capfollow", "follow": true}, make(chan execOutput, 1<<16))
	p.mu.Lock()
	notes := p.notes[id]
	p.mu.Unlock()
	seq := func(from, to int) string {
		var b strings.Builder
		for i := from; i <= to; i++ {
			b.WriteString(strconv.Itoa(i) + "\n")
		}
		return b.String()
	}
	var s streamed
	tail := func(s string) string { return s[max(0, len(s)-30):] }
	want := seq(1, 150000) + "MARK1\n"
	// until waits for the notifications to carry want, failing (with
	// their ends, not megabytes) if they stop or go another way.
	until := func(want string) {
		t.Helper()
		for {
			got := joinText(s.stdout)
			if got == want {
				return
			}
			if !strings.HasPrefix(want, got) {
				t.Fatalf("follow's stdout notifications carried %d bytes ending %q; want the %d bytes of seq's output ending %q", len(got), tail(got), len(want), tail(want))
			}
			select {
			case n := <-notes:
				s.add(t, n)
			case r := <-ch:
				t.Fatalf("the follow was answered (%.200s %+v) when its notifications had carried %d bytes ending %q; want the %d bytes of seq's output ending %q first", r.Result, r.Error, len(got), tail(got), len(want), tail(want))
			case <-p.done:
				t.Fatalf("lightbox api ended; stderr: %s", p.stderr())
			case <-time.After(time.Minute):
				t.Fatalf("follow's stdout notifications stopped at %d bytes ending %q for a minute; want the %d bytes of seq's output ending %q", len(got), tail(got), len(want), tail(want))
			}
		}
	}
	until(want)
	release(t, filepath.Join(host, "go1"))
	want += seq(150001, 180000) + "MARK2\n"
	until(want)
	release(t, filepath.Join(host, "go2"))
	r := p.receive("the follow", ch)
	s.drain(t, notes)
	if r.Error != nil {
		t.Fatalf("sandbox.logs with follow: error %s: %s", r.Error.kind(), r.Error.Message)
	}
	var logs logsResult
	if err := json.Unmarshal(r.Result, &logs); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(logs.Stdout, want) || !strings.HasSuffix(logs.Stdout, "\n699999\n700000\nEND\n") {
		t.Fatalf("sandbox.logs with follow of a log capped at 1 MiB answered stdout of %d bytes ending %q; want seq's 1 to 180000 whole, then up to 700000 and END",
			len(logs.Stdout), tail(logs.Stdout))
	}
	// After the last release: numbers that only grow, but where a cut
	// dropped output unread (said on stderr) and may have left part of a
	// line; output read twice would go back.
	notes3 := strings.Count(logs.Stderr, "bytes of stdout were dropped before they were read")
	if other := strings.Count(logs.Stderr, "\n") - notes3; other != 0 {
		t.Errorf("follow's stderr %q: want only notes of dropped stdout", logs.Stderr)
	}
	prev, back := 180000, 0
	for _, l := range strings.Split(strings.TrimSuffix(logs.Stdout[len(want):], "END\n"), "\n") {
		n, err := strconv.Atoi(l)
		if err != nil {
			continue // "" of the last line
		}
		if n <= prev {
			back++
		}
		prev = n
	}
	if back > notes3 {
		t.Errorf("follow's stdout past the last release went back %d times, with %d notes of dropped output: output sent twice?", back, notes3)
	}
	if out := joinText(s.stdout); out != logs.Stdout {
		t.Errorf("follow's notifications carried %d bytes of stdout, the answer %d; want the same", len(out), len(logs.Stdout))
	}
	// The log read whole afterwards: what the cap kept, ending as the
	// command did, and how much was dropped.
	p.ok("sandbox.logs", map[string]any{"name": "api-capfollow"}, &logs)
	if !strings.HasSuffix(logs.Stdout, "\n700000\nEND\n") || len(logs.Stdout) > 1<<20 || !strings.Contains(logs.Stderr, "bytes of older stdout were dropped") {
		t.Errorf("sandbox.logs of a log capped at 1 MiB: %d bytes ending %q, stderr %q; want at most 1 MiB ending in 700000 END, and the drop said",
			len(logs.Stdout), tail(logs.Stdout), logs.Stderr)
	}
	if err := p.close(); err != nil {
		t.Fatalf("lightbox api exit: %v; stderr: %s", err, p.stderr())
	}
	if got := sandboxNames(t, root); len(got) != 0 {
		t.Errorf("sandboxes left after the server ended: %v", got)
	}
}
