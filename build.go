package lightbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/beamhop/lightbox/build"
	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/names"
	"github.com/beamhop/lightbox/internal/sys"
	"github.com/beamhop/lightbox/snapshot"
	"github.com/beamhop/lightbox/volstore"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// BuildOptions describe a snapshot build from a recipe (a Dockerfile).
// Zero fields take defaults.
type BuildOptions struct {
	// Name is the snapshot to make; required.
	Name string
	// Recipe is the recipe's text; "" = read RecipeFile.
	Recipe string
	// RecipeFile is the recipe's path; "" = Dockerfile in Context.
	RecipeFile string
	// Context is the build context directory that COPY, ADD and RUN
	// --mount=type=bind read from; required.
	Context string
	// Args are build arguments (--build-arg K=V). HTTP_PROXY & co. are
	// predefined, as in docker: a RUN sees them without an ARG, and they
	// are part of no cache key and of no image.
	Args map[string]string
	// NoCache runs every step again instead of reusing cached ones (the
	// new results are cached).
	NoCache bool
	// Target names the stage (FROM … AS name) whose image becomes the
	// snapshot; the stages after it are not built. "" = the last stage.
	// No other stage's image gets a name: each stays in the build cache
	// only.
	Target string
	// Network is each RUN's network: "" = NetworkPrivate.
	Network Network
	// Mounts are mounted into each RUN's sandbox, as SandboxOptions.Mounts;
	// never part of a layer.
	Mounts map[string]Mount
	// CACerts "host" (CACertsHost) binds the host's CA bundle over the
	// image's in each RUN, as SandboxOptions.CACerts does, in no layer; a
	// RUN whose image has no bundle yet (before it installs
	// ca-certificates) runs without.
	CACerts string
	// Replace replaces an existing snapshot called Name (unless a sandbox
	// uses it); otherwise an existing name is ErrExists, before anything
	// runs.
	Replace bool
	// Progress, when non-nil, is called as each step starts and ends.
	Progress func(BuildProgress)
	// Stdout and Stderr receive the output of each RUN as it runs; nil
	// discards it.
	Stdout, Stderr io.Writer
}

// PredefinedBuildArgs are the build arguments predefined as in docker
// (HTTP_PROXY, HTTPS_PROXY, FTP_PROXY, NO_PROXY, ALL_PROXY, each also in
// lower case): a RUN sees them without an ARG, and they are part of no
// cache key and of no image. `lightbox snapshot build` passes the
// caller's own values of them unless --build-arg gives others.
func PredefinedBuildArgs() []string { return slices.Clone(build.PredefinedArgs) }

// BuildProgress reports a build step starting (Done false) or finished.
type BuildProgress struct {
	Step, Total int
	// Instruction is the step's instruction as the recipe has it.
	Instruction string
	Done        bool
	// Cached: the step's result came from the build cache.
	Cached   bool
	Duration time.Duration
	// LayerSize is the compressed size of the layer the step added (0
	// for none).
	LayerSize int64
}

// BuildError is a build step that failed: the recipe's line and
// instruction. A RUN that exited non-zero wraps an *ExitError.
type BuildError = build.StepError

// BuildSnapshot builds snapshot opts.Name from a recipe. Each RUN runs in
// a sandbox of the image so far and its changes become one layer through
// the commit path; COPY and ADD write a layer of files from the context;
// the other instructions change the configuration only. Every step's
// result is cached (see PruneBuildCache); a step whose parent, text,
// arguments in scope and copied contents are unchanged is not run again.
// A failed build leaves no snapshot under Name and no sandbox; the layers
// of the steps that succeeded stay in the cache.
func (r *Runtime) BuildSnapshot(ctx context.Context, opts BuildOptions) (*Snapshot, error) {
	if err := checkInit(); err != nil {
		return nil, err
	}
	if err := names.Check("snapshot", opts.Name); err != nil {
		return nil, err
	}
	if opts.Context == "" {
		return nil, errors.New("build: no context directory")
	}
	if fi, err := os.Stat(opts.Context); err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("build context %s: not a directory", opts.Context)
	}
	sopts := SandboxOptions{Snapshot: opts.Name, Network: opts.Network, Mounts: opts.Mounts, CACerts: opts.CACerts}
	if err := sopts.validate(); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	if !opts.Replace {
		if _, err := r.snaps.Get(ctx, opts.Name); err == nil {
			return nil, fmt.Errorf("build %s: snapshot %s: %w", opts.Name, opts.Name, ErrExists)
		}
	}
	text, rname := []byte(opts.Recipe), "recipe"
	if opts.Recipe == "" {
		rname = opts.RecipeFile
		if rname == "" {
			rname = filepath.Join(opts.Context, "Dockerfile")
		}
		var err error
		if text, err = os.ReadFile(rname); err != nil {
			return nil, fmt.Errorf("build: %w", err)
		}
	}
	recipe, err := build.Parse(rname, text)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", opts.Name, err)
	}
	args, pre := map[string]string{}, map[string]string{}
	for k, v := range opts.Args {
		if slices.Contains(build.PredefinedArgs, k) {
			pre[k] = v
		} else {
			args[k] = v
		}
	}
	ctxDir, err := filepath.Abs(opts.Context)
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	bo := build.Options{Context: ctxDir, Args: args, Predefined: pre, NoCache: opts.NoCache, Target: opts.Target, Stdout: opts.Stdout, Stderr: opts.Stderr}
	if opts.Progress != nil {
		bo.Progress = func(e build.Event) {
			opts.Progress(BuildProgress{Step: e.Step, Total: e.Total, Instruction: e.Text, Done: e.Done,
				Cached: e.Cached, Duration: e.Duration, LayerSize: e.LayerSize})
		}
	}
	bb := &buildBackend{r: r, opts: opts, leases: map[string]*snapshot.Lease{}}
	id, err := build.Build(ctx, recipe, bb, bo)
	// The result, a build-cache entry of the index, now holds every layer
	// it uses: the leases can go before the tag (which may replace one of
	// the snapshots the build read: FROM app … -t app --replace).
	if lerr := bb.release(); lerr != nil && err == nil {
		err = lerr
	}
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", opts.Name, err)
	}
	sn, err := r.snaps.TagImage(ctx, opts.Name, id, opts.Replace)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", opts.Name, err)
	}
	return toSnapshot(sn), nil
}

// PruneBuildCache removes the build cache: the images of build steps that
// no snapshot is, and the layers only they used.
func (r *Runtime) PruneBuildCache(ctx context.Context) error {
	return r.snaps.PruneBuildCache(ctx)
}

// buildBackend carries out build steps on the store. build.Build calls
// it from one goroutine.
type buildBackend struct {
	r    *Runtime
	opts BuildOptions
	// leases hold the snapshots the build reads (FROM and COPY --from),
	// by name, from their first use to the end of the build, as a
	// sandbox's lease holds its snapshot: `snapshot rm` of one fails with
	// ErrInUse meanwhile, so GC cannot free layers a RUN runs on or a
	// COPY --from reads. They are flocks: a killed build frees them.
	leases map[string]*snapshot.Lease
}

// release drops the build's leases.
func (b *buildBackend) release() error {
	var errs []error
	for name, l := range b.leases {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("release lease on snapshot %s: %w", name, err))
		}
		delete(b.leases, name)
	}
	return errors.Join(errs...)
}

func toBuildConfig(c ispec.ImageConfig) build.Config {
	return build.Config{Env: c.Env, WorkingDir: c.WorkingDir, User: c.User, Entrypoint: c.Entrypoint, Cmd: c.Cmd,
		Labels: c.Labels, ExposedPorts: slices.Sorted(maps.Keys(c.ExposedPorts)), StopSignal: c.StopSignal}
}

func toImageConfig(c build.Config) ispec.ImageConfig {
	ic := ispec.ImageConfig{Env: c.Env, WorkingDir: c.WorkingDir, User: c.User, Entrypoint: c.Entrypoint, Cmd: c.Cmd, Labels: c.Labels, StopSignal: c.StopSignal}
	if len(c.ExposedPorts) > 0 {
		ic.ExposedPorts = map[string]struct{}{}
		for _, p := range c.ExposedPorts {
			ic.ExposedPorts[p] = struct{}{}
		}
	}
	return ic
}

// From resolves snapshot ref and leases it for the rest of the build.
func (b *buildBackend) From(ctx context.Context, ref string) (build.Image, error) {
	l, sn, err := b.r.snaps.Lease(ctx, ref)
	if err != nil {
		return build.Image{}, err
	}
	if old, ok := b.leases[ref]; ok {
		// Named twice (FROM x, then COPY --from=x): one lease is enough.
		// It resolved to the same image: the lease held meanwhile kept
		// the name from being removed or replaced.
		if err := l.Close(); err != nil {
			return build.Image{}, fmt.Errorf("release lease on snapshot %s: %w", ref, err)
		}
		l = old
	}
	b.leases[ref] = l
	_, cfg, err := b.r.snaps.Image(ctx, sn.Digest, ref)
	if err != nil {
		return build.Image{}, err
	}
	return build.Image{ID: sn.Digest, Config: toBuildConfig(cfg)}, nil
}

func (b *buildBackend) Lookup(ctx context.Context, key string) (string, bool, error) {
	return b.r.snaps.LookupBuildCache(ctx, key)
}

func (b *buildBackend) Commit(ctx context.Context, st build.CommitStep) (build.StepOutput, error) {
	id, size, err := b.r.snaps.CommitBuildStep(ctx, snapshot.BuildStep{
		Parent: st.Parent, Key: st.Key, Config: toImageConfig(st.Config), CreatedBy: st.CreatedBy,
		Layer: snapshot.BuildLayer{Tar: st.Layer},
	})
	return build.StepOutput{ID: id, LayerSize: size}, err
}

// cacheVolume is the named volume behind RUN --mount=type=cache: its id,
// else a name made from its target ("/root/.npm" → "cache-root-.npm").
func cacheVolume(m build.Mount) (string, error) {
	if m.ID != "" {
		if err := names.Check("volume", m.ID); err != nil {
			return "", fmt.Errorf("--mount=type=cache,id=%s: the id names a volume: %w", m.ID, err)
		}
		return m.ID, nil
	}
	n := "cache" + strings.ReplaceAll(path.Clean(m.Target), "/", "-")
	if len(n) > 63 {
		n = n[:63]
	}
	if err := names.Check("volume", n); err != nil {
		return "", fmt.Errorf("--mount=type=cache,target=%s: give it an id: %w", m.Target, err)
	}
	return n, nil
}

func (b *buildBackend) Run(ctx context.Context, st build.RunStep) (build.StepOutput, error) {
	mounts := maps.Clone(b.opts.Mounts)
	if mounts == nil {
		mounts = map[string]Mount{}
	}
	var locked []string // cache volumes of sharing=locked mounts
	for _, m := range st.Mounts {
		switch m.Type {
		case "cache":
			v, err := cacheVolume(m)
			if err != nil {
				return build.StepOutput{}, err
			}
			if m.UID != nil || m.GID != nil || m.Mode != nil {
				if err := b.cacheOwner(ctx, v, m); err != nil {
					return build.StepOutput{}, err
				}
			}
			// A cache mount starts empty, as BuildKit's: never filled
			// from the step's image.
			mounts[m.Target] = Mount{Volume: v, ReadOnly: m.ReadOnly, NoCopy: true}
			if m.Locked {
				locked = append(locked, v)
			}
		case "bind":
			// Always read-only: a build never writes into its context.
			mounts[m.Target] = Mount{Source: m.Source, ReadOnly: true}
		case "tmpfs":
			// An empty directory of the store's, thrown away after the
			// step: what a tmpfs mount gives a build (empty, writable, in
			// no layer), on the store's disk.
			if m.Size > 0 {
				// A cap needs a real tmpfs mounted in the sandbox (nsinit).
				return build.StepOutput{}, fmt.Errorf("--mount=type=tmpfs,size=%d: a size limit is %w (the mount is a scratch directory on the store's disk, which nothing caps): "+
					"drop size= for an uncapped scratch directory, or for a capped one use a volume with a quota "+
					"(lightbox volume create --quota-mib MIB NAME) as --mount=type=cache,id=NAME,target=%s (kept between builds)",
					m.Size, build.ErrUnsupported, m.Target)
			}
			dir, release, err := b.r.snaps.ScratchDir(ctx)
			if err != nil {
				return build.StepOutput{}, err
			}
			defer func() { _ = release() }() // what is left is unlocked then, and the next gc's cleanTmp removes it
			mounts[m.Target] = Mount{Source: dir}
		default:
			return build.StepOutput{}, fmt.Errorf("--mount=type=%s is %w", m.Type, build.ErrUnsupported)
		}
	}
	// In one order, so two steps that lock the same caches never each
	// hold one the other waits for.
	slices.Sort(locked)
	for _, v := range slices.Compact(locked) {
		lk, err := b.r.vols.LockCacheWriter(ctx, v, func() {
			fmt.Fprintf(orDiscard(st.Stderr), "waiting for cache volume %s: a step of another build has it (sharing=locked)\n", v)
		})
		if err != nil {
			return build.StepOutput{}, fmt.Errorf("--mount=type=cache,sharing=locked: %w", err)
		}
		defer func() { _ = lk.Close() }() // an flock: released when the step is done
	}
	layers, err := b.layers(ctx, st.Parent)
	if err != nil {
		return build.StepOutput{}, err
	}
	if b.opts.CACerts == CACertsHost {
		ca, err := caCertMounts(b.r.snaps, layers, mounts)
		if err != nil {
			return build.StepOutput{}, err
		}
		maps.Copy(mounts, ca)
	}
	// What the sandbox makes only to mount on (the targets of the
	// step's mounts and their parents, where the image lacks them) is no
	// change of the step's: left out of its layer where still empty, as
	// buildkit removes its mount stubs after a RUN (podman 4.3 only the
	// target itself). (The /etc files every sandbox gets are in no
	// layer already: TestBuildMountStubs's image lacks /etc/resolv.conf.)
	stubs, err := b.r.snaps.MountStubs(layers, slices.Sorted(maps.Keys(mounts)))
	if err != nil {
		return build.StepOutput{}, err
	}
	opts := SandboxOptions{
		Snapshot: b.opts.Name, Network: b.opts.Network, Mounts: mounts,
		Env: st.Env, Workdir: st.Workdir, User: st.User,
	}
	sb, err := b.r.launchFrom(ctx, opts, false, func() (*snapshot.Lease, *snapshot.Snapshot, error) {
		// Leased as a sandbox's snapshot is: a prune of the build cache
		// meanwhile keeps the image the step runs on.
		l, sn, _, err := b.r.snaps.LeaseImage(ctx, st.Parent, b.opts.Name)
		return l, sn, err
	})
	if err != nil {
		return build.StepOutput{}, err
	}
	defer func() {
		// The step's result stands; a sandbox that will not go is
		// logged for the user to destroy.
		if err := sb.Destroy(context.WithoutCancel(ctx)); err != nil {
			b.r.log.Warn("build: cannot destroy a step's sandbox", "sandbox", sb.name, "err", err)
		}
	}()
	cmd := sb.Command(ctx, st.Argv[0], st.Argv[1:]...)
	cmd.Stdout, cmd.Stderr = orDiscard(st.Stdout), orDiscard(st.Stderr)
	if err := cmd.Run(); err != nil {
		return build.StepOutput{}, err
	}
	upper, err := sb.rs.UpperDir(ctx)
	if err != nil {
		return build.StepOutput{}, err
	}
	// What the command left running in the background must not change
	// the layer while it is read: stopped here, killed by Destroy.
	thaw, err := sb.rs.Freeze(ctx)
	if err != nil {
		return build.StepOutput{}, err
	}
	defer func() {
		// Runs before the Destroy above: the sandbox's processes are
		// killed next, nothing is resumed for them to do.
		if err := thaw(); err != nil {
			b.r.log.Warn("build: cannot thaw a step's sandbox before destroying it", "sandbox", sb.name, "err", err)
		}
	}()
	id, size, err := b.r.snaps.CommitBuildStep(ctx, snapshot.BuildStep{
		Parent: st.Parent, Key: st.Key, Config: toImageConfig(st.Config), CreatedBy: st.CreatedBy,
		Layer: snapshot.BuildLayer{UpperDir: upper, Stubs: stubs},
	})
	return build.StepOutput{ID: id, LayerSize: size}, err
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

func (b *buildBackend) layers(ctx context.Context, id string) ([]string, error) {
	if id == "" {
		return nil, nil
	}
	sn, _, err := b.r.snaps.Image(ctx, id, b.opts.Name)
	if err != nil {
		return nil, err
	}
	return sn.Layers, nil
}

// Resolve resolves p's symlinks in image id (snapshot.Store.Resolve).
func (b *buildBackend) Resolve(ctx context.Context, id, p string) (string, error) {
	layers, err := b.layers(ctx, id)
	if err != nil || len(layers) == 0 {
		return p, err
	}
	return b.r.snaps.Resolve(layers, p)
}

func (b *buildBackend) Stat(ctx context.Context, id, p string) (bool, bool, error) {
	if path.Clean(p) == "/" {
		return true, true, nil
	}
	layers, err := b.layers(ctx, id)
	if err != nil {
		return false, false, err
	}
	o, err := b.r.snaps.Owner(ctx, layers, p)
	if err != nil {
		return false, false, err
	}
	return o != nil, o != nil, nil
}

// ReadFile reads file p of image id from the topmost layer that has it,
// resolved inside that layer (snapshot.Store.ReadFile).
func (b *buildBackend) ReadFile(ctx context.Context, id, p string) ([]byte, error) {
	layers, err := b.layers(ctx, id)
	if err != nil {
		return nil, err
	}
	return b.r.snaps.ReadFile(ctx, layers, p)
}

// CopyFrom reads paths of image id for COPY --from (snapshot.Store.CopyOut).
func (b *buildBackend) CopyFrom(ctx context.Context, id string, srcs []string, dest string, destDir, makeDest bool) (io.ReadCloser, error) {
	layers, err := b.layers(ctx, id)
	if err != nil {
		return nil, err
	}
	return b.r.snaps.CopyOut(ctx, snapshot.CopyRequest{Layers: layers, Sources: srcs, Dest: dest, DestDir: destDir, MakeDest: makeDest})
}

// Chain is the digests of image id's layers, bottom first (each layer's
// directory is named by its blob's digest).
func (b *buildBackend) Chain(ctx context.Context, id string) (string, error) {
	layers, err := b.layers(ctx, id)
	if err != nil {
		return "", err
	}
	names := make([]string, len(layers))
	for i, l := range layers {
		names[i] = filepath.Base(l)
	}
	return strings.Join(names, " "), nil
}

// cacheOwner makes cache volume name with the owner and mode the mount's
// uid=, gid= and mode= ask (0, 0 and 0755 for those not given), or checks
// that the volume it finds has them: a cache volume owned otherwise
// (another build's, or a sandbox's) is an error naming it, never changed.
func (b *buildBackend) cacheOwner(ctx context.Context, name string, m build.Mount) error {
	uid, gid, mode := uint32(0), uint32(0), uint32(0o755)
	if m.UID != nil {
		uid = *m.UID
	}
	if m.GID != nil {
		gid = *m.GID
	}
	if m.Mode != nil {
		mode = *m.Mode
	}
	what := fmt.Sprintf("--mount=type=cache,id=%s", name)
	hu, ok1 := b.r.mapping.HostUID(uid)
	hg, ok2 := b.r.mapping.HostGID(gid)
	if !ok1 || !ok2 {
		return fmt.Errorf("%s: owner %d:%d is not among the ids this store's sandboxes have (%s)", what, uid, gid, b.r.mapping)
	}
	v, created, err := b.r.vols.Ensure(ctx, name, volstore.CreateOptions{UID: int(hu), GID: int(hg), Mode: sys.FileMode(mode)})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if created {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Stat(v.DataDir, &st); err != nil {
		return fmt.Errorf("%s: %w", what, &os.PathError{Op: "stat", Path: v.DataDir, Err: err})
	}
	if got := uint32(st.Mode) & 0o7777; st.Uid != hu || st.Gid != hg || got != mode&0o7777 {
		return fmt.Errorf("%s: cache volume %s is owned by %s mode %#o, not %d:%d mode %#o as the mount asks: "+
			"remove it (lightbox volume rm %s) or give this cache another id",
			what, name, b.containerOwner(st.Uid, st.Gid), got, uid, gid, mode&0o7777, name)
	}
	return nil
}

// containerOwner names host ids as the store's sandboxes see them.
func (b *buildBackend) containerOwner(hu, hg uint32) string {
	in := func(rs []idmap.Range, h uint32) string {
		for _, r := range rs {
			if h >= r.HostID && uint64(h) < uint64(r.HostID)+uint64(r.Size) {
				return fmt.Sprint(r.ContainerID + (h - r.HostID))
			}
		}
		return fmt.Sprintf("host %d", h)
	}
	return in(b.r.mapping.UIDs, hu) + ":" + in(b.r.mapping.GIDs, hg)
}
