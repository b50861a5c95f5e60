//go:build linux

package runtime

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/beamhop/lightbox/nsinit"
	"golang.org/x/sys/unix"
)

// TestLogStreamCutLeftUnderWay: a capped log whose count of cuts was
// left odd (its relay killed mid-cut: nothing will finish it) is read
// all the same: at once by a read with no later turn (sandbox.logs, the
// last read of a follow), after a few turns by a follow.
func TestLogStreamCutLeftUnderWay(t *testing.T) {
	name := filepath.Join(t.TempDir(), "stdout.log")
	if err := os.WriteFile(name, []byte("kept\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fsetxattr(int(f.Fd()), nsinit.CutsXattr, []byte("3"), 0); err != nil {
		t.Skipf("user xattrs on %s: %v", name, err)
	}
	var out bytes.Buffer
	st := &logStream{f: f, w: &out, name: "stdout"}
	if err := st.copy(false); err != nil || out.String() != "kept\n" {
		t.Errorf("copy(false) of a log with a cut left under way: %q, %v; want it read at once", out.String(), err)
	}
	out.Reset()
	st = &logStream{f: f, w: &out, name: "stdout"}
	turns := 0
	for ; turns < 10 && out.Len() == 0; turns++ {
		if err := st.copy(true); err != nil {
			t.Fatal(err)
		}
	}
	if out.String() != "kept\n" || turns > 4 {
		t.Errorf("a follow's turns of a log with a cut left under way: %q after %d turns; want it read within 4", out.String(), turns)
	}
}
