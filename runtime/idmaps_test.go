//go:build linux

package runtime

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/beamhop/lightbox/internal/idmap"
)

// The init's id maps are exactly the store's mapping (written by Go's
// clone as root, by newuidmap and newgidmap rootless), and it holds no
// supplementary group of the launcher's.
func TestInitIDMaps(t *testing.T) {
	e := newEnv(t)
	sb := e.launch(t, e.spec("maps"))
	proc := "/proc/" + strconv.Itoa(sb.Pid()) + "/"
	for _, f := range []struct {
		file string
		want []idmap.Range
	}{{"uid_map", e.m.mapping.UIDs}, {"gid_map", e.m.mapping.GIDs}} {
		b, err := os.ReadFile(proc + f.file)
		if err != nil {
			t.Fatal(err)
		}
		var got []idmap.Range
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var n [3]uint32
			for i, w := range strings.Fields(line) {
				x, err := strconv.ParseUint(w, 10, 32)
				if err != nil || i > 2 {
					t.Fatalf("%s: bad line %q", f.file, line)
				}
				n[i] = uint32(x)
			}
			got = append(got, idmap.Range{ContainerID: n[0], HostID: n[1], Size: n[2]})
		}
		if len(got) != len(f.want) {
			t.Errorf("%s = %v, want %v", f.file, got, f.want)
			continue
		}
		for i := range got {
			if got[i] != f.want[i] {
				t.Errorf("%s = %v, want %v", f.file, got, f.want)
				break
			}
		}
	}
	b, err := os.ReadFile(proc + "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if g, ok := strings.CutPrefix(line, "Groups:"); ok && strings.TrimSpace(g) != "" {
			t.Errorf("the init holds supplementary groups %q, want none", strings.TrimSpace(g))
		}
	}
	if out := sh(t, sb, "id -u; id -g"); out != "0\n0\n" {
		t.Errorf("in the sandbox: id -u, id -g = %q, want 0 and 0", out)
	}
}
