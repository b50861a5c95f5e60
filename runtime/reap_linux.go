package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/beamhop/lightbox/internal/initbin"
	"github.com/beamhop/lightbox/internal/lockfile"
	"github.com/beamhop/lightbox/internal/reap"
	"github.com/beamhop/lightbox/internal/reexec"
	"github.com/containerd/cgroups/v3/cgroup1"
	"golang.org/x/sys/unix"
)

// destroyDetached is Destroy for a sandbox launched with
// Spec.DetachedTeardown whose main command has exited: the init is on its
// way out (its main command ended; we close the liveness pipe too). Under
// the global lock the directory is renamed aside, so the name is free at
// once; a reaper process (internal/reap) started with our hold of the
// name lock then waits for the init to exit and removes the cgroups and
// the directory. We return once the init has exited, not after the
// removal: what the init held for the sandbox's life (volume and
// snapshot leases) is free when Destroy returns, as without the reaper.
// A crash of either leaves a .rm- entry with its state file: gc removes
// it, cgroups included, once no process holds its lock.
func (s *Sandbox) destroyDetached(ctx context.Context, held *lockfile.Lock) error {
	defer held.Close() // the reaper has its own copy
	s.mu.Lock()
	if s.live != nil {
		closeLive(s.live)
		s.live = nil
	}
	s.mu.Unlock()
	// A pidfd, unless the init is reaped already (then its pid may name
	// another process: checked after the open, so the pidfd names the
	// init or nothing).
	var pidfd *os.File
	if fd, err := unix.PidfdOpen(s.pid, 0); err == nil {
		pidfd = os.NewFile(uintptr(fd), "pidfd")
		defer func() { _ = pidfd.Close() }() // a pidfd: nothing to flush
	}
	if s.initDone != nil {
		select {
		case <-s.initDone:
			_ = pidfd.Close() // reaped: nothing to wait for
			pidfd = nil
		default:
		}
	}
	g, err := s.m.globalLock(ctx)
	if err != nil {
		return fmt.Errorf("destroy sandbox %s: %w", s.name, err)
	}
	aside := filepath.Join(s.m.root, ".rm-"+s.name+"-"+randomHex(5))
	err = os.Rename(s.dir, aside)
	g.Close()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("destroy sandbox %s: %w", s.name, err)
	}
	spec := reap.Spec{Dir: aside, Mapping: s.m.mapping, Pidfd: pidfd != nil}
	if st, err := readState(aside); err == nil && st.Cgroup != nil {
		spec.Cgroups, spec.Parents = st.Cgroup.reapDirs()
	}
	if err := s.m.startReaper(spec, held.File(), pidfd); err != nil {
		// Do it here then: the caller waits, nothing is left behind.
		s.m.log.Warn("start the sandbox's reaper; removing it in this process", "sandbox", s.name, "err", err)
		if pidfd != nil {
			waitPidfd(ctx, pidfd, time.Time{})
		}
		held.Close()
		if err := s.m.removeDir(ctx, aside); err != nil {
			return fmt.Errorf("destroy sandbox %s: %w", s.name, err)
		}
	}
	if s.initDone != nil {
		select {
		case <-s.initDone:
		case <-ctx.Done():
			return fmt.Errorf("destroy sandbox %s: %w", s.name, ctx.Err())
		}
	}
	return nil
}

// startReaper starts a detached reaper (its own session, no stdio, not
// waited for) from the lean init program when there is one (a lean Go
// start), else from this binary.
func (m *Manager) startReaper(spec reap.Spec, lock, pidfd *os.File) error {
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	exe := "/proc/self/exe"
	if p, err := initbin.Install(m.root); err == nil {
		exe = p
	}
	cmd := exec.Command(exe, string(b))
	cmd.Args[0] = "lightbox-" + reap.Role
	cmd.Env = []string{reexec.EnvRole + "=" + reap.Role, "GOMAXPROCS=1", "GOGC=off"}
	cmd.ExtraFiles = []*os.File{lock}
	if pidfd != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, pidfd)
	}
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
	for _, c := range v1Controllers {
		p, ok := cs.Paths[string(c)]
		if !ok {
			continue
		}
		full := filepath.Join(unifiedMount, string(c), p)
		if c == cgroup1.Pids {
			dirs = append(dirs, filepath.Join(full, workloadCgroup))
		}
		dirs = append(dirs, full)
		parents = append(parents, filepath.Dir(full))
	}
	return dirs, parents
}
