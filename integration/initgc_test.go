//go:build linux

package integration

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// staleInit writes, into root's sandboxes directory, the sandbox init of
// another lightbox build that nothing used for a long time, and returns
// its file name.
func staleInit(t *testing.T, root, hex string) string {
	t.Helper()
	name := ".init-" + strings.Repeat(hex, 32/len(hex))
	p := filepath.Join(root, "sandboxes", name)
	if err := os.WriteFile(p, []byte("\x7fELF another build's init"), 0o555); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-30 * 24 * time.Hour)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestGCOtherBuildsInit: `lightbox gc` removes the sandbox init an older
// lightbox left in the store and says so; this build's stays and runs.
func TestGCOtherBuildsInit(t *testing.T) {
	root, _ := newStore(t)
	lbOK(t, root, "run", "--network", "none", "busybox", "true") // installs this build's
	inits := func() []string {
		m, err := filepath.Glob(filepath.Join(root, "sandboxes", ".init-*"))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	own := inits()
	if len(own) != 1 {
		t.Fatalf("inits in the store after a run: %q, want one", own)
	}
	name := staleInit(t, root, "c3")
	out := lbOK(t, root, "gc")
	if !strings.Contains(out, "init "+name+"\n") {
		t.Errorf("gc printed %q, want a line \"init %s\"", out, name)
	}
	if _, err := os.Lstat(filepath.Join(root, "sandboxes", name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old build's init after gc: %v; want it removed", err)
	}
	if got := inits(); len(got) != 1 || got[0] != own[0] {
		t.Errorf("inits in the store after gc: %q, want this build's %q", got, own)
	}
	if out := lbOK(t, root, "run", "--network", "none", "busybox", "echo", "ok"); out != "ok\n" {
		t.Errorf("a run after gc: %q", out)
	}
}
