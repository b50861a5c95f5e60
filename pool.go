package lightbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/beamhop/lightbox/runtime"
)

// Prewarm keeps up to n sandboxes of snapshot started ahead of need, with
// the default options otherwise (default network, no limits), inside this
// process: LaunchSandbox and RunInSandbox take one when the request's
// snapshot, network, limits, disk cap and user-namespace choice match,
// and give it the request's name (and hostname), mounts, environment,
// workdir and user at take time, before anything runs in it; the pool
// refills in the background. It returns once n are ready (or one failed
// to start: its error; the pool tries again after a back-off of 1 s,
// doubling to a minute, and logs each failure). n = 0 empties the pool
// of that snapshot.
//
// A request with a Command, Ports or a Timeout launches cold (those
// start at launch), as does one with bind mounts when this process is not
// real root (rootless, only the init could make them, and it has left the
// host's tree by then). The pool lives and dies with this process: its
// sandboxes die with it like any it launched (liveness pipe; gc removes
// their directories after a kill -9), and Close destroys them. They show
// in ListSandboxes, under generated names, until taken.
func (r *Runtime) Prewarm(ctx context.Context, snapshot string, n int) error {
	return r.PrewarmSandboxes(ctx, SandboxOptions{Snapshot: snapshot}, n)
}

// PrewarmSandboxes is Prewarm for sandboxes launched with opts (e.g. its
// Network, Resources, DiskMiB). opts may not name the sandbox nor give
// it mounts, an environment, a workdir, a user, a command, ports or a
// timeout: those belong to the request that takes one.
func (r *Runtime) PrewarmSandboxes(ctx context.Context, opts SandboxOptions, n int) error {
	if err := checkInit(); err != nil {
		return err
	}
	if n < 0 {
		return fmt.Errorf("prewarm: %d sandboxes", n)
	}
	if opts.Name != "" || len(opts.Mounts) > 0 || len(opts.Env) > 0 || opts.Workdir != "" || opts.User != "" || opts.Command != nil || len(opts.Ports) > 0 || opts.Timeout != 0 {
		return errors.New("prewarm: name, mounts, env, workdir, user, command, ports and timeout belong to the request that takes a sandbox")
	}
	if err := opts.validate(); err != nil {
		return fmt.Errorf("prewarm: %w", err)
	}
	return r.pool.prewarm(ctx, r, opts, n)
}

// pool holds the sandboxes Prewarm started, by the options they were
// launched with. Its zero value is ready; close ends it.
type pool struct {
	mu     sync.Mutex
	sets   map[string]*poolSet
	ctx    context.Context // fills; cancelled by close
	cancel context.CancelFunc
	fills  sync.WaitGroup
	closed bool
}

type poolSet struct {
	opts    SandboxOptions
	want    int
	ready   []*Sandbox
	filling int
	err     error         // the last fill's failure, until the next prewarm or the retry
	failed  int           // fills failed in a row: the retry waits refillBackoff(failed)
	failGen int           // counts failures: a retry acts only on the one it was armed for
	changed chan struct{} // closed and replaced when ready or err change
}

// poolKey is what a request must share with a pool's sandboxes: the
// options but those a take applies. Options added later count too, so a
// request that sets one never takes a sandbox launched without it.
func poolKey(opts SandboxOptions) (string, bool) {
	opts.Name, opts.Mounts, opts.Env, opts.Workdir, opts.User = "", nil, nil, "", ""
	opts.Network = cmpNetwork(opts.Network)
	b, err := json.Marshal(opts)
	return string(b), err == nil
}

func cmpNetwork(n Network) Network {
	if n == "" {
		return defaultNetwork
	}
	return n
}

func (p *pool) prewarm(ctx context.Context, r *Runtime, opts SandboxOptions, n int) error {
	key, ok := poolKey(opts)
	if !ok {
		return errors.New("prewarm: options cannot be compared")
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errors.New("prewarm: the runtime is closed")
	}
	if p.sets == nil {
		p.sets = map[string]*poolSet{}
		p.ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	}
	set := p.sets[key]
	if set == nil {
		set = &poolSet{opts: opts, changed: make(chan struct{})}
		p.sets[key] = set
	}
	set.want, set.err = n, nil
	var extra []*Sandbox
	if len(set.ready) > n {
		extra = slices.Clone(set.ready[n:])
		set.ready = set.ready[:n]
	}
	p.refillLocked(r, set)
	p.mu.Unlock()
	// A surplus sandbox that will not go is still running or mounted:
	// the caller learns of it with whatever else Prewarm returns.
	var derrs []error
	for _, sb := range extra {
		if err := sb.Destroy(context.WithoutCancel(ctx)); err != nil {
			derrs = append(derrs, fmt.Errorf("prewarm: destroy surplus sandbox %s: %w", sb.name, err))
		}
	}
	for {
		p.mu.Lock()
		ready, filling, want, err, changed := len(set.ready), set.filling, set.want, set.err, set.changed
		p.mu.Unlock()
		switch {
		case err != nil:
			return errors.Join(append([]error{fmt.Errorf("prewarm: %w", err)}, derrs...)...)
		case ready >= n && ready+filling <= want:
			// Launches under way beyond the pool's size (it shrank)
			// are gone too: fill destroys them before it counts them
			// out.
			return errors.Join(derrs...)
		}
		select {
		case <-ctx.Done():
			if len(derrs) > 0 {
				return errors.Join(append([]error{ctx.Err()}, derrs...)...)
			}
			return ctx.Err()
		case <-changed:
		}
	}
}

// refillLocked starts launches until ready and filling make set.want.
func (p *pool) refillLocked(r *Runtime, set *poolSet) {
	for !p.closed && set.err == nil && len(set.ready)+set.filling < set.want {
		set.filling++
		p.fills.Add(1)
		go p.fill(r, set)
	}
}

func (p *pool) fill(r *Runtime, set *poolSet) {
	defer p.fills.Done()
	sb, err := fillLaunch(p.ctx, r, set.opts)
	p.mu.Lock()
	keep := err == nil && !p.closed && len(set.ready) < set.want
	if err == nil && !keep {
		// The pool ended or shrank meanwhile: nobody else has it. It
		// still counts as filling until it is gone, so that a Prewarm
		// that shrank the pool returns only then (its snapshot lease
		// and its name with it).
		p.mu.Unlock()
		if err := sb.Destroy(context.WithoutCancel(p.ctx)); err != nil {
			r.log.Warn("warm pool: cannot destroy a sandbox it no longer wants", "sandbox", sb.name, "err", err)
		}
		p.mu.Lock()
	}
	set.filling--
	if keep {
		set.ready = append(set.ready, sb)
	}
	if err == nil {
		set.failed = 0
	} else if !p.closed {
		// Prewarm answers with it; the refills stop until a retry
		// (a transient failure, e.g. under load, must not end the
		// pool for good) or the next Prewarm, whichever comes first.
		set.err = err
		set.failed++
		set.failGen++
		gen, wait := set.failGen, refillBackoff(set.failed)
		r.log.Warn("warm pool: launch failed", "snapshot", set.opts.Snapshot, "err", err, "retry in", wait)
		time.AfterFunc(wait, func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			if set.failGen == gen && set.err != nil {
				set.err = nil
				p.refillLocked(r, set)
			}
		})
	}
	if !keep {
		// A take meanwhile may want what this launch was counted for.
		p.refillLocked(r, set)
	}
	close(set.changed)
	set.changed = make(chan struct{})
	p.mu.Unlock()
}

// take returns a pooled sandbox made to opts, or nil when none matches
// (or applying opts to it failed: the cold launch reports that error).
func (p *pool) take(ctx context.Context, r *Runtime, opts SandboxOptions) *Sandbox {
	if opts.Command != nil || len(opts.Ports) > 0 || opts.Timeout != 0 {
		return nil
	}
	for _, m := range opts.Mounts {
		if m != (Mount{Source: m.Source, Volume: m.Volume, ReadOnly: m.ReadOnly, NoCopy: m.NoCopy}) {
			return nil // a kind of mount a take does not know how to make
		}
	}
	if len(opts.Mounts) > 0 && !runtime.CanTakeMounts() {
		return nil
	}
	for _, m := range opts.Mounts {
		if m.Source == "" {
			continue
		}
		if _, err := os.Stat(m.Source); err != nil {
			// The cold launch says so; a take would fail only after
			// the warm sandbox was given the request, and throw it away.
			return nil
		}
	}
	key, ok := poolKey(opts)
	if !ok {
		return nil
	}
	p.mu.Lock()
	set := p.sets[key]
	if set == nil || len(set.ready) == 0 {
		p.mu.Unlock()
		return nil
	}
	layers := set.ready[0].layers
	p.mu.Unlock()
	if r.fillsVolume(ctx, layers, opts) {
		// The init fills a volume at setup; a warm one is past it.
		return nil
	}
	p.mu.Lock()
	if len(set.ready) == 0 {
		p.mu.Unlock()
		return nil
	}
	sb := set.ready[0]
	set.ready = slices.Delete(set.ready, 0, 1)
	if sb.rs.InitExited() {
		// It ended while pooled (`lightbox rm -f` of its generated name,
		// which ListSandboxes shows; a crash): a request with nothing to
		// apply would get it as it is, dead. Launch cold; a new one
		// takes its place.
		p.refillLocked(r, set)
		p.mu.Unlock()
		if err := sb.Destroy(context.WithoutCancel(ctx)); err != nil && !errors.Is(err, ErrNotFound) {
			r.log.Warn("warm pool: cannot remove a sandbox that ended while pooled", "sandbox", sb.name, "err", err)
		}
		return nil
	}
	p.mu.Unlock()
	// The refill waits until the taken sandbox's first command has
	// finished (or refillDelay passed, or it was destroyed): on a small
	// machine a launch beside them slows the take and that command down
	// severalfold (bench/NOTES.md).
	var once sync.Once
	refill := func() {
		once.Do(func() {
			p.mu.Lock()
			p.refillLocked(r, set)
			p.mu.Unlock()
		})
	}
	// Before a take renames it: never listed pooled under the
	// request's name.
	if err := sb.rs.Unpool(); err != nil {
		r.log.Warn("warm pool: cannot record that a sandbox was handed out", "sandbox", sb.name, "err", err)
	}
	if err := r.applyTake(ctx, sb, opts); err != nil {
		refill()
		r.log.Debug("warm pool: take failed; launching cold", "sandbox", sb.name, "err", err)
		// The caller launches cold and gets that result: this
		// sandbox's fate is only logged.
		if err := sb.Destroy(context.WithoutCancel(ctx)); err != nil {
			r.log.Warn("warm pool: cannot destroy a sandbox it failed to hand out", "sandbox", sb.name, "err", err)
		}
		return nil
	}
	sb.settled = refill
	time.AfterFunc(refillDelay, refill)
	return sb
}

// fillsVolume says whether a launch of opts from layers may fill a
// volume (see Mount.NoCopy): a volume mount without NoCopy, over a directory
// of the snapshot, of a volume never filled. In doubt, yes.
func (r *Runtime) fillsVolume(ctx context.Context, layers []string, opts SandboxOptions) bool {
	for t, m := range opts.Mounts {
		if m.Volume == "" || !mayFill(t, opts.Mounts) {
			continue
		}
		unfilled, err := r.vols.Unfilled(m.Volume)
		if err != nil {
			return true
		}
		if !unfilled {
			continue
		}
		o, err := r.snaps.Owner(ctx, layers, path.Clean(t))
		if err != nil || o != nil {
			return true
		}
	}
	return false
}

// fillLaunch launches one of a pool's sandboxes (a variable for the
// tests, which make it fail).
var fillLaunch = func(ctx context.Context, r *Runtime, opts SandboxOptions) (*Sandbox, error) {
	return r.launchCold(ctx, opts, true)
}

// refillBackoff is how long a pool waits, after its nth failed launch in
// a row, before it launches again: 1 s, doubling, at most a minute.
func refillBackoff(n int) time.Duration {
	return min(time.Second<<min(n-1, 6), time.Minute)
}

// refillDelay bounds how long a refill waits for the taken sandbox's
// first command.
const refillDelay = 100 * time.Millisecond

// applyTake gives a pooled sandbox what a launch would have from opts.
func (r *Runtime) applyTake(ctx context.Context, sb *Sandbox, opts SandboxOptions) error {
	if opts.Name == "" && len(opts.Mounts) == 0 && len(opts.Env) == 0 && opts.Workdir == "" && opts.User == "" {
		return nil // the sandbox is what the request asks for already
	}
	spec, err := opts.spec()
	if err != nil {
		return err
	}
	var held closer
	defer func() { _ = held.close() }() // only lease descriptors (and Fills given back unused): the init holds its own copies, and close frees ours even when it reports an error
	fills, err := r.acquireVolumes(ctx, sb.layers, opts.Mounts, &spec, &held)
	if err != nil {
		return err
	}
	if len(fills) > 0 {
		// A volume became one to fill since take looked.
		return errors.New("a volume is to be filled from the image: launch cold")
	}
	ts := runtime.TakeSpec{Name: opts.Name, Mounts: spec.Mounts, Env: opts.Env, Workdir: spec.Workdir, User: opts.User, Leases: spec.Leases, Volumes: spec.Volumes}
	if err := sb.rs.Take(ctx, ts); err != nil {
		return err
	}
	sb.name = sb.rs.Name()
	return nil
}

// close destroys the pool's sandboxes, once the launches under way ended,
// and returns what would not go.
func (p *pool) close() error {
	p.mu.Lock()
	if p.closed || p.sets == nil {
		p.closed = true
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.cancel()
	p.mu.Unlock()
	p.fills.Wait()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, set := range p.sets {
		for _, sb := range set.ready {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Close has no context of its own.
				if err := sb.Destroy(context.WithoutCancel(p.ctx)); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("warm pool: destroy sandbox %s: %w", sb.name, err))
					mu.Unlock()
				}
			}()
		}
		set.ready = nil
	}
	wg.Wait()
	return errors.Join(errs...)
}
