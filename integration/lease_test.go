//go:build linux

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/beamhop/lightbox"
	"github.com/beamhop/lightbox/internal/netstack"
	"github.com/beamhop/lightbox/internal/testutil"
)

// TestDetachedWorkersInProcess is the docs' third flow driven by one Go
// program (issue 11): ten goroutines launch sandboxes on the default
// (private) network with one volume and detach them; a new Runtime attaches
// to each and destroys it; then the volume can be removed at once, and the
// program holds no descriptor on any lease file of the store.
func TestDetachedWorkersInProcess(t *testing.T) {
	root, r1 := newStore(t)
	ctx := t.Context()
	network := lightbox.NetworkPrivate
	if err := netstack.Check(); err != nil {
		// Strict mode (CI) must test the default network.
		testutil.Need(t, false, fmt.Sprintf("needs the private network (%v)", err))
	}
	const n = 10
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sb, err := r1.LaunchSandbox(ctx, lightbox.SandboxOptions{
				Snapshot: "busybox",
				Name:     fmt.Sprintf("worker-%d", i),
				Network:  network,
				Mounts:   map[string]lightbox.Mount{"/models": {Volume: "models"}},
			})
			if err != nil {
				errs[i] = err
				return
			}
			errs[i] = sb.Detach()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker-%d: %v", i, err)
		}
	}
	// The launching process holds no lease once its sandboxes are
	// detached: the inits hold them.
	if stray := leaseFDs(t, root); len(stray) > 0 {
		t.Errorf("after launch and detach, this process holds lease descriptors: %s", strings.Join(stray, ", "))
	}

	r2, err := lightbox.Open(lightbox.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	for i := range n {
		sb, err := r2.AttachSandbox(ctx, fmt.Sprintf("worker-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if err := sb.Destroy(ctx); err != nil {
			t.Errorf("destroy worker-%d: %v", i, err)
		}
	}
	if stray := leaseFDs(t, root); len(stray) > 0 {
		t.Errorf("after destroy, this process holds lease descriptors: %s", strings.Join(stray, ", "))
	}
	if err := r2.RemoveVolume(ctx, "models"); err != nil {
		t.Errorf("RemoveVolume after every sandbox on it is destroyed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "volumes", "models")); !os.IsNotExist(err) {
		t.Errorf("volume dir after RemoveVolume: %v", err)
	}
}

// leaseFDs lists this process's descriptors that point at a lease file of
// the store at root (a volume's or a snapshot's).
func leaseFDs(t *testing.T, root string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue // the descriptor ReadDir itself used, closed by now
		}
		rel, ok := strings.CutPrefix(target, root+"/")
		if !ok {
			continue
		}
		vol, _ := filepath.Match("volumes/*/lease", rel)
		snap, _ := filepath.Match("snapshots/leases/*", rel)
		if vol || snap {
			out = append(out, e.Name()+" -> "+target)
		}
	}
	return out
}
