package ociruntime

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// cgroupRecord is a container's cgroup, in its state file.
type cgroupRecord struct {
	Version int    `json:"version"` // 1 (v1 or hybrid) or 2
	Path    string `json:"path"`
	// InitPids (v1) says the init is in a pids cgroup of its own,
	// initPidsPath(Path) (see "The init's pids"). Unset in a container
	// created before it was recorded: the init is in Path, as then.
	InitPids bool `json:"initPids,omitempty"`
}

// The init's pids
//
// The init is a Go process: it makes OS threads as it runs (one for
// every process it starts, more while some block in system calls), and
// the Go runtime dies ("runtime: failed to create new OS thread") when
// clone fails. Counted in the container's pids cgroup, it died whenever
// the container's processes held pids.max (podman run --pids-limit 10
// with a fork burst killed it, and the container with it, 9 runs in
// 50), where runc's and crun's init has become the container's process
// and needs nothing more.
//
// So on cgroup v1, where each hierarchy places a thread on its own, the
// init's threads are in a pids cgroup of their own, initPidsPath,
// outside the container's (and outside its parent: a pod's limit would
// count them too), with no limit; but its main thread, which
// /proc/PID/cgroup shows (engines, containerd's shim and runtime-tools
// find the container's cgroup from the init's pid), never makes a
// thread (nsinit.EnvOCIInit), and takes one place of the limit. In
// every other hierarchy the init is in the container's cgroup, as
// before. The container's cgroup has the spec's limits, as they read
// (runtime-tools checks pids.max), and pids.current counts the
// container's processes and the init's main thread. Every process is
// born in it: the init's thread that forks one joins it first, through
// its tasks file, and raises pids.max for itself and the main thread
// meanwhile (nsinit's pidsCgroup; both files opened by the runtime):
// the start and execs get the processes to their limit, their own
// forks to one less. The other hierarchies are unchanged: in the memory
// one the OOM events engines watch are the container's cgroup's own,
// which a child's OOM would not raise on v1; the init's oom_score_adj
// is nsinit's ociFork's.
//
// On cgroup v2 a process is in one cgroup for every controller, and the
// container's cgroup is the engine's to shape (a threaded child would
// turn it into a threaded domain, which nested containers and systemd
// refuse): v2 is unchanged, and this host (hybrid, no controller on v2)
// cannot test it.

// initPidsRoot is where the inits' pids cgroups are, in the v1 pids
// hierarchy.
const initPidsRoot = "/lightbox-runc-init"

// initPidsPath is the pids cgroup of the init of the container whose
// cgroup is path: unique as path is, one level below initPidsRoot (so
// that no directory is shared, which one container's delete would remove
// under another's create).
func initPidsPath(path string) string {
	return initPidsRoot + "/" + url.PathEscape(strings.TrimPrefix(path, "/"))
}

// cgroupControl is what the commands need of a cgroup of either version.
type cgroupControl interface {
	add(pid int) error
	update(res *specs.LinuxResources) error
	freeze() error
	thaw() error
	frozen() bool
	pids() ([]int, error)
	remove() error
	stats() (any, error)
	// placeInit moves the threads of the init pid, once ready, where
	// they belong (v1: see "The init's pids").
	placeInit(pid int) error
	// spawnFiles are the container's pids cgroup's tasks and pids.max
	// files for the init's forking thread, nil when the init is in it.
	spawnFiles() (tasks, max *os.File, err error)
}

// cgroupPath makes the spec's cgroupsPath absolute: a relative one, and
// none, go under /lightbox-runc.
func cgroupPath(p, id string) string {
	if p == "" {
		return "/lightbox-runc/" + id
	}
	if !filepath.IsAbs(p) {
		return "/lightbox-runc/" + p
	}
	return filepath.Clean(p)
}

// newCgroup makes the container's cgroup with res. Where cgroups cannot
// be made (rootless on cgroup v1, a read-only cgroupfs) and nothing was
// asked of them, the container has none (nil, nil), as runc does rootless.
func newCgroup(path string, res *specs.LinuxResources) (*cgroupRecord, cgroupControl, error) {
	if res == nil {
		res = &specs.LinuxResources{}
	}
	rec := &cgroupRecord{Version: 1, Path: path}
	var c cgroupControl
	var err error
	if cgroups.Mode() == cgroups.Unified {
		rec.Version = 2
		var m *cgroup2.Manager
		m, err = cgroup2.NewManager("/sys/fs/cgroup", path, cgroup2.ToResources(res))
		if err == nil {
			c = v2{m, path}
		}
	} else {
		var cg cgroup1.Cgroup
		cg, err = cgroup1.New(cgroup1.StaticPath(path), res, cgroup1.WithHierarchy(v1Hierarchy))
		if err == nil {
			c1 := v1{c: cg}
			if root, ok := v1PidsRoot(); ok {
				c1.pidsRoot, c1.path = root, path
				if err = os.Mkdir(filepath.Dir(c1.initPids()), 0o755); errors.Is(err, os.ErrExist) {
					err = nil
				}
				if err == nil {
					// Left by a create killed before its record: reused.
					if err = os.Mkdir(c1.initPids(), 0o755); errors.Is(err, os.ErrExist) {
						err = nil
					}
				}
				if err != nil {
					_ = c1.remove() // just made, empty: a failure leaves it to delete, as any cgroup the record names
					err = fmt.Errorf("the init's pids cgroup: %w", err)
				}
				rec.InitPids, c1.initSeparate = true, true
			}
			c = c1
		}
	}
	rootless := os.Geteuid() != 0 || !initialUserNS()
	if err == nil && rootless {
		// cgroup1.New and cgroup2.NewManager take a directory that is
		// there already for made: rootless, one that root made (a root
		// container with the same id and path) is not ours, and the
		// container's start would fail on its first write there. Not
		// removed: nothing of it is ours.
		if err = writable(rec); err != nil {
			c = nil
		}
	}
	if err != nil {
		if rootless {
			if resourcesAsked(res) {
				return nil, nil, fmt.Errorf("linux.resources: no cgroup can be made here (%w): run as root, or drop the limits", err)
			}
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("create cgroup %s: %w", path, err)
	}
	return rec, c, nil
}

// writable reports an error unless this process may write every
// directory of the cgroup rec: each v1 hierarchy's, the init's pids
// cgroup's (rec.InitPids), or the v2 one.
func writable(rec *cgroupRecord) error {
	var dirs []string
	if rec.Version == 2 {
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup", rec.Path))
	} else {
		ss, err := v1Hierarchy()
		if err != nil {
			return err
		}
		for _, s := range ss {
			if p, ok := s.(interface{ Path(string) string }); ok {
				dirs = append(dirs, p.Path(rec.Path))
			}
		}
		if root, ok := v1PidsRoot(); ok && rec.InitPids {
			dirs = append(dirs, filepath.Join(root, initPidsPath(rec.Path)))
		}
	}
	for _, d := range dirs {
		if err := unix.Access(d, unix.W_OK); err != nil {
			return &os.PathError{Op: "access", Path: d, Err: err}
		}
	}
	return nil
}

// v1Hierarchy is every v1 hierarchy but the named ones and those that
// are not mounted.
func v1Hierarchy() ([]cgroup1.Subsystem, error) {
	ss, err := cgroup1.Default()
	if err != nil {
		return nil, err
	}
	var out []cgroup1.Subsystem
	for _, s := range ss {
		if s.Name() == "systemd" {
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

func resourcesAsked(r *specs.LinuxResources) bool {
	return r != nil && (r.Memory != nil || r.CPU != nil || r.Pids != nil || r.BlockIO != nil || len(r.HugepageLimits) > 0 || r.Network != nil || len(r.Unified) > 0)
}

func loadCgroup(rec *cgroupRecord) (cgroupControl, error) {
	if rec == nil {
		return nil, nil
	}
	if rec.Version == 2 {
		m, err := cgroup2.Load(rec.Path)
		if err != nil {
			return nil, err
		}
		return v2{m, rec.Path}, nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(rec.Path), cgroup1.WithHierarchy(v1Hierarchy))
	if err != nil {
		return nil, err
	}
	c := v1{c: cg}
	// Known whatever the record says, so that a create killed before it
	// recorded InitPids leaves nothing delete does not remove.
	if root, ok := v1PidsRoot(); ok {
		c.pidsRoot, c.path, c.initSeparate = root, rec.Path, rec.InitPids
	}
	return c, nil
}

// v1PidsRoot is where the v1 pids hierarchy is mounted, if it is.
func v1PidsRoot() (string, bool) {
	ss, err := cgroup1.Default()
	if err != nil {
		return "", false
	}
	for _, s := range ss {
		if p, ok := s.(interface{ Path(string) string }); ok && s.Name() == cgroup1.Pids {
			return p.Path("/"), true
		}
	}
	return "", false
}

// v1 is a container's cgroup on v1.
type v1 struct {
	c cgroup1.Cgroup
	// pidsRoot is where the pids hierarchy is mounted ("" if it is
	// not), path the cgroup's path, and initSeparate whether the init is
	// in its own pids cgroup (see cgroupRecord.InitPids).
	pidsRoot, path string
	initSeparate   bool
}

// pidsDir and initPids are the directories of the container's and its
// init's cgroups in the pids hierarchy.
func (c v1) pidsDir() string  { return filepath.Join(c.pidsRoot, c.path) }
func (c v1) initPids() string { return filepath.Join(c.pidsRoot, initPidsPath(c.path)) }

func (c v1) freeze() error       { return c.c.Freeze() }
func (c v1) thaw() error         { return c.c.Thaw() }
func (c v1) frozen() bool        { return c.c.State() == cgroup1.Frozen }
func (c v1) stats() (any, error) { return c.c.Stat(cgroup1.IgnoreNotExist) }

func (c v1) update(r *specs.LinuxResources) error { return c.c.Update(r) }

func (c v1) add(pid int) error { return c.c.Add(cgroup1.Process{Pid: pid}) }

// placeInit puts the threads of the init pid, ready (its program has
// re-executed itself already), in its own pids cgroup but its main
// thread (see "The init's pids"). Its threads made after are cloned
// from those, but for the main thread's, which the Go runtime's
// template thread makes.
func (c v1) placeInit(pid int) error {
	if !c.initSeparate {
		return nil
	}
	for _, f := range []string{filepath.Join(c.initPids(), "cgroup.procs"), filepath.Join(c.pidsDir(), "tasks")} {
		if err := os.WriteFile(f, []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("the init's pids cgroups: %w", err)
		}
	}
	return nil
}

// remove removes the cgroup, and the init's pids cgroup.
func (c v1) remove() error {
	if err := c.c.Delete(); err != nil {
		return err
	}
	if c.pidsRoot == "" {
		return nil
	}
	dir := c.initPids()
	if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "rmdir", Path: dir, Err: err}
	}
	return nil
}

// spawnFiles opens the container's pids cgroup's tasks and pids.max for
// the init's forking thread (see "The init's pids").
func (c v1) spawnFiles() (tasks, max *os.File, err error) {
	if !c.initSeparate {
		return nil, nil, nil
	}
	tasks, err = os.OpenFile(filepath.Join(c.pidsDir(), "tasks"), os.O_WRONLY, 0)
	if err != nil {
		return nil, nil, err
	}
	max, err = os.OpenFile(filepath.Join(c.pidsDir(), "pids.max"), os.O_RDWR, 0)
	if err != nil {
		_ = tasks.Close() // opened for writing, nothing written
		return nil, nil, err
	}
	return tasks, max, nil
}

// pids are the processes in the cgroup, the init with them: from the
// memory hierarchy first, where the init is in the container's cgroup
// (in the pids one it is not, see "The init's pids").
func (c v1) pids() ([]int, error) {
	ps, err := c.c.Processes(cgroup1.Memory, true)
	if err != nil {
		ps, err = c.c.Processes(cgroup1.Pids, true)
	}
	if err != nil {
		return nil, err
	}
	// A process is listed once per cgroup it has a thread in.
	var out []int
	seen := map[int]bool{}
	for _, p := range ps {
		if !seen[p.Pid] {
			seen[p.Pid] = true
			out = append(out, p.Pid)
		}
	}
	return out, nil
}

type v2 struct {
	m    *cgroup2.Manager
	path string
}

func (c v2) spawnFiles() (tasks, max *os.File, err error) { return nil, nil, nil }
func (c v2) placeInit(int) error                          { return nil }
func (c v2) add(pid int) error                            { return c.m.AddProc(uint64(pid)) }
func (c v2) update(r *specs.LinuxResources) error         { return c.m.Update(cgroup2.ToResources(r)) }
func (c v2) freeze() error                                { return c.m.Freeze() }
func (c v2) thaw() error                                  { return c.m.Thaw() }
func (c v2) remove() error                                { return c.m.Delete() }
func (c v2) stats() (any, error)                          { return c.m.Stat() }
func (c v2) frozen() bool {
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", filepath.Clean("/"+c.path), "cgroup.freeze"))
	return err == nil && strings.TrimSpace(string(b)) == "1"
}
func (c v2) pids() ([]int, error) {
	ps, err := c.m.Procs(true)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, p := range ps {
		out = append(out, int(p))
	}
	return out, nil
}
