package runtime

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The cgroups of a sandbox, through containerd/cgroups/v3 (its cgroup1
// and cgroup2 packages make and remove them, write the limits, move the
// init in and read the counters):
//
//   - cgroup v1 (and hybrid, a v2 mount with no controllers): as root,
//     one cgroup per controller (pids, memory, cpu, cpuacct), nested under
//     the launcher's own cgroup of that controller as lightbox/<id>; the
//     init is cloned from a thread that joined them (startInCgroupsV1),
//     so it is born inside. Unprivileged users get no cgroup (v1
//     has no delegation): pids fall back to RLIMIT_NPROC, which Linux
//     counts per uid (5.14+: per uid in each user namespace), so with a
//     subordinate range mapped a workload that changes uid starts a new
//     count (Launch says so: rlimitPerUID); memory and CPU are refused.
//   - cgroup v2: one cgroup, lightbox-<id>, as root under the root of
//     the tree, rootless next to the caller's own cgroup in the nearest
//     ancestor the caller owns whose subtree_control has the controllers
//     (systemd's user@UID.service delegation, or any subtree set up so).
//     The init is cloned straight into it (CLONE_INTO_CGROUP).
//
// The workloads (every command the init starts, and what they start) run
// in a child cgroup, workload/, which holds the pids limit; the sandbox's
// cgroup allows initPidsReserve more, for the init's own threads: a fork
// bomb that keeps the workloads at their limit cannot stop the init from
// making the thread it needs to serve Destroy (an Exec then fails with
// EAGAIN). On v2 the sandbox's cgroup is a threaded domain and workload/
// a threaded child with only the pids controller (the no-internal-process
// rule holds: domain controllers stay on the sandbox's cgroup, where the
// init is); on v1 workload/ is a child in the pids, memory and cpu
// hierarchies. The init's spawner thread, which forks every workload,
// moves itself there through a cgroup.threads (v1: tasks, one per
// hierarchy) file the runtime opened (so the kernel checks the runtime's
// credentials, not those of the sandbox's root), and its children are
// born in it. The kernel counts that thread there, as one of workload/'s
// tasks: workload/ allows the workloads' limit plus spawnerTasks, so that
// the workloads themselves (the main command, every Exec, what they start
// and their threads) get exactly their limit, the figure the caller gave
// (--pids-limit 16 let them run 15: sh and 15 sleeps were refused). Usage
// takes that thread off workload/'s count and limit, so it reports the
// workloads' own; a workload that reads its cgroup's pids.max (and
// pids.current, and tasks) sees the spawner's place in it.
//
// On v1 the memory and CPU limits are the workloads' (workload/), and
// the sandbox's cgroup allows initMemoryReserve and initCPUReserve more
// for the init: at the limit the OOM killer chooses among the workloads
// only, and CFS throttles them, not the init. Workloads that kept the
// quota busy starved the init, which serves Destroy and enforces the
// timeout: at --cpus 0.01 a sandbox with 50 busy loops ended 131 s after
// its 2 s timeout, and rm -f took 73 s. A workload can
// lower its own oom_score_adj to the init's (workloadOOMScore is only a
// default), and memory no process's RSS shows (tmpfs, pipe buffers) then
// made the init, the largest process left, the one killed: the sandbox
// died with it, reported as lightbox's failure. On v2 the memory
// controller cannot be enabled in a threaded workload/, and
// workloadOOMScore is all there is.
//
// The state file records the cgroup before it is made, so that removing
// the sandbox's directory (destroy, gc after a crash) removes it too.

// cgroupState is where a sandbox's cgroup is, in its state file.
type cgroupState struct {
	// Version is 1 or 2.
	Version int `json:"version"`
	// Paths (v1) maps a controller to the cgroup's path in its hierarchy.
	Paths map[string]string `json:"paths,omitempty"`
	// Path (v2) is the cgroup's path under the unified mount.
	Path string `json:"path,omitempty"`
	// Controllers (v2), when set, are the controllers the cgroup may
	// enable (a delegated subtree's); unset, all of pids, memory, cpu.
	Controllers []string `json:"controllers,omitempty"`
	// WorkloadV1 (v1) lists the hierarchies the workloads have a child
	// cgroup in: pids, and memory or cpu only where that limit is set
	// (each child is two cgroup directories made and removed per launch,
	// ~0.1 ms). Unset in a sandbox launched before it was recorded: each
	// of v1WorkloadControllers the sandbox has, those missing tolerated.
	WorkloadV1 []string `json:"workloadV1,omitempty"`
}

// has says whether the (v2) cgroup may enable controller c.
func (cs *cgroupState) has(c string) bool {
	return cs.Controllers == nil || contains(cs.Controllers, c)
}

const unifiedMount = "/sys/fs/cgroup"

// workloadCgroup is the child cgroup the workloads run in.
const workloadCgroup = "workload"

// initPidsReserve is how many tasks the sandbox's cgroup allows beyond
// its workloads' pids limit: the init's own threads (about ten; Go makes
// more while some block in system calls).
const initPidsReserve = 64

// pidsMaxLimit is the largest value pids.max takes (PID_MAX_LIMIT on a
// 64-bit kernel): a sandbox's cgroup allows its workloads' limit plus
// initPidsReserve, at most this.
const pidsMaxLimit = 1 << 22

// cgroupPidsMax is the pids limit of the sandbox's cgroup, for a workloads'
// limit of n (> 0).
func cgroupPidsMax(n int64) int64 { return min(n+initPidsReserve, pidsMaxLimit) }

// spawnerTasks is how many of the init's threads live in workload/: the
// spawner thread, which forks every workload and so must be where they
// are born (v1 has no CLONE_INTO_CGROUP), one for the init's life. (A
// handover's exec ends it and the new init's spawner joins in its place:
// for that moment the workloads could take its place too.)
const spawnerTasks = 1

// workloadPidsMax is the pids limit of workload/, for a workloads' limit
// of n (> 0): n and the spawner thread's place, at most what pids.max
// takes (the kernel never has that many tasks).
func workloadPidsMax(n int64) int64 { return min(n+spawnerTasks, pidsMaxLimit) }

// workloadPids is the workloads' own pids count and limit, from
// workload/'s (current, limit as containerd reads them: "max" is 0 on
// v1, the largest uint64 on v2): the spawner thread's place taken off
// both, and no limit 0. A limit at pidsMaxLimit is the kernel's maximum,
// which workloadPidsMax gives any limit from pidsMaxLimit-spawnerTasks
// up: it is reported as it is.
func workloadPids(current, limit uint64) (uint64, uint64) {
	current -= min(current, spawnerTasks) // 0 once the init is gone
	switch {
	case limit > pidsMaxLimit:
		limit = 0
	case limit > spawnerTasks && limit < pidsMaxLimit:
		limit -= spawnerTasks
	}
	return current, limit
}

// initMemoryReserve is how much memory the sandbox's (v1) cgroup allows
// beyond its workloads' limit: the init's own (a few MiB resident).
const initMemoryReserve = 64 << 20

// initCPUReserve is how much CPU time per cpuPeriod the sandbox's (v1)
// cgroup allows beyond its workloads' quota: a tenth of a CPU for the
// init.
const initCPUReserve = cpuPeriod / 10

// v1Controllers are the hierarchies a v1 sandbox gets a cgroup in.
var v1Controllers = []cgroup1.Name{cgroup1.Pids, cgroup1.Memory, cgroup1.Cpu, cgroup1.Cpuacct}

// limitPlan is how a launch's limits will hold, decided before anything
// is created.
type limitPlan struct {
	cgroup  *cgroupState
	nproc   int64 // RLIMIT_NPROC inside, 0 = none
	applied LimitsApplied
}

const noDelegationV1 = "cgroup v1 has no delegation to unprivileged users: run as root, or on a cgroup v2 host with a delegated subtree (systemd's user@UID.service, or a cgroup the caller owns with the controllers enabled)"

// planLimits decides how each of l holds for a sandbox whose cgroup is
// named id; a limit that cannot hold is an error wrapping
// ErrLimitUnsupported.
//
// The cgroup's paths are those of its parent ("lightbox" under the
// launcher's cgroup, or under the delegated subtree): join gives the
// sandbox its own below them.
func planLimits(l Limits) (*limitPlan, error) {
	if err := l.validate(); err != nil {
		return nil, err
	}
	p := &limitPlan{applied: LimitsApplied{"shm": "tmpfs (kernel default size)", "logs": "none"}}
	if l.ShmBytes > 0 {
		p.applied["shm"] = "tmpfs " + mib(l.ShmBytes)
	}
	if l.LogBytes > 0 {
		p.applied["logs"] = mib(l.LogBytes) + " per stream, newest kept"
	}
	mode := cgroups.Mode()
	root := os.Geteuid() == 0
	switch {
	case mode == cgroups.Unified:
		return planV2(p, l, root)
	case mode == cgroups.Unavailable:
		return planNoCgroup(p, l, "no cgroup filesystem is mounted at /sys/fs/cgroup")
	case !root:
		return planNoCgroup(p, l, noDelegationV1)
	}
	paths := map[string]string{}
	nested := v1NestedPath("lightbox")
	for _, c := range v1Controllers {
		pth, err := nested(c)
		if err != nil {
			if needsController(l, c) {
				return nil, &LimitError{Resource: limitResource(c), Err: fmt.Errorf("%w: the cgroup v1 %s controller is not mounted", ErrLimitUnsupported, c)}
			}
			continue
		}
		paths[string(c)] = pth
	}
	p.cgroup = &cgroupState{Version: 1, Paths: paths, WorkloadV1: v1WorkloadFor(l, paths)}
	describe(p.applied, l, "cgroup v1")
	if l.MemoryBytes > 0 && l.MemorySwapBytes != 0 && !memswAccounted(paths) {
		return nil, &LimitError{Resource: "memory+swap", Err: fmt.Errorf("%w: swap is not accounted on this host (boot with swapaccount=1)", ErrLimitUnsupported)}
	}
	return p, nil
}

// ownCgroupMu orders the reads of this process's own v1 cgroups
// (/proc/self/cgroup, which are its main thread's) after the launches
// whose thread sits in a sandbox's cgroups to clone its init there
// (startInCgroupsV1, which holds it for reading): that thread may be the
// main thread, and a launch beside it would take the sandbox's cgroups
// for the process's own and make its sandbox's inside them, where the
// other sandbox's removal kills it (two of a warm pool's fills, seen in
// bench/NOTES.md, 2026-12-01 poolidle).
var ownCgroupMu sync.RWMutex

// v1NestedPath is cgroup1.NestedPath: for each v1 controller, suffix
// under this process's own cgroup, relative to the root of the
// controller's mount. It reads /proc/self/mountinfo once, where
// NestedPath reads it once per line of /proc/self/cgroup (nine here).
func v1NestedPath(suffix string) cgroup1.Path {
	ownCgroupMu.Lock()
	paths, err := cgroup1.ParseCgroupFile("/proc/self/cgroup")
	ownCgroupMu.Unlock()
	if err != nil {
		return func(cgroup1.Name) (string, error) { return "", err }
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return func(cgroup1.Name) (string, error) { return "", err }
	}
	for n, p := range paths {
		dest, ok := "", false
		for _, m := range mounts {
			if slices.Contains(strings.Split(m.VFSOptions, ","), n) {
				dest, ok = m.Root, true
				break
			}
		}
		if !ok {
			// As NestedPath: a controller without a mount fails them all.
			return func(cgroup1.Name) (string, error) { return "", cgroup1.ErrNoCgroupMountDestination }
		}
		rel, err := filepath.Rel(dest, p)
		if err != nil {
			return func(cgroup1.Name) (string, error) { return "", err }
		}
		if rel == "." {
			rel = dest
		}
		paths[n] = filepath.Join("/", rel)
	}
	return func(name cgroup1.Name) (string, error) {
		root, ok := paths[string(name)]
		if !ok {
			if root, ok = paths["name="+string(name)]; !ok {
				return "", cgroup1.ErrControllerNotActive
			}
		}
		return filepath.Join(root, suffix), nil
	}
}

// v1Mounts caches the cgroup v1 mounts of this process's mount
// namespace: a launch plans its limits twice (the root package checks
// them before it takes leases, Launch plans them), and a long-lived
// embedding process launches many sandboxes, where parsing
// /proc/self/mountinfo each time cost ~0.1 ms a plan (bench/NOTES.md). The
// cache holds while a descriptor of /proc/self/mountinfo kept open polls
// without POLLPRI: the kernel raises it on any change of the mount table
// since the last poll (proc(5), /proc/pid/mounts).
var v1Mounts struct {
	mu     sync.Mutex
	opened bool
	fd     int // kept open for the process's life, once opened
	mounts []*mountinfo.Info
}

// cgroupMounts returns the cgroup (v1) mounts of this process's mount
// namespace, parsed again only when the table changed.
func cgroupMounts() ([]*mountinfo.Info, error) {
	c := &v1Mounts
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.opened {
		fd, err := unix.Open("/proc/self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup")) // no cache then
		}
		c.fd, c.opened = fd, true // the event count is taken at open: a change from here on shows
	} else if c.mounts != nil && !mountsChanged(c.fd) {
		return c.mounts, nil
	}
	// The poll above took note of the change: one that comes after it
	// shows at the next poll, even if this parse already saw it.
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup"))
	if err != nil {
		c.mounts = nil
		return nil, err
	}
	c.mounts = mounts
	return mounts, nil
}

// mountsChanged polls a descriptor of /proc/self/mountinfo: true when the
// mount table changed since the last poll (or the poll failed).
func mountsChanged(fd int) bool {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLPRI}}
	for {
		_, err := unix.Poll(pfd, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err != nil || pfd[0].Revents&(unix.POLLPRI|unix.POLLERR) != 0
	}
}

func limitResource(c cgroup1.Name) string {
	if c == cgroup1.Cpu {
		return "cpu"
	}
	return string(c)
}

// CheckLimits tells whether l can hold for this caller on this host,
// without making anything: the error Launch would return.
func CheckLimits(l Limits) error {
	_, err := planLimits(l)
	return err
}

func needsController(l Limits, c cgroup1.Name) bool {
	switch c {
	case cgroup1.Pids:
		return l.Pids > 0
	case cgroup1.Memory:
		return l.MemoryBytes > 0
	case cgroup1.Cpu:
		return l.CPUs > 0
	}
	return false
}

// rlimitPerUID ends the pids limit's description where RLIMIT_NPROC
// holds it and the sandbox maps more than one uid.
const rlimitPerUID = " per uid (RLIMIT_NPROC: a process that changes uid starts a new count)"

// planNoCgroup is the plan where no cgroup can be made: pids through
// RLIMIT_NPROC, memory and CPU refused.
func planNoCgroup(p *limitPlan, l Limits, why string) (*limitPlan, error) {
	if l.MemoryBytes > 0 {
		return nil, &LimitError{Resource: "memory", Err: fmt.Errorf("%w: %s", ErrLimitUnsupported, why)}
	}
	if l.CPUs > 0 {
		return nil, &LimitError{Resource: "cpu", Err: fmt.Errorf("%w: %s", ErrLimitUnsupported, why)}
	}
	if l.Pids > 0 {
		// The init sets RLIMIT_NPROC to l.Pids; an unprivileged caller
		// cannot raise it past its own hard limit, which the init
		// inherits: refused here, before anything is made.
		var cur unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NPROC, &cur); err == nil && uint64(l.Pids) > cur.Max {
			return nil, &LimitError{Resource: "pids", Err: fmt.Errorf("%w: %d is above this process's hard RLIMIT_NPROC %d, which holds it without a cgroup (%s): ask for at most %d", ErrLimitUnsupported, l.Pids, cur.Max, why, cur.Max)}
		}
	}
	short := "no cgroup delegation"
	if cgroups.Mode() == cgroups.Unavailable {
		short = "no cgroup filesystem"
	}
	p.nproc = l.Pids
	p.applied["pids"] = "none — " + short
	if l.Pids > 0 {
		p.applied["pids"] = fmt.Sprintf("rlimit %d", l.Pids)
	}
	p.applied["memory"] = "none — " + short
	p.applied["cpu"] = "none — " + short
	return p, nil
}

func describe(a LimitsApplied, l Limits, how string) {
	a["pids"], a["memory"], a["cpu"] = how+" (no limit)", how+" (no limit)", how+" (no limit)"
	if l.Pids > 0 {
		a["pids"] = fmt.Sprintf("%s %d", how, l.Pids)
	}
	if l.MemoryBytes > 0 {
		a["memory"] = fmt.Sprintf("%s %s", how, mib(l.MemoryBytes))
		switch {
		case l.MemorySwapBytes < 0:
			a["memory"] += ", swap unlimited"
		case l.MemorySwapBytes > l.MemoryBytes:
			a["memory"] += ", with swap " + mib(l.MemorySwapBytes)
		}
	}
	if l.CPUs > 0 {
		a["cpu"] = fmt.Sprintf("%s %g CPUs", how, l.CPUs)
	}
}

func mib(b int64) string {
	if b%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", b>>20)
	}
	return fmt.Sprintf("%d bytes", b)
}

func memswAccounted(paths map[string]string) bool {
	_, err := os.Stat(filepath.Join(unifiedMount, "memory", "memory.memsw.limit_in_bytes"))
	return err == nil && paths["memory"] != ""
}

// planV2 finds where the sandbox's cgroup can go on a unified host.
// Rootless, the delegated subtree must enable pids (the default limit
// needs it); memory and cpu only when a limit asks for them (a subtree
// delegated with "memory pids", as older systemd does, gives a cgroup
// with no CPU limit, and a request for one is refused).
func planV2(p *limitPlan, l Limits, root bool) (*limitPlan, error) {
	if root {
		p.cgroup = &cgroupState{Version: 2, Path: "/lightbox"}
		describe(p.applied, l, "cgroup v2")
		return p, nil
	}
	parent, have, err := delegatedParent([]string{"pids"})
	if err != nil {
		return planNoCgroup(p, l, err.Error())
	}
	var ctrls []string
	for _, c := range []string{"pids", "memory", "cpu"} {
		if contains(have, c) {
			ctrls = append(ctrls, c)
		}
	}
	for _, c := range []struct {
		name, resource string
		asked          bool
	}{{"memory", "memory", l.MemoryBytes > 0}, {"cpu", "cpu", l.CPUs > 0}} {
		if c.asked && !contains(have, c.name) {
			return nil, &LimitError{Resource: c.resource, Err: fmt.Errorf("%w: the %s controller is not delegated to uid %d: %s enables only %q in cgroup.subtree_control (systemd: Delegate=%s, or run as root)",
				ErrLimitUnsupported, c.name, os.Geteuid(), parent, strings.Join(have, " "), strings.Join(append(ctrls, c.name), " "))}
		}
	}
	p.cgroup = &cgroupState{Version: 2, Path: filepath.Join(parent, "lightbox"), Controllers: ctrls}
	describe(p.applied, l, "cgroup v2")
	for _, c := range []string{"memory", "cpu"} {
		if !contains(ctrls, c) {
			p.applied[c] = "none — the " + c + " controller is not delegated"
		}
	}
	return p, nil
}

// delegatedParent returns the nearest ancestor of our own cgroup that we
// own and whose subtree_control enables the controllers, and what its
// subtree_control enables.
func delegatedParent(need []string) (string, []string, error) {
	own, err := ownCgroupV2()
	if err != nil {
		return "", nil, err
	}
	uid := uint32(os.Geteuid())
	for dir := filepath.Dir(own); dir != "/"; dir = filepath.Dir(dir) {
		full := filepath.Join(unifiedMount, dir)
		var st unix.Stat_t
		if err := unix.Stat(full, &st); err != nil || st.Uid != uid {
			break // past what is delegated to us
		}
		if unix.Access(filepath.Join(full, "cgroup.procs"), unix.W_OK) != nil {
			break
		}
		b, err := os.ReadFile(filepath.Join(full, "cgroup.subtree_control"))
		if err != nil {
			break
		}
		have := strings.Fields(string(b))
		ok := true
		for _, c := range need {
			ok = ok && contains(have, c)
		}
		if ok {
			return dir, have, nil
		}
	}
	return "", nil, fmt.Errorf("no cgroup v2 subtree delegated to uid %d with the %s controllers above %s (systemd's user@%d.service delegates one: run inside it, e.g. under systemd-run --user --scope -p Delegate=yes; or run as root)", uid, strings.Join(need, ", "), own, uid)
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func ownCgroupV2() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			return rest, nil
		}
	}
	return "", errors.New("no cgroup v2 entry in /proc/self/cgroup")
}

// mounts is what the init mounts on /sys/fs/cgroup (nsinit.Config.Cgroup).
func (cs *cgroupState) mounts() []string {
	if cs == nil {
		return nil
	}
	if cs.Version == 2 {
		return []string{"cgroup2"}
	}
	var out []string
	for _, c := range v1Controllers {
		if _, ok := cs.Paths[string(c)]; ok {
			out = append(out, string(c))
		}
	}
	return out
}

// join returns the cgroup named id below cs.
func (cs *cgroupState) join(id string) *cgroupState {
	out := &cgroupState{Version: cs.Version, Controllers: cs.Controllers, WorkloadV1: cs.WorkloadV1}
	if cs.Version == 2 {
		out.Path = filepath.Join(cs.Path, id)
		return out
	}
	out.Paths = map[string]string{}
	for c, p := range cs.Paths {
		out.Paths[c] = filepath.Join(p, id)
	}
	return out
}

// removeParents removes the shared "lightbox" parents once no sandbox
// uses them: rmdir fails (EBUSY, ENOTEMPTY) while one does, or another
// sandbox's removal got there first (ENOENT), and an empty parent left
// is no leak: the next sandbox uses it.
func (cs *cgroupState) removeParents() {
	_, parents := cs.reapDirs()
	for _, p := range parents {
		_ = os.Remove(p) // see above: in use, gone, or reused
	}
}

func v1Path(paths map[string]string) cgroup1.Path {
	return func(n cgroup1.Name) (string, error) {
		p, ok := paths[string(n)]
		if !ok {
			return "", cgroup1.ErrControllerNotActive
		}
		return p, nil
	}
}

func v1Hierarchy(paths map[string]string) cgroup1.Hierarchy {
	return func() ([]cgroup1.Subsystem, error) {
		var out []cgroup1.Subsystem
		for _, c := range v1Controllers {
			if _, ok := paths[string(c)]; !ok {
				continue
			}
			switch c {
			case cgroup1.Pids:
				out = append(out, cgroup1.NewPids(unifiedMount))
			case cgroup1.Memory:
				out = append(out, cgroup1.NewMemory(unifiedMount, cgroup1.OptionalSwap()))
			case cgroup1.Cpu:
				out = append(out, cgroup1.NewCpu(unifiedMount))
			case cgroup1.Cpuacct:
				out = append(out, cgroup1.NewCpuacct(unifiedMount))
			}
		}
		return out, nil
	}
}

// cpuPeriod is the CFS period the CPU limit is expressed in (100 ms).
const cpuPeriod = 100000

// retryParentGone runs a cgroup's creation again when it fails because a
// directory is gone: the parent every sandbox's cgroup shares (lightbox/)
// is removed when empty by another process's teardown (best effort,
// internal/reap), which can fall between the creation's mkdir of the
// parent and its mkdir of the child. The creation is idempotent: what it
// made before is reused.
func retryParentGone(create func() error) error {
	var err error
	for range 10 {
		if err = create(); !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return err
}

// create makes the cgroup with the limits written.
func (cs *cgroupState) create(l Limits) error {
	if cs.Version == 2 {
		res := &cgroup2.Resources{}
		if l.Pids > 0 {
			res.Pids = &cgroup2.Pids{Max: cgroupPidsMax(l.Pids)}
		} else {
			res.Pids = &cgroup2.Pids{} // enabled, for the count
		}
		if cs.has("memory") {
			res.Memory = &cgroup2.Memory{}
		}
		if l.MemoryBytes > 0 {
			mem := l.MemoryBytes
			res.Memory.Max = &mem
			swap := int64(0) // memory.swap.max is swap alone on v2
			switch {
			case l.MemorySwapBytes < 0:
				swap = math.MaxInt64
			case l.MemorySwapBytes > l.MemoryBytes:
				swap = l.MemorySwapBytes - l.MemoryBytes
			}
			if swap != math.MaxInt64 {
				res.Memory.Swap = &swap
			}
		}
		if cs.has("cpu") {
			res.CPU = &cgroup2.CPU{}
		}
		if l.CPUs > 0 {
			quota := int64(math.Round(l.CPUs * cpuPeriod))
			period := uint64(cpuPeriod)
			res.CPU.Max = cgroup2.NewCPUMax(&quota, &period)
		}
		var mgr *cgroup2.Manager
		err := retryParentGone(func() error {
			var err error
			mgr, err = cgroup2.NewManager(unifiedMount, cs.Path, res)
			return err
		})
		if err != nil {
			err = fmt.Errorf("create cgroup %s: %w", cs.Path, err)
			return errors.Join(err, rmdirAll(filepath.Join(unifiedMount, cs.Path)))
		}
		// The workloads' child: pids enabled in the sandbox's
		// subtree_control (a threaded controller: the init may stay in
		// the sandbox's cgroup), then made threaded, so that one thread
		// of the init (the spawner) can live in it.
		wpids := &cgroup2.Pids{} // no limit: the sandbox's, none either
		if l.Pids > 0 {
			wpids.Max = workloadPidsMax(l.Pids)
		}
		w, err := mgr.NewChild(workloadCgroup, &cgroup2.Resources{Pids: wpids})
		if err == nil {
			err = w.SetType(cgroup2.Threaded)
		}
		if err != nil {
			err = fmt.Errorf("create cgroup %s/%s: %w", cs.Path, workloadCgroup, err)
			return errors.Join(err, rmdirAll(filepath.Join(unifiedMount, cs.Path), filepath.Join(unifiedMount, cs.Path, workloadCgroup)))
		}
		return nil
	}
	res := &specs.LinuxResources{}
	if l.Pids > 0 {
		total := cgroupPidsMax(l.Pids)
		res.Pids = &specs.LinuxPids{Limit: &total}
	}
	if l.MemoryBytes > 0 {
		res.Memory = v1Memory(cs.Paths, l, initMemoryReserve)
	}
	if l.CPUs > 0 {
		quota := int64(math.Round(l.CPUs*cpuPeriod)) + initCPUReserve
		period := uint64(cpuPeriod)
		res.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	if err := retryParentGone(func() error {
		_, err := cgroup1.New(v1Path(cs.Paths), res, cgroup1.WithHierarchy(v1Hierarchy(cs.Paths)))
		return err
	}); err != nil {
		err = fmt.Errorf("create cgroup %s: %w", cs.Paths["pids"], err)
		return errors.Join(err, cs.remove(context.Background())) // what New made before it failed
	}
	if w := cs.v1Workload(); w != nil {
		wres := &specs.LinuxResources{}
		if l.Pids > 0 {
			wmax := workloadPidsMax(l.Pids)
			wres.Pids = &specs.LinuxPids{Limit: &wmax}
		}
		if l.MemoryBytes > 0 {
			wres.Memory = v1Memory(cs.Paths, l, 0)
		}
		if l.CPUs > 0 {
			quota := int64(math.Round(l.CPUs * cpuPeriod))
			period := uint64(cpuPeriod)
			wres.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
		}
		if err := retryParentGone(func() error {
			_, err := cgroup1.New(v1Path(w), wres, cgroup1.WithHierarchy(v1Hierarchy(w)))
			return err
		}); err != nil {
			err = fmt.Errorf("create cgroup %s/%s: %w", cs.Paths["pids"], workloadCgroup, err)
			return errors.Join(err, cs.remove(context.Background()))
		}
	}
	return nil
}

// v1Memory is the v1 memory settings of limits l plus extra bytes (the
// init's reserve on the sandbox's cgroup, 0 on the workloads').
func v1Memory(paths map[string]string, l Limits, extra int64) *specs.LinuxMemory {
	mem := l.MemoryBytes + extra
	m := &specs.LinuxMemory{Limit: &mem}
	if memswAccounted(paths) {
		swap := mem
		switch {
		case l.MemorySwapBytes < 0:
			swap = -1
		case l.MemorySwapBytes > 0:
			swap = l.MemorySwapBytes + extra
		}
		m.Swap = &swap
	}
	return m
}

// v1WorkloadControllers are the v1 hierarchies the workloads have a
// child cgroup in.
var v1WorkloadControllers = []cgroup1.Name{cgroup1.Pids, cgroup1.Memory, cgroup1.Cpu}

// v1WorkloadFor is the hierarchies of paths the workloads of a sandbox
// with limits l get a child cgroup in: pids (which holds the pids limit
// and counts them); memory and cpu when that limit is set, so that the
// limit is the workloads' and the init's reserve stays the init's.
func v1WorkloadFor(l Limits, paths map[string]string) []string {
	out := []string{} // not nil: nil is a sandbox that predates the field
	for _, c := range v1WorkloadControllers {
		if _, ok := paths[string(c)]; !ok {
			continue
		}
		if (c == cgroup1.Memory && l.MemoryBytes <= 0) || (c == cgroup1.Cpu && l.CPUs <= 0) {
			continue
		}
		out = append(out, string(c))
	}
	return out
}

// v1Workload is the workloads' cgroup on v1: a child in each hierarchy
// of WorkloadV1 (nil without any).
func (cs *cgroupState) v1Workload() map[string]string {
	var w map[string]string
	for _, c := range v1WorkloadControllers {
		if cs.WorkloadV1 != nil && !contains(cs.WorkloadV1, string(c)) {
			continue
		}
		if p, ok := cs.Paths[string(c)]; ok {
			if w == nil {
				w = map[string]string{}
			}
			w[string(c)] = filepath.Join(p, workloadCgroup)
		}
	}
	return w
}

// openWorkload opens the files through which the init's spawner thread
// moves itself into the workloads' cgroup: cgroup.threads on v2; on v1
// the tasks file of each of v1WorkloadControllers' hierarchies the
// sandbox has, the first of them (pids) apart. Opened here, so that the
// kernel checks the runtime's credentials when the init writes to them.
func (cs *cgroupState) openWorkload() (first *os.File, more []*os.File, _ error) {
	open := func(p string) (*os.File, error) {
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: p, Err: err}
		}
		return os.NewFile(uintptr(fd), p), nil
	}
	switch {
	case cs == nil:
		return nil, nil, nil
	case cs.Version == 2:
		f, err := open(filepath.Join(unifiedMount, cs.Path, workloadCgroup, "cgroup.threads"))
		return f, nil, err
	}
	w := cs.v1Workload()
	var files []*os.File
	for _, c := range v1WorkloadControllers {
		p, ok := w[string(c)]
		if !ok {
			continue
		}
		f, err := open(filepath.Join(unifiedMount, string(c), p, "tasks"))
		if err != nil {
			closeFiles(files)
			return nil, nil, err
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, nil, nil
	}
	return files[0], files[1:], nil
}

// openCPUMax opens for writing the files that hold the sandbox's CPU
// limit, for the init to lift it as it kills the sandbox (nsinit's
// FDs.CPUMax): v1's cpu.cfs_quota_us of the sandbox's cgroup and of
// workload/ (the parent's first: a child's quota never exceeds its
// parent's), v2's cpu.max.
func (cs *cgroupState) openCPUMax() ([]*os.File, error) {
	var paths []string
	switch {
	case cs == nil:
		return nil, nil
	case cs.Version == 2:
		paths = []string{filepath.Join(unifiedMount, cs.Path, "cpu.max")}
	default:
		p, ok := cs.Paths[string(cgroup1.Cpu)]
		if !ok {
			return nil, nil
		}
		paths = []string{filepath.Join(unifiedMount, string(cgroup1.Cpu), p, "cpu.cfs_quota_us")}
		if w, ok := cs.v1Workload()[string(cgroup1.Cpu)]; ok {
			paths = append(paths, filepath.Join(unifiedMount, string(cgroup1.Cpu), w, "cpu.cfs_quota_us"))
		}
	}
	var files []*os.File
	for _, p := range paths {
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			closeFiles(files)
			return nil, &os.PathError{Op: "open", Path: p, Err: err}
		}
		files = append(files, os.NewFile(uintptr(fd), p))
	}
	return files, nil
}

// openDir opens the v2 cgroup's directory, for CLONE_INTO_CGROUP.
func (cs *cgroupState) openDir() (*os.File, error) {
	p := filepath.Join(unifiedMount, cs.Path)
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// usage reads the cgroup's counters.
func (cs *cgroupState) usage() (Usage, error) {
	var u Usage
	if cs.Version == 2 {
		mgr, err := cgroup2.Load(cs.Path, cgroup2.WithMountpoint(unifiedMount))
		if err != nil {
			return u, err
		}
		st, err := mgr.Stat()
		if err != nil {
			return u, err
		}
		if st.Memory != nil {
			u.MemoryBytes = st.Memory.Usage
			if st.Memory.UsageLimit < math.MaxInt64 {
				u.MemoryLimitBytes = st.Memory.UsageLimit
			}
		}
		if w, err := cgroup2.Load(filepath.Join(cs.Path, workloadCgroup), cgroup2.WithMountpoint(unifiedMount)); err == nil {
			if wst, err := w.Stat(); err == nil && wst.Pids != nil {
				// The limit is the workloads'.
				wst.Pids.Current, wst.Pids.Limit = workloadPids(wst.Pids.Current, wst.Pids.Limit)
				st.Pids = wst.Pids
			}
		}
		if st.Pids != nil {
			u.Pids, u.PidsLimit = st.Pids.Current, st.Pids.Limit
		}
		if st.CPU != nil {
			u.CPUNanos = st.CPU.UsageUsec * 1000
		}
		if st.MemoryEvents != nil {
			u.OOMKills = st.MemoryEvents.OomKill
		}
		return u, nil
	}
	cg, err := cgroup1.Load(v1Path(cs.Paths), cgroup1.WithHierarchy(v1Hierarchy(cs.Paths)))
	if err != nil {
		return u, err
	}
	st, err := cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return u, err
	}
	if st.Memory != nil && st.Memory.Usage != nil {
		u.MemoryBytes = st.Memory.Usage.Usage
		if st.Memory.Usage.Limit < 1<<62 {
			u.MemoryLimitBytes = st.Memory.Usage.Limit
		}
	}
	if st.MemoryOomControl != nil {
		u.OOMKills = st.MemoryOomControl.OomKill
	}
	if w := cs.v1Workload(); w != nil {
		for c, p := range w {
			if _, err := os.Stat(filepath.Join(unifiedMount, c, p)); err != nil {
				delete(w, c) // a sandbox made before its workloads had a cgroup there
			}
		}
		if wcg, err := cgroup1.Load(v1Path(w), cgroup1.WithHierarchy(v1Hierarchy(w))); err == nil {
			if wst, err := wcg.Stat(cgroup1.IgnoreNotExist); err == nil {
				if wst.Pids != nil && w["pids"] != "" {
					// The limit is the workloads'.
					wst.Pids.Current, wst.Pids.Limit = workloadPids(wst.Pids.Current, wst.Pids.Limit)
					st.Pids = wst.Pids
				}
				if wst.Memory != nil && wst.Memory.Usage != nil && wst.Memory.Usage.Limit < 1<<62 {
					// So is this one: usage against it is the workloads'.
					u.MemoryBytes, u.MemoryLimitBytes = wst.Memory.Usage.Usage, wst.Memory.Usage.Limit
				}
				if wst.MemoryOomControl != nil {
					u.OOMKills += wst.MemoryOomControl.OomKill // v1 counts a kill only where the limit was hit
				}
			}
		}
	}
	if st.Pids != nil {
		u.Pids, u.PidsLimit = st.Pids.Current, st.Pids.Limit
	}
	if st.CPU != nil && st.CPU.Usage != nil {
		u.CPUNanos = st.CPU.Usage.Total
	}
	return u, nil
}

// openOOM opens the file holding the cgroup's OOM-kill counter:
// memory.oom_control (its oom_kill line) on v1, memory.events on v2; nil
// when the cgroup has no memory controller.
func (cs *cgroupState) openOOM() (*os.File, error) {
	var p string
	if cs.Version == 2 {
		p = filepath.Join(unifiedMount, cs.Path, "memory.events")
	} else {
		mp, ok := cs.Paths["memory"]
		if !ok {
			return nil, nil
		}
		// The workloads' cgroup, where their limit is (v1 counts a kill
		// only in the cgroup whose limit was hit); a sandbox made before
		// it had one, its own.
		p = filepath.Join(unifiedMount, "memory", mp, workloadCgroup, "memory.oom_control")
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			p = filepath.Join(unifiedMount, "memory", mp, "memory.oom_control")
		}
	}
	return os.Open(p)
}

// readOOMKills reads the OOM-kill count from a file openOOM opened,
// from its start (a cgroup file shows the counter as it is at each read
// from offset 0), so that one descriptor serves every command.
func readOOMKills(f *os.File) (uint64, error) {
	var buf [512]byte
	n, err := f.ReadAt(buf[:], 0)
	if n == 0 && err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(buf[:n]), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			return strconv.ParseUint(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no oom_kill line", f.Name())
}

// removeEmpty removes the cgroup of a sandbox whose init is gone (and
// every process of its pid namespace with it): its directories are
// empty, and plain rmdirs, children first, remove them, as the reaper
// does. remove, whose containerd Delete walks each hierarchy for
// processes to kill first (~1.8 ms of CPU a sandbox here, bench/NOTES.md),
// only when one is refused: something is left in it.
func (cs *cgroupState) removeEmpty(ctx context.Context) error {
	dirs, _ := cs.reapDirs()
	for _, d := range dirs {
		if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) {
			return cs.remove(ctx)
		}
	}
	return nil
}

// remove kills whatever is left in the cgroup and removes it; a cgroup
// that is gone already is not an error. On v2 the kill is cgroup.kill
// (Linux 5.14+; the library freezes and signals on older kernels): every
// process in the sandbox's cgroup and below at once, whatever pid
// namespace it is in. On v1 each process left is sent SIGKILL by its pid.
func (cs *cgroupState) remove(ctx context.Context) error {
	deadline := time.Now().Add(10 * time.Second)
	if cs.Version == 2 {
		full := filepath.Join(unifiedMount, cs.Path)
		if _, err := os.Stat(full); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		mgr, err := cgroup2.Load(cs.Path, cgroup2.WithMountpoint(unifiedMount))
		if err != nil {
			return fmt.Errorf("remove cgroup %s: %w", cs.Path, err)
		}
		if err := mgr.Kill(); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove cgroup %s: kill: %w", cs.Path, err)
		}
		for {
			// The killed take a moment to exit: rmdir is refused
			// (EBUSY) until the cgroup is empty.
			err := rmdirAll(full, filepath.Join(full, workloadCgroup))
			if err == nil {
				return nil
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("remove cgroup %s: %w", cs.Path, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	cg, err := cgroup1.Load(v1Path(cs.Paths), cgroup1.WithHierarchy(v1Hierarchy(cs.Paths)))
	if errors.Is(err, cgroup1.ErrCgroupDeleted) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove cgroup %s: %w", cs.Paths["pids"], err)
	}
	var wdirs []string
	for c, p := range cs.v1Workload() {
		wdirs = append(wdirs, filepath.Join(unifiedMount, c, p))
	}
	for {
		err := rmdirAll(wdirs...)
		if err == nil {
			err = cg.Delete()
		}
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		// Processes left (the init's pid namespace is still going
		// down, or a crash): SIGKILL them by their host pids.
		for _, c := range v1Controllers {
			procs, perr := cg.Processes(c, true)
			if perr != nil {
				continue
			}
			for _, p := range procs {
				_ = unix.Kill(p.Pid, syscall.SIGKILL) // ESRCH: gone already; any other failure shows as the cgroup staying, which the loop reports at its deadline
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("remove cgroup %s: %w", cs.Paths["pids"], err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rmdirAll removes the cgroup directories given, the deepest first: the
// last named goes first. One that is gone already is not an error.
func rmdirAll(dirs ...string) error {
	for i := len(dirs) - 1; i >= 0; i-- {
		if dirs[i] == "" {
			continue
		}
		if err := unix.Rmdir(dirs[i]); err != nil && !errors.Is(err, unix.ENOENT) {
			return &os.PathError{Op: "rmdir", Path: dirs[i], Err: err}
		}
	}
	return nil
}

// workloadOOMScore is the oom_score_adj of the workloads of a sandbox
// with a memory cgroup: above the init's 0, so that the OOM killer, at
// the sandbox's limit, ends a workload (which the init reports) rather
// than the init (which would end the sandbox).
func workloadOOMScore(cs *cgroupState) int {
	if cs == nil || (cs.Version == 1 && cs.Paths["memory"] == "") {
		return 0
	}
	return 500
}
