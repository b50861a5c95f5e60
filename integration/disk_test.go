//go:build linux

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDiskCap: --disk-mib caps a sandbox's writable layer (as root, with
// the store's quota backend); rootless it is refused with the reason. The
// capped layer goes with the sandbox, also after a SIGKILLed launcher and
// gc.
func TestDiskCap(t *testing.T) {
	root, _ := newStore(t)
	r := lb(t, root, "", "run", "--network", "none", "--disk-mib", "32", "busybox", "sh", "-c",
		"dd if=/dev/zero of=/big bs=1M count=100 2>&1; echo dd=$?; df -m / | tail -1")
	if os.Geteuid() != 0 {
		if r.code != 125 || !strings.Contains(r.stderr, "quota") {
			t.Fatalf("rootless --disk-mib: code %d stderr %q, want 125 and a quota refusal", r.code, r.stderr)
		}
		return
	}
	if r.code != 0 || !strings.Contains(r.stdout, "No space left on device") || strings.Contains(r.stdout, "dd=0") {
		t.Fatalf("writing 100 MiB into a 32 MiB writable layer: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if n := hostMountsUnder(t, root); n != 0 {
		t.Errorf("%d mounts left under the store after the run", n)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "disks")); len(ents) != 0 {
		t.Errorf("disks left after the run: %v", ents)
	}

	// A launcher killed mid-run: gc takes the disk once the sandbox is gone.
	killLauncherWhenRunning(t, root, "capped", "--disk-mib", "32")
	deadline := time.Now().Add(30 * time.Second)
	for {
		lbOK(t, root, "gc")
		ents, _ := os.ReadDir(filepath.Join(root, "disks"))
		if _, listed := ps(t, root)["capped"]; !listed && hostMountsUnder(t, root) == 0 && len(ents) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a killed launcher and gc: ps %v, %d mounts, disks %v", ps(t, root), hostMountsUnder(t, root), ents)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
