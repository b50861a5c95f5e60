//go:build linux

package integration

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestAPIServerWaitRemoved: a sandbox.wait that a sandbox.remove (force)
// of its sandbox cuts short is answered at once with not_running whose
// message says the sandbox was removed, not that an exec failed or that
// its init died (killed, or its launcher was): for a sandbox the server
// launched and for one the CLI launched detached. (When the command
// dies of the removal's stop signal before the init does, its status is
// recorded and the wait has it, 143 or 137, as docker wait would.) A follow of its logs
// running meanwhile is answered with what the command wrote.
//   - The wait and the follow are sent before the remove; should the
//     remove still be carried out first, the wait finds no sandbox
//     (not_found), which is right too: what is checked is that a wait
//     never blames the wrong cause.
func TestAPIServerWaitRemoved(t *testing.T) {
	root, _ := newStore(t)
	p := startAPI(t, root)
	p.ok("sandbox.launch", map[string]any{"snapshot": "busybox", "name": "api-rmwait", "network": "none",
		"command": []string{"sh", "-c", "echo up; exec sleep 100"}}, nil)
	lbOK(t, root, "run", "-d", "--network", "none", "--name", "api-rmwait-det", "busybox", "sh", "-c", "echo up; exec sleep 100")
	for _, name := range []string{"api-rmwait", "api-rmwait-det"} {
		wait := p.send("sandbox.wait", map[string]any{"name": name})
		follow, _ := p.sendWith("sandbox.logs", map[string]any{"name": name, "follow": true}, make(chan execOutput, 16))
		p.ok("sandbox.remove", map[string]any{"name": name, "force": true, "timeoutMs": 0}, nil)
		r := p.receive("the wait of "+name, wait)
		switch {
		case r.Error == nil:
			// The command died of the removal's signal before the
			// init did, and its status was recorded: as docker wait.
			var w waitResult
			if err := json.Unmarshal(r.Result, &w); err != nil || w.ExitCode == nil || *w.ExitCode != 128+9 && *w.ExitCode != 128+15 {
				t.Errorf("sandbox.wait of %s removed under it = %s, want a not_running error or the status of SIGTERM or SIGKILL", name, r.Result)
			}
		case r.Error.kind() == "not_found":
			t.Logf("sandbox.wait of %s came after its removal: %s", name, r.Error.Message)
		case r.Error.kind() != "not_running" || r.Error.Code != -32009 || !strings.Contains(r.Error.Message, "removed") ||
			strings.Contains(r.Error.Message, "exec") || strings.Contains(r.Error.Message, "init died"):
			t.Errorf("sandbox.wait of %s removed under it: %s %q; want not_running saying it was removed", name, r.Error.kind(), r.Error.Message)
		}
		r = p.receive("the follow of "+name, follow)
		if r.Error != nil {
			if r.Error.kind() != "not_found" {
				t.Errorf("sandbox.logs follow of %s removed under it: %s %q; want its output", name, r.Error.kind(), r.Error.Message)
			}
			continue
		}
		var logs logsResult
		if err := json.Unmarshal(r.Result, &logs); err != nil {
			t.Fatal(err)
		}
		if logs.Stderr != "" || logs.Stdout != "up\n" && logs.Stdout != "" {
			t.Errorf("sandbox.logs follow of %s removed under it = %+v, want what it wrote (up) or, removed first, nothing", name, logs)
		}
	}
	// A command running in a sandbox removed under it: not_running
	// saying so (not "the sandbox ended"). It runs before the remove is
	// sent: its first line came.
	p.ok("sandbox.launch", map[string]any{"snapshot": "busybox", "name": "api-rmexec", "network": "none"}, nil)
	exec, notes, _ := p.sendStream("sandbox.shell", map[string]any{"name": "api-rmexec", "script": "echo started; exec sleep 100"})
	var s streamed
	s.until(t, p, notes, exec, "stdout", "started\n", joinText)
	p.ok("sandbox.remove", map[string]any{"name": "api-rmexec", "force": true, "timeoutMs": 0}, nil)
	// (When the init reports the command's death first, it is an exit
	// error saying the sandbox was destroyed, as before.)
	r := p.receive("the shell in api-rmexec", exec)
	if r.Error == nil || !(r.Error.kind() == "not_running" && strings.Contains(r.Error.Message, "removed") ||
		r.Error.kind() == "exit" && strings.Contains(r.Error.Message, "the sandbox was destroyed")) {
		t.Errorf("sandbox.shell in a sandbox removed under it = %s %+v; want not_running saying it was removed", r.Result, r.Error)
	}
	if err := p.close(); err != nil {
		t.Fatalf("lightbox api exit: %v; stderr: %s", err, p.stderr())
	}
	if got := sandboxNames(t, root); len(got) != 0 {
		t.Errorf("sandboxes left: %v", got)
	}
}
