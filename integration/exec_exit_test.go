//go:build linux

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beamhop/lightbox"
)

// bgScript starts a background job that keeps the command's stdout and
// stderr open long after the command exits, then writes more than a
// pipe holds (seq 1 20000: 108894 bytes) and a line on stderr.
const bgScript = "sleep 1001 & seq 1 20000; echo warning >&2"

// seqOutput is what `seq 1 first..last` prints.
func seqOutput(first, last int) string {
	var b strings.Builder
	for i := first; i <= last; i++ {
		fmt.Fprintf(&b, "%d\n", i)
	}
	return b.String()
}

// TestExecAnswersWhenProcessExits: a command that leaves a background
// job holding its stdout and stderr is answered when the command itself
// exits, with all it wrote — by the Go API (Sandbox.Shell), the CLI
// (`lightbox exec`, output into a file: copied through lightbox's pipes)
// and the JSON API (sandbox.shell), as docker exec answers — not when the
// background job ends (it sleeps 1001 s; each call below gives up long
// before, and the job is checked to run still after each answer).
func TestExecAnswersWhenProcessExits(t *testing.T) {
	root, r := newStore(t)
	sb, err := r.LaunchSandbox(t.Context(), lightbox.SandboxOptions{Snapshot: "busybox", Name: "bg", Network: lightbox.NetworkNone})
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Detach(); err != nil {
		t.Fatal(err)
	}
	defer lb(t, root, "", "rm", "-f", "bg")
	sleeps := func() int {
		res, err := sb.Shell(t.Context(), "ps -o args | grep -c '^sleep 1001' || true")
		if err != nil {
			t.Fatalf("count the background jobs: %v", err)
		}
		var n int
		if _, err := fmtSscan(string(res.Stdout), &n); err != nil {
			t.Fatalf("count the background jobs: %q: %v", res.Stdout, err)
		}
		return n
	}
	want := seqOutput(1, 20000)

	// Each call gives up after 30 s (the job runs 1001).
	guard := func() context.Context {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		t.Cleanup(cancel)
		return ctx
	}

	// The Go API.
	res, err := sb.Shell(guard(), bgScript)
	if err != nil {
		t.Errorf("Shell(%q): %v (want its answer when sh exits, not when its background job does)", bgScript, err)
	} else if string(res.Stdout) != want || string(res.Stderr) != "warning\n" || res.ExitCode != 0 {
		t.Errorf("Shell(%q) = {ExitCode %d, %d bytes of stdout, Stderr %q}, want {0, %d bytes of seq's, %q}",
			bgScript, res.ExitCode, len(res.Stdout), res.Stderr, len(want), "warning\n")
	}
	if n := sleeps(); n != 1 {
		t.Errorf("after Shell: %d background jobs running, want 1 (Shell answered before the job ended)", n)
	}

	// The CLI: a file for stdout is copied through a pipe by lightbox
	// (the workload never gets the caller's file).
	dir := t.TempDir()
	outf, err := os.Create(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer outf.Close()
	errf, err := os.Create(filepath.Join(dir, "err"))
	if err != nil {
		t.Fatal(err)
	}
	defer errf.Close()
	cmd := exec.CommandContext(guard(), binPath, "--root", root, "exec", "bg", "sh", "-c", bgScript)
	cmd.Stdout, cmd.Stderr = outf, errf
	if err := cmd.Run(); err != nil {
		t.Errorf("lightbox exec bg sh -c %q: %v (want it to exit when sh does)", bgScript, err)
	}
	if got, err := os.ReadFile(outf.Name()); err != nil || string(got) != want {
		t.Errorf("lightbox exec's stdout: %d bytes (%v), want %d bytes of seq's", len(got), err, len(want))
	}
	if got, err := os.ReadFile(errf.Name()); err != nil || string(got) != "warning\n" {
		t.Errorf("lightbox exec's stderr: %q (%v), want %q", got, err, "warning\n")
	}
	if n := sleeps(); n != 2 {
		t.Errorf("after lightbox exec: %d background jobs running, want 2", n)
	}

	// The JSON API.
	p := startAPI(t, root)
	ctx := guard()
	ch := p.send("sandbox.shell", map[string]any{"name": "bg", "script": bgScript})
	select {
	case resp := <-ch:
		var got struct {
			ExitCode       int
			Stdout, Stderr string
		}
		if resp.Error != nil {
			t.Errorf("sandbox.shell %q: error %s", bgScript, resp.Error.Message)
		} else if err := json.Unmarshal(resp.Result, &got); err != nil {
			t.Errorf("sandbox.shell %q: result %.200s: %v", bgScript, resp.Result, err)
		} else if got.Stdout != want || got.Stderr != "warning\n" || got.ExitCode != 0 {
			t.Errorf("sandbox.shell %q = {exitCode %d, %d bytes of stdout, stderr %q}, want {0, %d bytes of seq's, %q}",
				bgScript, got.ExitCode, len(got.Stdout), got.Stderr, len(want), "warning\n")
		}
	case <-ctx.Done():
		t.Errorf("sandbox.shell %q: no answer while its background job runs", bgScript)
	}
	if n := sleeps(); n != 3 {
		t.Errorf("after sandbox.shell: %d background jobs running, want 3", n)
	}
	if err := p.close(); err != nil {
		t.Errorf("lightbox api exit: %v; stderr: %s", err, p.stderr())
	}
}

// slowWriter takes its first Write late: a reader that is slow to take
// a command's output (a terminal, a pipe to a busy program).
type slowWriter struct {
	mu    sync.Mutex
	delay time.Duration
	buf   strings.Builder
}

func (w *slowWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.delay > 0 {
		time.Sleep(w.delay)
		w.delay = 0
	}
	return w.buf.Write(p)
}

// TestExecSlowReaderKeepsOutput: a command that exits leaving a
// background job on its stdout loses none of what it wrote to a Stdout
// that takes it slowly: the wait after its exit (WaitDelay) bounds the
// wait for the streams' end, not the copy of what the command had
// written. The writer's first Write takes longer than WaitDelay, with
// most of the command's output still in the pipe; the output is whole.
func TestExecSlowReaderKeepsOutput(t *testing.T) {
	_, r := newStore(t)
	sb, err := r.LaunchSandbox(t.Context(), lightbox.SandboxOptions{Snapshot: "busybox", Name: "slow", Network: lightbox.NetworkNone})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(context.WithoutCancel(t.Context()))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// 48894 bytes: less than the pipe holds, so sh exits with most of
	// it unread while the writer takes the first read.
	const script = "sleep 1001 & seq 1 10000"
	w := &slowWriter{delay: lightbox.WaitDelay + time.Second}
	c := sb.Command(ctx, "/bin/sh", "-c", script)
	c.Stdout = w
	if err := c.Run(); err != nil {
		t.Errorf("sh -c %q: %v", script, err)
	}
	w.mu.Lock()
	got := w.buf.String()
	w.mu.Unlock()
	if want := seqOutput(1, 10000); got != want {
		t.Errorf("sh -c %q with a slow Stdout: %d bytes, want %d: what sh wrote before it exited was lost", script, len(got), len(want))
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Errorf("sh -c %q: no answer while its background job runs", script)
	}
}
