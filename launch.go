package lightbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/beamhop/lightbox/internal/lockfile"
	"github.com/beamhop/lightbox/internal/names"
	"github.com/beamhop/lightbox/internal/netstack"
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
func (c *closer) close() {
	for i := len(*c) - 1; i >= 0; i-- {
		// Closing a lease descriptor cannot lose data; a disk a failed
		// launch could not remove is left for gc (gcDisks).
		_ = (*c)[i]()
	}
	*c = nil
}

// validate checks opts before anything touches the disk.
func (opts *SandboxOptions) validate() error {
	if opts.Snapshot == "" {
		return errors.New("sandbox options: no snapshot")
	}
	if err := names.Check("snapshot", opts.Snapshot); err != nil {
		return err
	}
	if opts.Name != "" {
		if err := names.Check("sandbox", opts.Name); err != nil {
			return err
		}
	}
	switch opts.Network {
	case "", NetworkPrivate, NetworkNone, NetworkHost:
	default:
		return fmt.Errorf("sandbox options: network %q: want private, none or host", opts.Network)
	}
	if len(opts.Ports) > 0 && opts.Network != NetworkPrivate && opts.Network != "" {
		return fmt.Errorf("sandbox options: ports are published only with the private network, not %q", opts.Network)
	}
	for _, p := range opts.Ports {
		if _, err := netstack.ParsePort(p); err != nil {
			return fmt.Errorf("sandbox options: %w", err)
		}
	}
	if opts.Workdir != "" && !path.IsAbs(opts.Workdir) {
		return fmt.Errorf("sandbox options: workdir %q is not absolute", opts.Workdir)
	}
	for _, e := range opts.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("sandbox options: env %q: want KEY=value", e)
		}
	}
	if len(opts.Command) == 0 && (opts.Stdin != nil || opts.Stdout != nil || opts.Stderr != nil || opts.Tty) {
		return errors.New("sandbox options: Stdin, Stdout, Stderr and Tty connect the main Command, and there is none")
	}
	switch opts.CACerts {
	case "", CACertsHost:
	default:
		return fmt.Errorf("sandbox options: ca-certs %q: want host or nothing", opts.CACerts)
	}
	if opts.DiskMiB < 0 || opts.Timeout < 0 {
		return errors.New("sandbox options: negative DiskMiB or Timeout")
	}
	for target, m := range opts.Mounts {
		if !path.IsAbs(target) {
			return fmt.Errorf("mount %q: target is not an absolute path", target)
		}
		if slices.Contains(strings.Split(target, "/"), "..") {
			return fmt.Errorf("mount %q: target contains \"..\"", target)
		}
		if path.Clean(target) == "/" {
			return fmt.Errorf("mount %q: cannot mount over the root", target)
		}
		switch {
		case m.Source != "" && m.Volume != "":
			return fmt.Errorf("mount %s: both a source (%s) and a volume (%s); give one", target, m.Source, m.Volume)
		case m.Source == "" && m.Volume == "":
			return fmt.Errorf("mount %s: neither a source nor a volume", target)
		case m.Volume != "":
			if err := names.Check("volume", m.Volume); err != nil {
				return fmt.Errorf("mount %s: %w", target, err)
			}
		}
		if m.Overlay && m.Volume != "" {
			return fmt.Errorf("mount %s: copy-on-write (overlay) is for host paths, not volume %s", target, m.Volume)
		}
		if m.Overlay && m.ReadOnly {
			return fmt.Errorf("mount %s: copy-on-write (overlay) and read-only: choose one", target)
		}
	}
	return nil
}

// launch composes a sandbox: it resolves the snapshot to its layer
// directories and volumes to their data directories (taking leases the
// sandbox's init holds for its life) and hands the runtime a plain spec.
func (r *Runtime) launch(ctx context.Context, opts SandboxOptions) (*Sandbox, error) {
	return r.launchFrom(ctx, opts, func() (*snapshot.Lease, *snapshot.Snapshot, error) {
		return r.snaps.Lease(ctx, opts.Snapshot)
	})
}

// launchFrom is launch with the snapshot resolved by resolve (a build
// step launches from an unnamed image of its cache, with no lease).
func (r *Runtime) launchFrom(ctx context.Context, opts SandboxOptions, resolve func() (*snapshot.Lease, *snapshot.Snapshot, error)) (*Sandbox, error) {
	if err := checkInit(); err != nil {
		return nil, err
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	limits, err := opts.Resources.limits()
	if err != nil {
		return nil, err
	}
	network := opts.Network
	if network == "" {
		network = defaultNetwork
	}
	if len(opts.Command) == 0 {
		opts.Command = nil // an empty command is no command: the sandbox idles
	}
	name := opts.Name
	if name == "" {
		name = generateName()
	}
	var held closer
	defer held.close()
	launched := false

	lease, snap, err := resolve()
	if err != nil {
		return nil, err
	}
	var leases []*os.File
	if lease != nil {
		held.add(lease.Close)
		leases = append(leases, lease.File())
	}
	spec := runtime.Spec{
		Name:     name,
		Hostname: name,
		Snapshot: snap.Name,
		Layers:   snap.Layers,
		Env:      mergeEnv(snap.Config.Env, opts.Env),
		Workdir:  firstNonEmpty(opts.Workdir, snap.Config.WorkingDir, "/"),
		User:     firstNonEmpty(opts.User, snap.Config.User),
		Command:  opts.Command,
		Stdin:    opts.Stdin,
		Stdout:   opts.Stdout,
		Stderr:   opts.Stderr,
		Tty:      opts.Tty,
		Rows:     opts.TtySize[0],
		Cols:     opts.TtySize[1],
		Network:  string(network),
		Timeout:  opts.Timeout,
		Leases:   leases,
		Limits:   limits,

		AllowUserNamespaces: opts.AllowUserNamespaces,
	}
	if opts.CACerts == CACertsHost {
		ca, err := caCertMounts(snap.Layers, opts.Mounts)
		if err != nil {
			return nil, err
		}
		if len(ca) == 0 {
			return nil, fmt.Errorf("ca-certs host: snapshot %s has no CA bundle at %s: install its distribution's ca-certificates first",
				snap.Name, strings.Join(caBundlePaths, ", "))
		}
		mounts := maps.Clone(opts.Mounts)
		if mounts == nil {
			mounts = map[string]Mount{}
		}
		maps.Copy(mounts, ca)
		opts.Mounts = mounts
	}
	targets := make([]string, 0, len(opts.Mounts))
	for t := range opts.Mounts {
		targets = append(targets, t)
	}
	slices.Sort(targets) // parents before children
	for _, target := range targets {
		m := opts.Mounts[target]
		ms := runtime.MountSpec{Target: path.Clean(target), ReadOnly: m.ReadOnly, Overlay: m.Overlay}
		if m.Source != "" {
			src, err := filepath.Abs(m.Source)
			if err != nil {
				return nil, fmt.Errorf("mount %s: %w", target, err)
			}
			fi, err := os.Stat(src)
			if err != nil {
				return nil, fmt.Errorf("mount %s: source %s: %w", target, m.Source, err)
			}
			if m.Overlay && !fi.IsDir() {
				return nil, fmt.Errorf("mount %s: copy-on-write (overlay) source %s: not a directory", target, m.Source)
			}
			ms.Source = src
		} else {
			co := volstore.CreateOptions{UID: -1, GID: -1}
			o, err := r.ownerOfTarget(ctx, snap.Layers, ms.Target)
			if err != nil {
				return nil, fmt.Errorf("mount %s: %w", target, err)
			}
			if o != nil {
				co.UID, co.GID, co.Mode = o.uid, o.gid, o.mode|os.ModeDir
			}
			vl, v, err := r.vols.Acquire(ctx, m.Volume, co)
			if err != nil {
				return nil, fmt.Errorf("mount %s: %w", target, err)
			}
			held.add(vl.Close)
			spec.Leases = append(spec.Leases, vl.File())
			spec.Volumes = append(spec.Volumes, m.Volume)
			ms.Source, ms.Volume = v.DataDir, m.Volume
		}
		spec.Mounts = append(spec.Mounts, ms)
	}
	if opts.DiskMiB > 0 {
		dir, unlock, err := r.createDisk(ctx, name, opts.DiskMiB)
		if err != nil {
			return nil, err
		}
		defer unlock() // once the sandbox's state names the disk
		held.add(func() error {
			if launched {
				return nil // the disk now belongs to the sandbox
			}
			err := r.vols.RemoveDisk(context.WithoutCancel(ctx), dir)
			os.Remove(dir + ".lock")
			return err
		})
		spec.WritableDir = dir
	}
	if network == NetworkPrivate {
		ports := make([]netstack.Port, len(opts.Ports))
		for i, p := range opts.Ports {
			ports[i], _ = netstack.ParsePort(p) // checked by validate
		}
		ctx = context.WithValue(ctx, portsKey{}, ports)
	}
	rs, err := r.mgr.Launch(ctx, spec)
	if err != nil {
		return nil, err
	}
	launched = true
	r.log.Debug("sandbox launched", "sandbox", name, "snapshot", snap.Name)
	return &Sandbox{name: name, r: r, rs: rs}, nil
}

// createDisk makes a size-capped directory for a sandbox's writable layer
// under $ROOT/disks, locked until the sandbox's state names it (so gc
// never takes a disk that a launch is still setting up).
func (r *Runtime) createDisk(ctx context.Context, name string, mib int64) (string, func(), error) {
	disks := filepath.Join(r.root, "disks")
	if err := os.MkdirAll(disks, 0o700); err != nil {
		return "", nil, fmt.Errorf("disk for sandbox %s: %w", name, err)
	}
	var b [4]byte
	rand.Read(b[:])
	dir := filepath.Join(disks, name+"-"+hex.EncodeToString(b[:]))
	lk, err := lockfile.Exclusive(ctx, dir+".lock")
	if err != nil {
		return "", nil, fmt.Errorf("disk for sandbox %s: %w", name, err)
	}
	if err := r.vols.CreateDisk(ctx, dir, mib); err != nil {
		lk.Close()
		os.Remove(dir + ".lock")
		return "", nil, fmt.Errorf("sandbox %s: %w", name, err)
	}
	return dir, func() { lk.Close() }, nil
}

// gcDisks removes the capped writable layers that no sandbox's state
// names any more (the sandbox was removed, or gc removed its remains),
// and returns their names.
func (r *Runtime) gcDisks(ctx context.Context) ([]string, error) {
	disks := filepath.Join(r.root, "disks")
	ents, err := os.ReadDir(disks)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var errs []error
	var removed []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(disks, e.Name())
		lk, err := lockfile.TryExclusive(dir + ".lock")
		if err != nil {
			continue // a launch is making it
		}
		if !r.diskInUse(ctx, dir) {
			if err := r.vols.RemoveDisk(ctx, dir); err != nil {
				errs = append(errs, err)
			} else {
				os.Remove(dir + ".lock")
				removed = append(removed, e.Name())
			}
		}
		lk.Close()
	}
	return removed, errors.Join(errs...)
}

// diskInUse reports whether a sandbox's state names dir.
func (r *Runtime) diskInUse(ctx context.Context, dir string) bool {
	list, err := r.mgr.List(ctx)
	if err != nil {
		return true // when in doubt, keep it
	}
	for _, in := range list {
		if in.WritableDir == dir {
			return true
		}
	}
	return false
}

// defaultNetwork is what an empty SandboxOptions.Network means.
const defaultNetwork = NetworkPrivate

// portsKey carries a launch's published ports through runtime.Launch to
// attachNetwork (the runtime's hook is per store, the ports per sandbox).
type portsKey struct{}

// attachNetwork is the runtime's hook for NetworkPrivate: a user-mode
// stack (pasta) attached to the sandbox's namespaces from outside.
func (r *Runtime) attachNetwork(ctx context.Context, pid int) (runtime.NetworkAttachment, error) {
	ports, _ := ctx.Value(portsKey{}).([]netstack.Port)
	st, err := netstack.Attach(ctx, pid, netstack.Options{Ports: ports, Logger: r.log})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// defaultPath is the PATH of a sandbox whose snapshot sets none, as
// docker and runc use it.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// mergeEnv applies over on top of base, by key, and gives the result a
// PATH when neither has one.
func mergeEnv(base, over []string) []string {
	out := slices.Clone(base)
	if !slices.ContainsFunc(out, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		out = append([]string{defaultPath}, out...)
	}
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		out = slices.DeleteFunc(out, func(e string) bool { return strings.HasPrefix(e, k+"=") })
		out = append(out, kv)
	}
	return out
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// generateName makes a sandbox name like "lb-3f9a1c2e".
func generateName() string {
	var b [4]byte
	rand.Read(b[:])
	return "lb-" + hex.EncodeToString(b[:])
}
