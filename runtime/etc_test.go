//go:build linux

package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/nsinit"
)

// TestEtcFiles: a sandbox's /etc/hostname, /etc/hosts and /etc/resolv.conf
// are its own, live neither in its directory on the host nor in its upper
// dir (so a commit never captures them), and the image's own /etc keeps
// its attributes.
func TestEtcFiles(t *testing.T) {
	e := newEnv(t)
	// The image has no resolv.conf (the targets layer provides the
	// target), and an /etc of its own mode.
	if err := os.Chmod(filepath.Join(e.rootfs, "etc"), 0o751); err != nil {
		t.Fatal(err)
	}
	sp := e.spec("etcbox")
	sp.Hostname = "etc-host"
	sb := e.launch(t, sp)
	want := map[string]string{
		"/etc/hostname":    "etc-host\n",
		"/etc/hosts":       "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tetc-host\n",
		"/etc/resolv.conf": "# lightbox: no network (--network none)\n",
	}
	for p, w := range want {
		if got := sh(t, sb, "cat "+p); got != w {
			t.Errorf("%s = %q, want %q", p, got, w)
		}
	}
	if got := strings.TrimSpace(sh(t, sb, "stat -c %a /etc")); got != "751" {
		t.Errorf("mode of /etc = %s, want the image's 751", got)
	}
	// The sandbox may write them; what it writes stays its own.
	sh(t, sb, "echo '10.1.2.3 db' >> /etc/hosts")
	if got := sh(t, sb, "tail -n 1 /etc/hosts"); got != "10.1.2.3 db\n" {
		t.Errorf("/etc/hosts after a write: last line %q", got)
	}
	if _, err := os.Lstat(filepath.Join(e.root, "etcbox", "etc")); err == nil {
		t.Errorf("the sandbox's directory has an etc/")
	}
	ents, err := os.ReadDir(filepath.Join(e.root, "etcbox", "upper"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		t.Errorf("upper dir holds %s after a launch that wrote only its /etc files", ent.Name())
	}
	// The init replaces only the files it has.
	if _, err := sb.call(t.Context(), nsinit.Request{Op: nsinit.OpEtc, Etc: []nsinit.File{{Target: "/etc/passwd", Data: []byte("x::0:0::/:/bin/sh\n")}}}); err == nil {
		t.Errorf("OpEtc of /etc/passwd succeeded")
	}
	if got := sh(t, sb, "head -c 5 /etc/passwd"); got != "root:" {
		t.Errorf("/etc/passwd begins %q after a refused OpEtc", got)
	}
}

type fakeNet struct{ resolv []byte }

func (n fakeNet) ResolvConf() []byte { return n.resolv }
func (fakeNet) Close() error         { return nil }

// TestEtcResolvConfAttached: a private network's resolv.conf replaces the
// launch's before the main command runs.
func TestEtcResolvConfAttached(t *testing.T) {
	mp, err := idmap.Detect()
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	resolv := "nameserver 10.9.8.7\n"
	m, err := Open(Options{Root: filepath.Join(t.TempDir(), "sandboxes"), Mapping: mp, StopGrace: 2 * time.Second,
		AttachNetwork: func(ctx context.Context, pid int, ports []Port, helper string, exit *os.File) (NetworkAttachment, error) {
			return fakeNet{[]byte(resolv)}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	sp := e.spec("netbox")
	sp.Network = NetworkPrivate
	sp.Command = []string{"cat", "/etc/resolv.conf"}
	var out strings.Builder
	sp.Stdout, sp.Stderr = &out, &out
	sb, err := m.Launch(t.Context(), sp)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	code, err := sb.Wait(t.Context())
	if err != nil || code != 0 {
		t.Errorf("main command: exit %d, %v", code, err)
	}
	if err := sb.Destroy(context.WithoutCancel(t.Context())); err != nil {
		t.Errorf("Destroy: %v", err)
	}
	if out.String() != resolv {
		t.Errorf("the main command read /etc/resolv.conf = %q, want %q", out.String(), resolv)
	}
}

// TestTargetsScratchCollected: a targets layer a crash left half made is
// removed by GC; the layer itself stays.
func TestTargetsScratchCollected(t *testing.T) {
	e := newEnv(t)
	e.launch(t, e.spec("first"))
	scratch := filepath.Join(e.root, targetsName+"-tmp-123")
	if err := os.MkdirAll(filepath.Join(scratch, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := e.m.GC(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(scratch); err == nil {
		t.Errorf("GC left %s", scratch)
	}
	if _, err := os.Stat(filepath.Join(e.root, targetsName, "etc", "resolv.conf")); err != nil {
		t.Errorf("targets layer after GC: %v", err)
	}
}
