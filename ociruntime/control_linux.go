package ociruntime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Run creates and starts the container; unless detach it waits for the
// process, deletes the container and returns the exit status.
func (r *Runtime) Run(ctx context.Context, id, bundle string, o CreateOptions, detach bool) (int, error) {
	proc, err := r.Create(ctx, id, bundle, o)
	if err != nil {
		return -1, err
	}
	if err := r.Start(ctx, id); err != nil {
		if derr := r.Delete(context.WithoutCancel(ctx), id, true); derr != nil {
			return -1, fmt.Errorf("%w (and delete: %w)", err, derr)
		}
		return -1, err
	}
	if detach {
		_ = proc.Release() // frees the handle only: nothing to report
		return 0, nil
	}
	st, err := proc.Wait()
	code := -1
	if err == nil {
		ws := st.Sys().(syscall.WaitStatus)
		code = ws.ExitStatus()
		if ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	}
	if derr := r.Delete(context.WithoutCancel(ctx), id, true); derr != nil && err == nil {
		err = derr
	}
	return code, err
}

func (r *Runtime) load(id string) (string, *record, error) {
	dir, err := r.dir(id)
	if err != nil {
		return "", nil, err
	}
	rec, err := readRecord(dir)
	return dir, rec, err
}

// Pids are the host pids of the container's processes.
func (r *Runtime) Pids(id string) ([]int, error) {
	_, rec, err := r.load(id)
	if err != nil {
		return nil, err
	}
	return r.pids(rec)
}

var errNoCgroup = errors.New("the container has no cgroup (cgroups cannot be made here)")

func (r *Runtime) cgroupOf(id string, want ...string) (cgroupControl, error) {
	dir, rec, err := r.load(id)
	if err != nil {
		return nil, err
	}
	if len(want) > 0 {
		s := r.status(dir, rec)
		ok := false
		for _, w := range want {
			ok = ok || s == w
		}
		if !ok {
			return nil, fmt.Errorf("container %s is %s", id, s)
		}
	}
	c, err := loadCgroup(rec.Cgroup)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, fmt.Errorf("container %s: %w", id, errNoCgroup)
	}
	return c, nil
}

// Pause freezes every process of the container (cgroup freezer).
func (r *Runtime) Pause(id string) error {
	c, err := r.cgroupOf(id, Running, Created)
	if err != nil {
		return err
	}
	return c.freeze()
}

// Resume thaws a paused container.
func (r *Runtime) Resume(id string) error {
	c, err := r.cgroupOf(id, Paused)
	if err != nil {
		return err
	}
	return c.thaw()
}

// Update applies res to the container's cgroup.
func (r *Runtime) Update(id string, res *specs.LinuxResources) error {
	c, err := r.cgroupOf(id, Running, Created, Paused)
	if err != nil {
		return err
	}
	return c.update(res)
}

// Event is one line of events' output.
type Event struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Data any    `json:"data,omitempty"`
}

// Stats is the container's cgroup counters (containerd's metrics types).
func (r *Runtime) Stats(id string) (*Event, error) {
	c, err := r.cgroupOf(id)
	if err != nil {
		return nil, err
	}
	s, err := c.stats()
	if err != nil {
		return nil, err
	}
	return &Event{Type: "stats", ID: id, Data: s}, nil
}

// Events calls emit with the stats every interval until the container
// stops or ctx ends.
func (r *Runtime) Events(ctx context.Context, id string, interval time.Duration, emit func(*Event) error) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		st, err := r.State(id)
		if err != nil {
			return err
		}
		if st.Status == Stopped {
			return nil
		}
		ev, err := r.Stats(id)
		if err != nil {
			return err
		}
		if err := emit(ev); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// WriteSpec writes an example config.json into bundle, refusing to
// overwrite one.
func WriteSpec(bundle string, rootless bool) error {
	p := bundle + "/config.json"
	if _, err := os.Stat(p); err == nil {
		return fmt.Errorf("%s: file exists; remove it first", p)
	}
	b := exampleSpec(rootless)
	return os.WriteFile(p, b, 0o644)
}
