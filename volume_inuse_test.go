//go:build linux

package lightbox

import (
	"errors"
	"strings"
	"testing"

	"github.com/beamhop/lightbox/volstore"
)

// TestRemoveVolumeHeldByLaunch: a volume rm racing a launch that uses the
// volume (the launch holds the volume's lease before the sandbox is
// listed) said only "remove volume v: in use", naming nothing; it now says
// a sandbox is being started or stopped with it. The lease is taken as a
// launch takes it.
func TestRemoveVolumeHeldByLaunch(t *testing.T) {
	r, _ := busyboxStore(t)
	l, _, err := r.vols.Acquire(t.Context(), "cache", volstore.CreateOptions{UID: -1, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = r.RemoveVolume(t.Context(), "cache")
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "volume cache is in use by a sandbox being started or stopped") {
		t.Errorf("RemoveVolume of a volume a launch holds = %v, want ErrInUse saying a sandbox is being started or stopped", err)
	}
	if _, err := r.vols.Get(t.Context(), "cache"); err != nil {
		t.Errorf("the volume after the refused removal: %v", err)
	}
}
