//go:build linux

package integration

import (
	"strings"
	"testing"

	"github.com/beamhop/lightbox"
)

// An API launch runs the snapshot's own command only when asked to
// (UseImageCommand); by default a sandbox with no Command idles.
func TestUseImageCommand(t *testing.T) {
	_, r := newStore(t)
	ctx := t.Context()
	if _, err := r.BuildSnapshot(ctx, lightbox.BuildOptions{
		Name: "exits7", Context: t.TempDir(), Network: lightbox.NetworkNone,
		Recipe: "FROM busybox\nENTRYPOINT [\"sh\", \"-c\"]\nCMD [\"exit 7\"]\n",
	}); err != nil {
		t.Fatal(err)
	}
	sb, err := r.LaunchSandbox(ctx, lightbox.SandboxOptions{Snapshot: "exits7", Network: lightbox.NetworkNone, UseImageCommand: true})
	if err != nil {
		t.Fatal(err)
	}
	code, err := sb.Wait(ctx)
	if derr := sb.Destroy(ctx); derr != nil {
		t.Error(derr)
	}
	if err != nil || code != 7 {
		t.Fatalf("with UseImageCommand: Wait = %d, %v; want the image's command's status 7", code, err)
	}
	err = r.RunInSandbox(ctx, lightbox.SandboxOptions{Snapshot: "exits7", Network: lightbox.NetworkNone}, func(sb *lightbox.Sandbox) error {
		res, err := sb.Shell(ctx, "echo idle")
		if err == nil && string(res.Stdout) != "idle\n" {
			t.Errorf("without UseImageCommand: shell says %q, want idle", res.Stdout)
		}
		return err
	})
	if err != nil {
		t.Fatalf("without UseImageCommand the sandbox idles, serving exec: %v", err)
	}
}

// TestCLIEntrypoint: `run --entrypoint PROG SNAP ARGS` runs PROG with
// ARGS, dropping the snapshot's Entrypoint and Cmd, as docker's does;
// `--entrypoint ""` clears the Entrypoint, so the snapshot's Cmd (or
// ARGS) runs alone. Foreground and detached alike.
func TestCLIEntrypoint(t *testing.T) {
	root, r := newStore(t)
	ctx := t.Context()
	for name, recipe := range map[string]string{
		"ep":     "FROM busybox\nENTRYPOINT [\"sh\", \"-c\"]\nCMD [\"echo from-cmd\"]\n",
		"eponly": "FROM busybox\nENTRYPOINT [\"sh\", \"-c\"]\n",
	} {
		if _, err := r.BuildSnapshot(ctx, lightbox.BuildOptions{Name: name, Context: t.TempDir(), Network: lightbox.NetworkNone, Recipe: recipe}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		args     []string
		out      string
		code     int
		inStderr string
	}{
		{args: []string{"ep"}, out: "from-cmd\n"},                                                 // sh -c "echo from-cmd"
		{args: []string{"ep", "echo", "args"}, out: "args\n"},                                     // ARGS replace both, as DESIGN.md has it
		{args: []string{"--entrypoint", "/bin/echo", "ep", "a", "b c"}, out: "a b c\n"},           // PROG with ARGS
		{args: []string{"--entrypoint", "/bin/echo", "ep"}, out: "\n"},                            // the Cmd is dropped too
		{args: []string{"--entrypoint", "", "ep"}, out: "", code: 127, inStderr: "echo from-cmd"}, // the Cmd alone: one word, not found
		{args: []string{"--entrypoint", "", "ep", "echo", "x"}, out: "x\n"},
		{args: []string{"--entrypoint", "", "eponly"}, code: 125, inStderr: `--entrypoint "" and snapshot eponly has no Cmd: give a command`},
		{args: []string{"--entrypoint", "/nonexistent", "ep"}, code: 127, inStderr: "/nonexistent"},
	} {
		res := lb(t, root, "", append([]string{"run", "--network", "none"}, tc.args...)...)
		if res.code != tc.code || (tc.code == 0 && res.stdout != tc.out) || !strings.Contains(res.stderr, tc.inStderr) {
			t.Errorf("run %q: exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr with %q",
				tc.args, res.code, res.stdout, res.stderr, tc.code, tc.out, tc.inStderr)
		}
	}

	// Detached: the same command, its output in the logs.
	name := strings.TrimSpace(lbOK(t, root, "run", "-d", "--network", "none", "--entrypoint", "/bin/sh", "ep", "-c", "echo detached; exit 3"))
	waitFor(t, name+" exits", func() bool { st, _ := exitOf(t, root, name); return st == "exited" })
	if st, code := exitOf(t, root, name); code != 3 {
		t.Errorf("detached --entrypoint: %s (%d), want exited (3)", st, code)
	}
	if out := lbOK(t, root, "logs", name); out != "detached\n" {
		t.Errorf("detached --entrypoint: logs %q, want %q", out, "detached\n")
	}
	// Detached with the Entrypoint cleared and no Cmd: no main command,
	// so the sandbox idles, serving exec, as run -d of such a snapshot does.
	idle := strings.TrimSpace(lbOK(t, root, "run", "-d", "--network", "none", "--entrypoint", "", "eponly"))
	if out := lbOK(t, root, "exec", idle, "echo", "idle"); out != "idle\n" {
		t.Errorf("exec into the idle sandbox: %q", out)
	}
	lbOK(t, root, "rm", "-f", name, idle)
}
