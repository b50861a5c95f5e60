package lightbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/beamhop/lightbox/internal/environ"
	"github.com/beamhop/lightbox/internal/names"
	"github.com/beamhop/lightbox/internal/netstack"
	"github.com/beamhop/lightbox/internal/sys"
	"github.com/beamhop/lightbox/runtime"
	"github.com/beamhop/lightbox/snapshot"
	"github.com/beamhop/lightbox/volstore"
)

// closer collects what a launch holds until the sandbox's init has its own
// copies (leases), or until a failed launch gives it back. close has a
// pointer receiver: `defer held.close()` must see what was added after the
// defer statement (with a value receiver it saw the empty list, and every
// lease a launch took stayed open in the launching process until it exited).
type closer []func() error

func (c *closer) add(f func() error) { *c = append(*c, f) }

// close runs the closers, newest first, and returns what failed: a disk
// a failed launch could not remove (left for volstore.Disks.GC, which
// sees it unlocked), or a lease descriptor whose close reported an error
// (it is freed all the same).
func (c *closer) close() error {
	var errs []error
	for i := len(*c) - 1; i >= 0; i-- {
		if err := (*c)[i](); err != nil {
			errs = append(errs, err)
		}
	}
	*c = nil
	return errors.Join(errs...)
}

// connectsMain says whether opts connect a main command's stdio or
// terminal, which needs a main command.
func (opts *SandboxOptions) connectsMain() bool {
	return opts.Stdin != nil || opts.Stdout != nil || opts.Stderr != nil || opts.Tty
}

// spec shapes opts into the runtime's spec, as far as it goes before the
// snapshot and the volumes are resolved, and validates it with the
// runtime's rules (runtime.Spec.Validate: the one place they live): it
// touches nothing on disk. What is left to check here is what only the
// options have: which snapshot, a mount's source or volume, the disk cap.
func (opts *SandboxOptions) spec() (runtime.Spec, error) {
	if opts.Snapshot == "" {
		return runtime.Spec{}, errors.New("sandbox options: no snapshot")
	}
	if err := names.Check("snapshot", opts.Snapshot); err != nil {
		return runtime.Spec{}, err
	}
	if opts.DiskMiB < 0 {
		return runtime.Spec{}, errors.New("sandbox options: negative DiskMiB")
	}
	if opts.StopSignal < 0 || opts.StopSignal > 64 {
		return runtime.Spec{}, fmt.Errorf("sandbox options: stop signal %d: out of range 1–64", int(opts.StopSignal))
	}
	limits, err := opts.Resources.limits()
	if err != nil {
		return runtime.Spec{}, err
	}
	spec := runtime.Spec{
		Name:     opts.Name,
		Hostname: opts.Name,
		Env:      opts.Env,
		Workdir:  opts.Workdir,
		User:     opts.User,
		Command:  opts.Command,
		Stdin:    opts.Stdin,
		Stdout:   opts.Stdout,
		Stderr:   opts.Stderr,
		Tty:      opts.Tty,
		TtySize:  opts.TtySize,
		Network:  string(cmp.Or(opts.Network, defaultNetwork)),
		Timeout:  opts.Timeout,
		Limits:   limits,

		StopSignal: opts.StopSignal,

		AllowUserNamespaces: opts.AllowUserNamespaces,
		DetachedTeardown:    opts.DetachedTeardown,
	}
	if base, helper, ok := strings.Cut(spec.Network, ":"); ok && base == runtime.NetworkPrivate {
		if helper != netstack.Pasta && helper != netstack.Slirp4netns {
			return runtime.Spec{}, fmt.Errorf("sandbox options: network %q: the private network's stack is pasta or slirp4netns", opts.Network)
		}
		spec.Network, spec.NetworkHelper = base, helper
	}
	for _, p := range opts.Ports {
		port, err := netstack.ParsePort(p)
		if err != nil {
			return runtime.Spec{}, fmt.Errorf("sandbox options: %w", err)
		}
		spec.Ports = append(spec.Ports, port)
	}
	if err := netstack.ValidatePorts(spec.Ports); err != nil {
		return runtime.Spec{}, fmt.Errorf("sandbox options: %w", err)
	}
	if len(opts.Command) == 0 && !opts.UseImageCommand && opts.connectsMain() {
		return runtime.Spec{}, errors.New("sandbox options: Stdin, Stdout, Stderr and Tty connect the main Command, and there is none")
	}
	switch opts.CACerts {
	case "", CACertsHost:
	default:
		return runtime.Spec{}, fmt.Errorf("sandbox options: ca-certs %q: want host or nothing", opts.CACerts)
	}
	targets := slices.Sorted(maps.Keys(opts.Mounts)) // parents before children
	for _, target := range targets {
		m := opts.Mounts[target]
		ms := runtime.MountSpec{Target: target, ReadOnly: m.ReadOnly, Volume: m.Volume, Overlay: m.Overlay}
		if m.NoCopy && m.Volume == "" {
			return runtime.Spec{}, fmt.Errorf("mount %s: nocopy is for a volume, and %s is a host path", target, m.Source)
		}
		switch {
		case m.Source != "" && m.Volume != "":
			return runtime.Spec{}, fmt.Errorf("mount %s: both a source (%s) and a volume (%s); give one", target, m.Source, m.Volume)
		case m.Source == "" && m.Volume == "":
			return runtime.Spec{}, fmt.Errorf("mount %s: neither a source nor a volume", target)
		case m.Source != "":
			src, err := filepath.Abs(m.Source)
			if err != nil {
				return runtime.Spec{}, fmt.Errorf("mount %s: %w", target, err)
			}
			ms.Source = src
		}
		spec.Mounts = append(spec.Mounts, ms)
	}
	if err := spec.Validate(); err != nil {
		return runtime.Spec{}, fmt.Errorf("sandbox options: %w", err)
	}
	return spec, nil
}

// validate checks opts before anything touches the disk (see spec).
func (opts *SandboxOptions) validate() error {
	_, err := opts.spec()
	return err
}

// launch composes a sandbox: it resolves the snapshot to its layer
// directories and volumes to their data directories (taking leases the
// sandbox's init holds for its life) and hands the runtime a plain spec.
func (r *Runtime) launch(ctx context.Context, opts SandboxOptions) (*Sandbox, error) {
	// Options that cannot launch are refused before the pool is tried:
	// a take would apply them to a warm sandbox, fail, and throw the
	// sandbox away.
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if sb := r.pool.take(ctx, r, opts); sb != nil {
		return sb, nil
	}
	return r.launchCold(ctx, opts, false)
}

// launchCold is launch without the warm pool; takeable launches a
// sandbox for it (runtime.Spec.Takeable).
func (r *Runtime) launchCold(ctx context.Context, opts SandboxOptions, takeable bool) (*Sandbox, error) {
	return r.launchFrom(ctx, opts, takeable, func() (*snapshot.Lease, *snapshot.Snapshot, error) {
		return r.snaps.Lease(ctx, opts.Snapshot)
	})
}

// launchFrom is launchCold with the snapshot resolved by resolve (a build
// step launches from an image of its cache, leased by its manifest digest).
func (r *Runtime) launchFrom(ctx context.Context, opts SandboxOptions, takeable bool, resolve func() (*snapshot.Lease, *snapshot.Snapshot, error)) (_ *Sandbox, err error) {
	if err := checkInit(); err != nil {
		return nil, err
	}
	if r.closed.Load() {
		// Before a volume is made or a lease taken; the runtime's
		// Manager refuses too (a launch racing Close).
		return nil, fmt.Errorf("launch sandbox: %w", ErrClosed)
	}
	spec, err := opts.spec()
	if err != nil {
		return nil, err
	}
	var held closer
	defer func() {
		cerr := held.close()
		switch {
		case cerr == nil:
		case err != nil:
			err = fmt.Errorf("%w (and its clean-up: %w)", err, cerr)
		default:
			// The sandbox runs with its own copies: a close that
			// reported an error freed the descriptor all the same.
			r.log.Warn("launch: release what the launch held", "err", cerr)
		}
	}()
	launched := false

	lease, snap, err := resolve()
	if err != nil {
		return nil, err
	}
	if lease != nil {
		held.add(lease.Close)
		spec.Leases = append(spec.Leases, lease.File())
	}
	spec.Snapshot = snap.Name
	spec.Layers = snap.Layers
	spec.Takeable = takeable
	spec.Env = environ.Merge(snap.Config.Env, opts.Env)
	spec.Workdir = cmp.Or(opts.Workdir, snap.Config.WorkingDir, "/")
	spec.User = cmp.Or(opts.User, snap.Config.User)
	spec.Command = opts.mainCommand(snap.Config.Entrypoint, snap.Config.Cmd)
	if spec.StopSignal == 0 && snap.Config.StopSignal != "" {
		sig, err := sys.ParseSignal(snap.Config.StopSignal)
		if err != nil {
			// As docker refuses to create a container from it; a build
			// here refuses to write one.
			return nil, fmt.Errorf("snapshot %s: STOPSIGNAL: %w", snap.Name, err)
		}
		spec.StopSignal = sig
	}
	if len(spec.Command) == 0 && opts.connectsMain() {
		return nil, fmt.Errorf("sandbox options: Stdin, Stdout, Stderr and Tty connect the main Command, and snapshot %s names none (no Entrypoint or Cmd)", snap.Name)
	}
	if opts.CACerts == CACertsHost {
		ca, err := caCertMounts(r.snaps, snap.Layers, opts.Mounts)
		if err != nil {
			return nil, err
		}
		if len(ca) == 0 {
			return nil, fmt.Errorf("ca-certs host: snapshot %s has no CA bundle at %s: install its distribution's ca-certificates first",
				snap.Name, strings.Join(caBundlePaths, ", "))
		}
		for _, t := range slices.Sorted(maps.Keys(ca)) {
			spec.Mounts = append(spec.Mounts, runtime.MountSpec{Target: t, Source: ca[t].Source, ReadOnly: true})
		}
		// Parents before children, as spec sorted the user's mounts.
		slices.SortStableFunc(spec.Mounts, func(a, b runtime.MountSpec) int {
			return strings.Compare(path.Clean(a.Target), path.Clean(b.Target))
		})
	}
	fills, err := r.acquireVolumes(ctx, snap.Layers, opts.Mounts, &spec, &held)
	if err != nil {
		return nil, err
	}
	if len(fills) > 0 {
		// Each Fill is Done when the init says it filled the mount, else
		// given back unused (held): the volume stays unfilled.
		spec.Filled = func(targets []string) {
			for _, t := range targets {
				if f := fills[t]; f != nil {
					if err := f.Done(context.WithoutCancel(ctx)); err != nil {
						// The copy stands; a later launch sees the volume
						// not empty and leaves it as it is.
						r.log.Warn("launch: record that a volume was filled", "target", t, "err", err)
					}
				}
			}
		}
	}
	if opts.DiskMiB > 0 {
		disk, err := r.disks.Create(ctx, cmp.Or(opts.Name, "sandbox"), opts.DiskMiB)
		if err != nil {
			return nil, err
		}
		// One closer, so that a failed launch removes the disk while it
		// still holds its lock (gc never sees it half gone), and a
		// launched sandbox's state names it before the lock goes.
		held.add(func() error {
			defer func() { _ = disk.Unlock() }() // nothing was written through the lock file; close frees the descriptor and its flock even when it reports an error
			if launched {
				return nil // the disk now belongs to the sandbox
			}
			return r.disks.Remove(context.WithoutCancel(ctx), disk.Dir)
		})
		spec.WritableDir = disk.Dir
	}
	rs, err := r.mgr.Launch(ctx, spec)
	if err != nil {
		return nil, err
	}
	launched = true
	r.log.Debug("sandbox launched", "sandbox", rs.Name(), "snapshot", snap.Name)
	return &Sandbox{name: rs.Name(), r: r, rs: rs, layers: snap.Layers}, nil
}

// acquireVolumes creates (on first use) and leases the volumes of spec's
// mounts, sets their sources to the volumes' data directories and adds
// the leases to spec (and their closing to held). A volume made here is
// owned as the target's directory in the snapshot's layers is.
//
// A volume never filled, mounted (without mounts' NoCopy) over a
// directory of the snapshot, gets its mount's Fill set: fills
// holds, by target, the volstore.Fill that makes this launch the one
// that fills it (given back by held when the launch ends without
// calling its Done).
//
// Volumes are acquired in the order of their names: a launch may wait
// for another's Fill while it holds Fills, and one order for all
// launches means no two wait for each other.
func (r *Runtime) acquireVolumes(ctx context.Context, layers []string, mounts map[string]Mount, spec *runtime.Spec, held *closer) (fills map[string]*volstore.Fill, _ error) {
	var order []int
	for i := range spec.Mounts {
		if spec.Mounts[i].Volume != "" {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int { return strings.Compare(spec.Mounts[a].Volume, spec.Mounts[b].Volume) })
	var filling map[string]bool // volumes this launch may fill already
	for _, i := range order {
		ms := &spec.Mounts[i]
		co := volstore.CreateOptions{UID: -1, GID: -1}
		o, err := r.snaps.Owner(ctx, layers, path.Clean(ms.Target))
		if err != nil {
			return nil, fmt.Errorf("mount %s: %w", ms.Target, err)
		}
		if o != nil {
			co.UID, co.GID, co.Mode = o.UID, o.GID, o.Mode|os.ModeDir
		}
		var (
			vl   *volstore.Lease
			v    *volstore.Volume
			fill *volstore.Fill
		)
		if o != nil && mayFill(ms.Target, mounts) && !filling[ms.Volume] {
			// Once per launch: its own Fill lock would stop a second.
			if filling == nil {
				filling = map[string]bool{}
			}
			filling[ms.Volume] = true
			vl, v, fill, err = r.vols.AcquireToFill(ctx, ms.Volume, co)
		} else {
			vl, v, err = r.vols.Acquire(ctx, ms.Volume, co)
		}
		if err != nil {
			return nil, fmt.Errorf("mount %s: %w", ms.Target, err)
		}
		held.add(vl.Close)
		if fill != nil {
			held.add(fill.Close)
			if fills == nil {
				fills = map[string]*volstore.Fill{}
			}
			fills[path.Clean(ms.Target)] = fill
			ms.Fill, ms.FillLock, ms.FillRecord = true, fill.File(), fill.Record()
		}
		spec.Leases = append(spec.Leases, vl.File())
		spec.Volumes = append(spec.Volumes, ms.Volume)
		ms.Source = v.DataDir
	}
	return fills, nil
}

// mayFill says whether the volume mount at target (of spec's mounts,
// from mounts) may fill its volume: without NoCopy. A read-only mount
// fills it too, as docker's and podman's do (the copy is the init's,
// before it makes the mount read-only).
func mayFill(target string, mounts map[string]Mount) bool {
	m, ok := mounts[target]
	return ok && !m.NoCopy
}

// defaultNetwork is what an empty SandboxOptions.Network means.
const defaultNetwork = NetworkPrivate

// attachNetwork is the runtime's hook for NetworkPrivate: a user-mode
// stack (pasta) attached to the sandbox's namespaces from outside.
func (r *Runtime) attachNetwork(ctx context.Context, pid int, ports []runtime.Port, helper string, exit *os.File) (runtime.NetworkAttachment, error) {
	st, err := netstack.Attach(ctx, pid, netstack.Options{Ports: ports, Logger: r.log, Helper: helper, Exit: exit})
	if err != nil {
		return nil, err
	}
	return st, nil
}
