//go:build linux

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// apiSnap is a Snapshot as the api returns it.
type apiSnap struct {
	Name      string    `json:"name"`
	Digest    string    `json:"digest"`
	Layers    int       `json:"layers"`
	Size      int64     `json:"size"`
	CreatedAt time.Time `json:"createdAt"`
	Config    struct {
		Cmd []string `json:"cmd"`
	} `json:"config"`
}

// buildNotes is what a streaming build's notifications carried: its
// build.step lines ("start 2/3 RUN …", "done 2/3") and each stream's
// build.output in order, interleaved with the steps as "out:…"/"err:…".
func buildNotes(t *testing.T, notes <-chan execOutput) (events []string, stdout, stderr string) {
	t.Helper()
	for {
		select {
		case n := <-notes:
			switch n.Method {
			case "build.step":
				var s struct {
					Step, Total int
					Instruction string
					Done        bool
					Cached      *bool
					DurationMs  *int64
				}
				if err := json.Unmarshal(n.Raw, &s); err != nil {
					t.Fatalf("build.step %s: %v", n.Raw, err)
				}
				if s.Done != (s.Cached != nil && s.DurationMs != nil) {
					t.Errorf("build.step %s: cached and durationMs come with done, and only then", n.Raw)
				}
				ev := "start"
				if s.Done {
					ev = "done"
				}
				events = append(events, fmt.Sprintf("%s %d/%d %s", ev, s.Step, s.Total, s.Instruction))
			case "build.output":
				switch n.Stream {
				case "stdout":
					stdout += n.Data
				case "stderr":
					stderr += n.Data
				default:
					t.Fatalf("build.output of stream %q", n.Stream)
				}
				if len(events) == 0 || events[len(events)-1] != "output" {
					events = append(events, "output") // one for a run of them
				}
			default:
				t.Fatalf("a build's request got a %s notification: %s", n.Method, n.Raw)
			}
		default:
			return events, stdout, stderr
		}
	}
}

// TestAPIServerBuild: snapshot.build makes a snapshot from a Dockerfile
// (over busybox, no network) that launches with what its steps did;
// "stream": true sends each step's start and end (build.step) and what
// its RUN printed (build.output) before the response; snapshot.inspect
// returns what the build did; snapshot.export writes it out (an OCI
// layout, an oci-archive) in a form snapshot.import takes back; a RUN
// that fails is an exit error naming the line, the instruction and the
// status, with that step's output, and leaves no snapshot, sandbox or
// mount; params are checked.
func TestAPIServerBuild(t *testing.T) {
	root, _ := newStore(t)
	p := startAPI(t, root)
	var busybox apiSnap
	p.ok("snapshot.inspect", map[string]any{"name": "busybox"}, &busybox)
	if busybox.Name != "busybox" || busybox.Layers == 0 {
		t.Fatalf("snapshot.inspect busybox = %+v", busybox)
	}
	p.fails("not_found", "snapshot.inspect", map[string]any{"name": "api-nosuch"})
	p.fails("invalid_name", "snapshot.inspect", map[string]any{"name": "../x"})
	p.fails("invalid_params", "snapshot.inspect", map[string]any{"name": "busybox", "Name": "x"})

	ctx := buildContextDir(t, `FROM busybox
ARG WHO=nobody
COPY hello /hello
RUN echo out-line; echo err-line >&2; cat /hello > /built; echo "$WHO" >> /built
CMD ["cat", "/built"]
`, map[string]string{"hello": "hello\n"})
	ch, notes, _ := p.sendStream("snapshot.build", map[string]any{"name": "api-built", "context": ctx, "network": "none",
		"buildArgs": map[string]string{"WHO": "api"}})
	r := p.receive("streamed build", ch)
	if r.Error != nil {
		t.Fatalf("snapshot.build: %s: %s", r.Error.kind(), r.Error.Message)
	}
	var built apiSnap
	if err := json.Unmarshal(r.Result, &built); err != nil {
		t.Fatal(err)
	}
	if built.Name != "api-built" || built.Layers != busybox.Layers+2 || !slices.Equal(built.Config.Cmd, []string{"cat", "/built"}) {
		t.Errorf("snapshot.build = %+v, want api-built with two layers more than busybox and CMD cat /built", built)
	}
	events, stdout, stderr := buildNotes(t, notes)
	run := `RUN echo out-line; echo err-line >&2; cat /hello > /built; echo "$WHO" >> /built`
	want := []string{"start 1/5 FROM busybox", "done 1/5 FROM busybox", "start 2/5 ARG WHO=nobody", "done 2/5 ARG WHO=nobody",
		"start 3/5 COPY hello /hello", "done 3/5 COPY hello /hello", "start 4/5 " + run, "output", "done 4/5 " + run,
		`start 5/5 CMD ["cat", "/built"]`, `done 5/5 CMD ["cat", "/built"]`}
	if !slices.Equal(events, want) {
		t.Errorf("build notifications:\n%q\nwant\n%q", events, want)
	}
	if stdout != "out-line\n" || stderr != "err-line\n" {
		t.Errorf("build.output carried stdout %q, stderr %q; want the RUN's out-line and err-line", stdout, stderr)
	}
	var inspected apiSnap
	p.ok("snapshot.inspect", map[string]any{"name": "api-built"}, &inspected)
	if inspected.Digest != built.Digest || inspected.Layers != built.Layers || !inspected.CreatedAt.Equal(built.CreatedAt) {
		t.Errorf("snapshot.inspect = %+v, want what snapshot.build returned, %+v", inspected, built)
	}
	p.ok("sandbox.launch", map[string]any{"snapshot": "api-built", "name": "api-b1", "network": "none"}, nil)
	var res struct{ Stdout string }
	p.ok("sandbox.shell", map[string]any{"name": "api-b1", "script": "cat /built"}, &res)
	if res.Stdout != "hello\napi\n" {
		t.Errorf("a sandbox of the built snapshot has /built %q, want %q", res.Stdout, "hello\napi\n")
	}
	p.ok("sandbox.destroy", map[string]any{"name": "api-b1"}, nil)

	// Without stream: no notifications (p.stray below); the recipe as
	// text; a context relative to the server's working directory (this
	// test's: startAPI leaves it); a taken name is exists unless replace.
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	relCtx, err := filepath.Rel(wd, ctx)
	if err != nil {
		t.Fatal(err)
	}
	var again apiSnap
	p.ok("snapshot.build", map[string]any{"name": "api-text", "context": relCtx, "network": "none",
		"recipe": "FROM busybox\nRUN echo text > /t\n"}, &again)
	if again.Name != "api-text" || again.Layers != busybox.Layers+1 {
		t.Errorf("snapshot.build of a recipe = %+v", again)
	}
	p.fails("exists", "snapshot.build", map[string]any{"name": "api-text", "context": ctx, "network": "none"})
	p.ok("snapshot.build", map[string]any{"name": "api-text", "context": ctx, "network": "none", "replace": true,
		"dockerfile": filepath.Join(ctx, "Dockerfile"), "buildArgs": map[string]string{"WHO": "api"}}, &again)
	if again.Digest != built.Digest {
		t.Errorf("snapshot.build (replace, same Dockerfile, cached) = %+v, want the digest of api-built %s", again, built.Digest)
	}

	// Export and import back: an OCI layout and an oci-archive.
	out := t.TempDir()
	layout, archive := filepath.Join(out, "layout"), filepath.Join(out, "img.tar")
	p.ok("snapshot.export", map[string]any{"name": "api-built", "destination": layout}, nil)
	p.ok("snapshot.export", map[string]any{"name": "api-built", "destination": archive, "format": "oci-archive", "tag": "v1"}, nil)
	for _, tc := range []struct{ name, source string }{{"api-from-layout", layout + ":api-built"}, {"api-from-archive", archive + ":v1"}} {
		var imp apiSnap
		p.ok("snapshot.import", map[string]any{"name": tc.name, "source": tc.source}, &imp)
		if imp.Layers != built.Layers || !slices.Equal(imp.Config.Cmd, built.Config.Cmd) {
			t.Errorf("snapshot.import of %s = %+v, want the layers and config of api-built, %+v", tc.source, imp, built)
		}
		p.ok("sandbox.launch", map[string]any{"snapshot": tc.name, "name": "api-b2", "network": "none"}, nil)
		p.ok("sandbox.shell", map[string]any{"name": "api-b2", "script": "cat /built"}, &res)
		if res.Stdout != "hello\napi\n" {
			t.Errorf("a sandbox of %s has /built %q", tc.name, res.Stdout)
		}
		p.ok("sandbox.destroy", map[string]any{"name": "api-b2"}, nil)
	}
	p.fails("not_found", "snapshot.export", map[string]any{"name": "api-nosuch", "destination": filepath.Join(out, "x")})
	p.fails("invalid_params", "snapshot.export", map[string]any{"name": "api-built", "destination": filepath.Join(out, "y"), "format": "zip"})
	p.fails("invalid_params", "snapshot.export", map[string]any{"name": "api-built"})
	if _, err := os.Stat(filepath.Join(out, "x")); err == nil {
		t.Errorf("snapshot.export of a missing snapshot left %s", filepath.Join(out, "x"))
	}

	// A RUN that fails: an exit error with that step's status and
	// output (not the earlier step's, which ran in the first build), and
	// nothing left.
	bad := buildContextDir(t, "FROM busybox\nRUN echo before\nRUN echo out; echo err >&2; exit 7\nRUN true\n", map[string]string{})
	for _, stream := range []bool{false, true} {
		params := map[string]any{"name": "api-bad", "context": bad, "network": "none"}
		var ch <-chan apiResponse
		var notes <-chan execOutput
		if stream {
			ch, notes, _ = p.sendStream("snapshot.build", params)
		} else {
			ch = p.send("snapshot.build", params)
		}
		r := p.receive("failing build", ch)
		if r.Error == nil || r.Error.kind() != "exit" || r.Error.Code != -32006 {
			t.Fatalf("failing build (stream %v) = %s %+v, want an exit error", stream, r.Result, r.Error)
		}
		if want := "Dockerfile line 3: RUN echo out; echo err >&2; exit 7: command exited with status 7"; !strings.Contains(r.Error.Message, want) {
			t.Errorf("failing build: message %q, want it to say %q", r.Error.Message, want)
		}
		if d := r.Error.exec(t); d.ExitCode != 7 || d.Stdout != "out\n" || d.Stderr != "err\n" {
			t.Errorf("failing build: data %s, want exitCode 7 and the failed step's output", r.Error.Data)
		}
		if stream {
			// (RUN echo before is cached now: it does not run again.)
			if _, so, se := buildNotes(t, notes); so != "out\n" || se != "err\n" {
				t.Errorf("failing build's build.output: stdout %q, stderr %q", so, se)
			}
		}
		p.fails("not_found", "snapshot.inspect", map[string]any{"name": "api-bad"})
		if got := sandboxNames(t, root); len(got) != 0 {
			t.Errorf("sandboxes after a failed build: %v", got)
		}
		assertNoMounts(t, root)
	}

	for _, params := range []map[string]any{
		{"context": ctx},
		{"name": "api-x"},
		{"name": "api-x", "context": ctx, "buildargs": map[string]string{}},
		{"name": "api-x", "context": ctx, "recipe": "FROM busybox\n", "dockerfile": "Dockerfile"},
		{"name": "api-x", "context": ctx, "timeoutMs": -1},
	} {
		p.fails("invalid_params", "snapshot.build", params)
	}
	p.fails("invalid_name", "snapshot.build", map[string]any{"name": "../x", "context": ctx})
	if e := p.fails("not_found", "snapshot.build", map[string]any{"name": "api-x", "context": ctx, "recipe": "FROM api-nosuch\n"}); !strings.Contains(e.Message, "line 1: FROM api-nosuch") {
		t.Errorf("a FROM of no snapshot: %q, want it to name the line", e.Message)
	}
	if e := p.fails("error", "snapshot.build", map[string]any{"name": "api-x", "context": filepath.Join(out, "nope")}); !strings.Contains(e.Message, "build context") {
		t.Errorf("a missing context: %q", e.Message)
	}
	p.closeClean()
}

// TestAPIServerBuildCancel: a build stopped mid-RUN — by request.cancel,
// by its timeoutMs, or by the server's end — is answered with a canceled error that says
// why, and leaves nothing: no snapshot, no sandbox (`ps -a`), no mount,
// and the next build of the same recipe runs.
func TestAPIServerBuildCancel(t *testing.T) {
	root, _ := newStore(t)
	p := startAPI(t, root)
	ctx := buildContextDir(t, "FROM busybox\nRUN echo started; while :; do sleep 1; done\n", map[string]string{})
	nothingLeft := func(what string) {
		t.Helper()
		p.fails("not_found", "snapshot.inspect", map[string]any{"name": "api-stopped"})
		if got := strings.TrimSpace(lbOK(t, root, "ps", "-aq")); got != "" {
			t.Errorf("%s: sandboxes left: %q", what, got)
		}
		var list []apiSnap
		p.ok("snapshot.list", nil, &list)
		if len(list) != 1 || list[0].Name != "busybox" {
			t.Errorf("%s: snapshot.list = %+v, want busybox alone", what, list)
		}
		assertNoMounts(t, root)
	}

	waitStarted := func(ch <-chan apiResponse, notes <-chan execOutput) {
		t.Helper()
		for {
			select {
			case n := <-notes:
				if n.Method == "build.output" && n.Data == "started\n" {
					return
				}
			case r := <-ch:
				t.Fatalf("the build was answered before its RUN started: %s %+v", r.Result, r.Error)
			case <-time.After(2 * time.Minute):
				t.Fatal("no build.output of the RUN in 2 minutes")
			}
		}
	}

	// request.cancel once the RUN has printed (its build.output came).
	ch, notes, id := p.sendStream("snapshot.build", map[string]any{"name": "api-stopped", "context": ctx, "network": "none"})
	waitStarted(ch, notes)
	var canceled struct{ Canceled bool }
	p.ok("request.cancel", map[string]any{"id": id}, &canceled)
	if !canceled.Canceled {
		t.Errorf("request.cancel of the build: canceled false")
	}
	r := p.receive("cancelled build", ch)
	if r.Error == nil || r.Error.kind() != "canceled" || r.Error.Code != -32011 {
		t.Fatalf("cancelled build = %s %+v, want a canceled error", r.Result, r.Error)
	}
	if want := "build api-stopped: stopped as the client cancelled the request (request.cancel)"; !strings.Contains(r.Error.Message, want) {
		t.Errorf("cancelled build: message %q, want it to say %q", r.Error.Message, want)
	}
	nothingLeft("after request.cancel")

	// timeoutMs: the RUN never ends on its own.
	start := time.Now()
	e := p.fails("canceled", "snapshot.build", map[string]any{"name": "api-stopped", "context": ctx, "network": "none", "timeoutMs": 3000})
	if want := "build api-stopped: stopped as timeoutMs (3000) passed"; !strings.Contains(e.Message, want) {
		t.Errorf("timed-out build: message %q, want it to say %q", e.Message, want)
	}
	if d := time.Since(start); d < 3*time.Second {
		t.Errorf("timed-out build answered after %v, before its timeoutMs", d)
	}
	nothingLeft("after timeoutMs")

	// The server's end (its input closes) mid-RUN: answered, to a client
	// still reading, with a canceled error saying so; nothing left.
	p2 := startAPI(t, root)
	ch, notes, _ = p2.sendStream("snapshot.build", map[string]any{"name": "api-stopped", "context": ctx, "network": "none"})
	waitStarted(ch, notes)
	p2.stdin.Close()
	r = p2.receive("build cut short by the server's end", ch)
	if r.Error == nil || r.Error.kind() != "canceled" {
		t.Fatalf("build cut short by the server's end = %s %+v, want a canceled error", r.Result, r.Error)
	}
	if want := "build api-stopped: stopped as the api server is shutting down: its input ended"; !strings.Contains(r.Error.Message, want) {
		t.Errorf("build cut short by the server's end: message %q, want it to say %q", r.Error.Message, want)
	}
	if err := p2.close(); err != nil {
		t.Fatalf("lightbox api exit: %v; stderr: %s", err, p2.stderr())
	}
	nothingLeft("after the server's end")

	// The same recipe, its loop ended, builds (the cancelled RUN's step
	// left no cache entry that would stand for it).
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM busybox\nRUN echo started > /s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.ok("snapshot.build", map[string]any{"name": "api-stopped", "context": ctx, "network": "none"}, nil)
	p.closeClean()
}
