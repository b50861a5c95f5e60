package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/names"
	"github.com/beamhop/lightbox/nsinit"
	"golang.org/x/sys/unix"
)

// CanTakeMounts reports whether Take can give a running sandbox bind
// mounts: as real root the runtime makes them on the host side; rootless,
// only the init could, and only before it left the host's tree.
func CanTakeMounts() bool { return hostPrepares() }

// Take applies t to a sandbox this Manager launched with no name, no
// mounts and no command, before any command ran in it. On error the
// sandbox is in an unknown state: destroy it.
func (s *Sandbox) Take(ctx context.Context, t TakeSpec) error {
	if err := s.take(ctx, t); err != nil {
		return fmt.Errorf("take sandbox %s: %w", s.name, err)
	}
	return nil
}

func (s *Sandbox) take(ctx context.Context, t TakeSpec) error {
	sp := Spec{Name: t.Name, Hostname: t.Hostname, Mounts: t.Mounts, Workdir: t.Workdir, Layers: []string{"/"}}
	if err := sp.Validate(); err != nil {
		return err
	}
	sp.normalize()
	for _, m := range sp.Mounts {
		if m.Source == "" {
			return fmt.Errorf("mount %s: volume %s: no source path", m.Target, m.Volume)
		}
		if _, err := os.Stat(m.Source); err != nil {
			return fmt.Errorf("mount %s: source: %w", m.Target, err)
		}
	}
	if len(sp.Mounts) > 0 && !CanTakeMounts() {
		return fmt.Errorf("bind mounts into a running sandbox need real root: %w", errors.ErrUnsupported)
	}
	tk := &nsinit.Take{Env: t.Env, Workdir: sp.Workdir, User: t.User, Hostname: sp.Hostname}
	if t.Name != "" && tk.Hostname == "" {
		tk.Hostname = t.Name
	}
	h := &hostSide{}
	defer h.close()
	if len(sp.Mounts) > 0 {
		cfg := &nsinit.Config{}
		for _, m := range sp.Mounts {
			cfg.Mounts = append(cfg.Mounts, nsinit.Mount{Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
		}
		if err := s.m.prepareBinds(cfg, sp.Mounts, h); err != nil {
			return err
		}
		tk.Mounts = cfg.Mounts
	}
	fds := h.fds()
	for _, l := range t.Leases {
		fds = append(fds, int(l.Fd()))
	}
	tk.Leases = len(t.Leases)
	if len(fds) > nsinit.MaxFDsPerMessage {
		return fmt.Errorf("%d mounts and volumes: at most %d", len(fds), nsinit.MaxFDsPerMessage)
	}
	if t.Name != "" && t.Name != s.name {
		if err := s.rename(ctx, t.Name); err != nil {
			return err
		}
	}
	if tk.Hostname != "" {
		st, err := readState(s.dir)
		if err != nil {
			return err
		}
		// /etc/hostname and /etc/hosts; resolv.conf stays.
		tk.Etc = etcFiles(tk.Hostname, st.Network)[:2]
	}
	if _, err := s.callFDs(ctx, nsinit.Request{Op: nsinit.OpTake, Take: tk}, fds); err != nil {
		return err
	}
	if len(t.Volumes) > 0 {
		st, err := readState(s.dir)
		if err != nil {
			return err
		}
		st.Volumes = append(st.Volumes, t.Volumes...)
		if err := writeState(s.dir, st); err != nil {
			return err
		}
	}
	return nil
}

// rename gives the sandbox a new name: its directory moves (the init's
// socket, lock and files move with it) unless the name is taken.
func (s *Sandbox) rename(ctx context.Context, name string) error {
	if err := names.Check("sandbox", name); err != nil {
		return err
	}
	g, err := s.m.globalLock(ctx)
	if err != nil {
		return err
	}
	defer g.Close()
	dir := s.m.dir(name)
	if err := unix.Renameat2(unix.AT_FDCWD, s.dir, unix.AT_FDCWD, dir, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("sandbox %s: %w", name, errdefs.ErrExists)
		}
		return &os.LinkError{Op: "rename", Old: s.dir, New: dir, Err: err}
	}
	st, err := readState(dir)
	if err == nil {
		st.Name = name
		err = writeState(dir, st)
	}
	s.mu.Lock()
	s.name, s.dir = name, dir
	s.mu.Unlock()
	return err
}
