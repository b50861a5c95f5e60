//go:build linux

package runtime

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The init is in every one of its sandbox's cgroups from its start (on
// cgroup v1 it is cloned from a launcher thread that joined them), and no
// thread of the launcher is left in them afterwards: the launcher's own
// limits and the sandbox's removal (which kills what its cgroups hold)
// never reach it.
func TestInitBornInCgroup(t *testing.T) {
	e := newEnv(t)
	needCgroup(t)
	var sbs []*Sandbox
	for i := range 3 {
		sbs = append(sbs, e.launch(t, e.spec("born"+strconv.Itoa(i))))
	}
	for _, sb := range sbs {
		st, err := readState(sb.dir)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(sb.Pid()) + "/cgroup")
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range st.Cgroup.dirs() {
			rel := strings.TrimPrefix(d, unifiedMount)
			if st.Cgroup.Version == 1 {
				rel = strings.TrimPrefix(rel, "/"+strings.Split(strings.TrimPrefix(rel, "/"), "/")[0])
			}
			if !strings.Contains(string(b), ":"+rel+"\n") {
				t.Errorf("init %d of %s is not in its cgroup %s:\n%s", sb.Pid(), sb.Name(), d, b)
			}
		}
		tasks, err := filepath.Glob("/proc/self/task/*/cgroup")
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range tasks {
			b, err := os.ReadFile(f)
			if err != nil {
				continue // the thread ended meanwhile
			}
			if strings.Contains(string(b), "/"+filepath.Base(st.Cgroup.dirs()[0])) {
				t.Errorf("a thread of the launcher is in %s's cgroups (%s):\n%s", sb.Name(), f, b)
			}
		}
	}
}
