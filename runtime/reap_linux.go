package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/beamhop/lightbox/internal/lockfile"
	"github.com/beamhop/lightbox/internal/reap"
	"github.com/beamhop/lightbox/internal/reexec"
	"github.com/beamhop/lightbox/internal/rmtree"
)

// smallTree is the most entries a sandbox's directory may hold for
// destroyDetached to remove it itself: past it, a reaper's start (a lean
// Go start, ~1 ms of CPU) costs less than the unlinking it takes off the
// caller's path.
const smallTree = 256

// destroyDetached is Destroy for a sandbox launched with
// Spec.DetachedTeardown whose main command has exited: the init is on its
// way out (its main command ended; we close the liveness pipe too). Under
// the global lock the directory is renamed aside, so the name is free at
// once; then we wait for the init to exit, so that what it held for the
// sandbox's life (volume and snapshot leases) is free when Destroy
// returns. A directory that holds little is removed here and now, with
// the cgroups; a larger one (a command that wrote many files) goes to a
// reaper process (internal/reap), started with our hold of the name lock,
// that removes it after we return. A crash of either leaves a .rm- entry
// with its state file: gc removes it, cgroups included, once no process
// holds its lock.
func (s *Sandbox) destroyDetached(ctx context.Context, held *lockfile.Lock) error {
	defer held.Close() // a reaper has its own copy
	s.mu.Lock()
	if s.live != nil {
		closeLive(s.live)
		s.live = nil
	}
	s.mu.Unlock()
	cg := s.cgroup() // the launcher knows it: no state to read
	g, err := s.m.globalLock(ctx)
	if err != nil {
		return fmt.Errorf("destroy sandbox %s: %w", s.name, err)
	}
	aside := filepath.Join(s.m.root, ".rm-"+s.name+"-"+randomHex(5))
	err = os.Rename(s.dir, aside)
	g.Close()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("destroy sandbox %s: %w", s.name, err)
	}
	if err == nil {
		// While the init goes: its socket's name, which nothing finds
		// any more (the init keeps its listener; gc needs only the lock
		// and the state file).
		_ = unix.Unlink(filepath.Join(aside, "init.sock")) // best effort: the removal below takes it otherwise
	}
	select {
	case <-s.initDone:
	case <-ctx.Done():
		return fmt.Errorf("destroy sandbox %s: %w", s.name, ctx.Err())
	}
	if err != nil {
		return nil // gone already (removed by another process)
	}
	// Not removed while the init exits (it said it is gone: heardGone):
	// the overlay holds most of the tree's directories until its
	// unmount, in the init's exit, which then pays for their eviction
	// (on this VM's ext4 a synchronous discard each) instead of us; the
	// caller measured no faster (bench/NOTES.md, 2026-12-01 exitpath).
	spec := reap.Spec{Dir: aside, Mapping: s.m.mapping, Last: []string{"state.json", "lock"}}
	if cg != nil {
		spec.Cgroups, spec.Parents = cg.reapDirs()
	}
	err = reap.RemoveSmall(ctx, spec, smallTree)
	if !errors.Is(err, rmtree.ErrTooLarge) {
		if err != nil {
			return fmt.Errorf("destroy sandbox %s: %w", s.name, err)
		}
		return nil
	}
	// The cgroups are gone; the reaper finishes the tree.
	spec.Cgroups, spec.Parents = nil, nil
	if err := s.m.startReaper(spec, held.File()); err != nil {
		// Do it here then: the caller waits, nothing is left behind.
		s.m.log.Warn("start the sandbox's reaper; removing it in this process", "sandbox", s.name, "err", err)
		if err := reap.Remove(ctx, spec); err != nil {
			return fmt.Errorf("destroy sandbox %s: %w", s.name, err)
		}
	}
	return nil
}

// gonePipe is the read end of an init's gone pipe (nsinit.FDs.Gone),
// read at most once: by a Destroy (heardGone), which then owns and closes
// it, or closed unread once the init is reaped or the handle detached.
// Never closed under a reader: the init's word, written before its exit,
// stays readable after its reap.
type gonePipe struct {
	mu sync.Mutex
	f  *os.File
}

// take hands the file to its one reader; nil once taken or released.
func (g *gonePipe) take() *os.File {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.f
	g.f = nil
	return f
}

// release closes the file unless a reader took it.
func (g *gonePipe) release() {
	if f := g.take(); f != nil {
		_ = f.Close() // read-only, never read: nothing to report
	}
}

// heardGone starts reading the init's gone pipe: the channel yields true
// once the init said that no other process of the sandbox is left and
// that its leases are closed (its own exit may still be under way: the
// kernel's teardown of its memory and namespaces), false at EOF (it
// exited without saying so: a crash, or processes the init could not
// end in time). Once the init is reaped the read ends at once: its word
// or EOF, as no other process holds the write end. Nil without a pipe (a
// handle that did not launch the sandbox, or detached it).
func (s *Sandbox) heardGone() <-chan bool {
	f := s.goneP.take()
	if f == nil {
		return nil
	}
	said := make(chan bool, 1)
	go func() {
		defer func() { _ = f.Close() }() // read-only: read to its word or its end
		var b [1]byte
		n, _ := f.Read(b[:]) // EOF: not said
		said <- n == 1 && b[0] == 'G'
	}()
	return said
}

// startReaper starts a detached reaper (its own session, no stdio, not
// waited for) from this binary: the "reap" role (runtime.Roles). Not
// from the lean init, which would grow by the remover for every
// sandbox's idle PID 1, where a reaper runs only for large trees.
func (m *Manager) startReaper(spec reap.Spec, lock *os.File) error {
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	cmd := exec.Command("/proc/self/exe", string(b))
	cmd.Args[0] = "lightbox-" + reap.Role
	cmd.Env = []string{reexec.EnvRole + "=" + reap.Role, "GOMAXPROCS=1", "GOGC=off"}
	cmd.ExtraFiles = []*os.File{lock}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start reaper: %w", err)
	}
	// Not waited for: it outlives us. Reap it if we are still here when it
	// exits, so that it does not linger as a zombie.
	go func() { _ = cmd.Wait() }() // its status says nothing we act on: gc covers a failure
	return nil
}

// reapDirs lists the cgroup directories a reaper removes, each child
// before its parent, and the shared parents to remove when empty.
func (cs *cgroupState) reapDirs() (dirs, parents []string) {
	if cs.Version == 2 {
		full := filepath.Join(unifiedMount, cs.Path)
		return []string{filepath.Join(full, workloadCgroup), full}, []string{filepath.Dir(full)}
	}
	w := cs.v1Workload()
	for _, c := range v1Controllers {
		p, ok := cs.Paths[string(c)]
		if !ok {
			continue
		}
		full := filepath.Join(unifiedMount, string(c), p)
		if wp, ok := w[string(c)]; ok {
			dirs = append(dirs, filepath.Join(unifiedMount, string(c), wp))
		}
		dirs = append(dirs, full)
		parents = append(parents, filepath.Dir(full))
	}
	return dirs, parents
}

// openTasks opens the tasks file of each of the (v1) cgroup's
// hierarchies, through which a thread moves itself (startInCgroupsV1),
// and names their controllers.
func (cs *cgroupState) openTasks() ([]*os.File, []string, error) {
	var out []*os.File
	var ctrls []string
	for _, c := range v1Controllers {
		p, ok := cs.Paths[string(c)]
		if !ok {
			continue
		}
		full := filepath.Join(unifiedMount, string(c), p, "tasks")
		f, err := os.OpenFile(full, os.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			closeFiles(out)
			return nil, nil, err
		}
		out, ctrls = append(out, f), append(ctrls, string(c))
	}
	return out, ctrls, nil
}
