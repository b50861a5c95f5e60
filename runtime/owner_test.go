//go:build linux

package runtime

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/beamhop/lightbox/internal/procidmap"
)

// usernsOwner is the owner of pid's user namespace, as a host uid.
func usernsOwner(t *testing.T, pid int) int {
	t.Helper()
	uid, err := procidmap.Owner(pid)
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

// statusLine is the value of a "Key:" line of /proc/PATH/status.
func statusLine(t *testing.T, path, key string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	t.Fatalf("%s has no %s line", path, key)
	return ""
}

// As real root with a private range, a sandbox's user namespace is owned
// by the range's root, not by host root: the kernel charges what a
// sandbox makes (inotify instances, message queues, user namespaces) to
// the namespace's owner, and a sandbox owned by root could spend host
// root's share (integration's TestAttackHostRootKernelCounts). Both ways
// of cloning the init own it so (directly, and through the intermediate
// of a large launcher); the init's ids are all the range root's; and the
// launcher's threads are root again afterwards, with their capabilities.
func TestUsernsOwnedByRangeRoot(t *testing.T) {
	e := newRangeEnv(t, 2)
	base, _ := e.m.mapping.PrivateRange()
	capEff := statusLine(t, "/proc/self/status", "CapEff")

	direct := e.launch(t, e.spec("direct"))
	forceVia = true
	via := e.launch(t, e.spec("via"))
	forceVia = false
	want := strconv.Itoa(int(base))
	for _, sb := range []*Sandbox{direct, via} {
		if got := usernsOwner(t, sb.Pid()); got != int(base) {
			t.Errorf("%s: user namespace owned by uid %d, want the range root %d", sb.Name(), got, base)
		}
		proc := "/proc/" + strconv.Itoa(sb.Pid()) + "/status"
		if got := statusLine(t, proc, "Uid"); got != strings.Repeat(want+" ", 3)+want {
			t.Errorf("%s: init's uids %q, want all %s", sb.Name(), got, want)
		}
		if out := sh(t, sb, "id -u"); out != "0\n" {
			t.Errorf("%s: id -u %q, want 0", sb.Name(), out)
		}
	}
	tasks, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range tasks {
		uid := statusLine(t, f, "Uid")
		if uid == "" {
			continue // the thread ended meanwhile
		}
		if uid != "0 0 0 0" {
			t.Errorf("launcher thread %s has uids %q after the launches, want root's", f, uid)
		}
		if c := statusLine(t, f, "CapEff"); c != capEff {
			t.Errorf("launcher thread %s has capabilities %s after the launches, want %s", f, c, capEff)
		}
	}
}

// With the identity mapping (root) the owner stays root, and rootless it
// is the caller: neither has another uid to give a namespace to.
func TestUsernsOwnerOtherwise(t *testing.T) {
	e := newEnv(t)
	sb := e.launch(t, e.spec("own"))
	if got := usernsOwner(t, sb.Pid()); got != os.Geteuid() {
		t.Errorf("user namespace owned by uid %d, want ours (%d)", got, os.Geteuid())
	}
}
