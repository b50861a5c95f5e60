package ociruntime

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// cgroupRecord is a container's cgroup, in its state file.
type cgroupRecord struct {
	Version int    `json:"version"` // 1 (v1 or hybrid) or 2
	Path    string `json:"path"`
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
			c = v1{cg}
		}
	}
	if err != nil {
		if os.Geteuid() != 0 || !initialUserNS() {
			if resourcesAsked(res) {
				return nil, nil, fmt.Errorf("linux.resources: no cgroup can be made here (%w): run as root, or drop the limits", err)
			}
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("create cgroup %s: %w", path, err)
	}
	return rec, c, nil
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
	return v1{cg}, nil
}

type v1 struct{ c cgroup1.Cgroup }

func (c v1) add(pid int) error                    { return c.c.Add(cgroup1.Process{Pid: pid}) }
func (c v1) update(r *specs.LinuxResources) error { return c.c.Update(r) }
func (c v1) freeze() error                        { return c.c.Freeze() }
func (c v1) thaw() error                          { return c.c.Thaw() }
func (c v1) frozen() bool                         { return c.c.State() == cgroup1.Frozen }
func (c v1) remove() error                        { return c.c.Delete() }
func (c v1) stats() (any, error)                  { return c.c.Stat(cgroup1.IgnoreNotExist) }
func (c v1) pids() ([]int, error) {
	ps, err := c.c.Processes(cgroup1.Pids, true)
	if err != nil {
		ps, err = c.c.Processes(cgroup1.Memory, true)
	}
	if err != nil {
		return nil, err
	}
	var out []int
	for _, p := range ps {
		out = append(out, p.Pid)
	}
	return out, nil
}

type v2 struct {
	m    *cgroup2.Manager
	path string
}

func (c v2) add(pid int) error                    { return c.m.AddProc(uint64(pid)) }
func (c v2) update(r *specs.LinuxResources) error { return c.m.Update(cgroup2.ToResources(r)) }
func (c v2) freeze() error                        { return c.m.Freeze() }
func (c v2) thaw() error                          { return c.m.Thaw() }
func (c v2) remove() error                        { return c.m.Delete() }
func (c v2) stats() (any, error)                  { return c.m.Stat() }
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
