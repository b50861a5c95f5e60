//go:build linux

package integration

import (
	"strings"
	"testing"
)

// TestAPIServerPooledRunsNothing: a sandbox a warm pool holds runs no
// command before a launch takes it, whoever asks by its generated name
// (sandbox.shell of the same server, lightbox exec of another process):
// in_use, saying it waits in a warm pool. Else what such a command left
// (a file, a process) would be in the sandbox the next launch takes
// under its own name. The take then works, and commands run in it.
func TestAPIServerPooledRunsNothing(t *testing.T) {
	root, _ := newStore(t)
	p := startAPI(t, root)
	p.ok("sandbox.prewarm", poolParams(1), nil)
	var list []struct {
		Name   string
		Pooled bool
	}
	p.ok("sandbox.list", nil, &list)
	if len(list) != 1 || !list[0].Pooled {
		t.Fatalf("sandbox.list after a prewarm of 1: %+v, want one pooled sandbox", list)
	}
	pooled := list[0].Name
	e := p.fails("in_use", "sandbox.shell", map[string]any{"name": pooled, "script": "echo planted > /tmp/planted"})
	if e.Code != -32003 || !strings.Contains(e.Message, "warm pool") {
		t.Errorf("sandbox.shell in a pooled sandbox: %d %q; want -32003 saying it waits in a warm pool", e.Code, e.Message)
	}
	if r := lb(t, root, "", "exec", pooled, "sh", "-c", "echo planted >> /tmp/planted"); r.code != 125 || !strings.Contains(r.stderr, "warm pool") {
		t.Errorf("lightbox exec in a pooled sandbox: exit %d, stderr %q; want 125 saying it waits in a warm pool", r.code, r.stderr)
	}
	p.ok("sandbox.launch", poolLaunch("api-taker"), nil)
	var res struct{ Stdout string }
	p.ok("sandbox.shell", map[string]any{"name": "api-taker", "script": "ls /tmp; hostname"}, &res)
	if res.Stdout != "api-taker\n" {
		t.Errorf("the taken sandbox: ls /tmp; hostname = %q, want no file and its name", res.Stdout)
	}
	p.ok("sandbox.list", nil, &list)
	for _, s := range list {
		if s.Name == pooled {
			t.Errorf("sandbox.list after the launch still has %s (%+v): want it taken (renamed api-taker), not left in the pool", pooled, s)
		}
	}
	if err := p.close(); err != nil {
		t.Fatalf("lightbox api exit: %v; stderr: %s", err, p.stderr())
	}
	if got := sandboxNames(t, root); len(got) != 0 {
		t.Errorf("sandboxes left after the server ended: %v", got)
	}
}
