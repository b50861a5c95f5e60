package lightbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/beamhop/lightbox/internal/names"
	"github.com/beamhop/lightbox/internal/netstack"
	"github.com/beamhop/lightbox/internal/sys"
	"github.com/beamhop/lightbox/runtime"
	"github.com/beamhop/lightbox/snapshot"
)

// Errors a Cmd returns when its program cannot start.
var (
	// ErrCommandNotFound: the program does not exist in the sandbox
	// (the CLI exits 127).
	ErrCommandNotFound = runtime.ErrCommandNotFound
	// ErrNotExecutable: the program exists but cannot be executed
	// (the CLI exits 126).
	ErrNotExecutable = runtime.ErrNotExecutable
	// ErrNotRunning: the sandbox's init is not running (it exited or died).
	ErrNotRunning = runtime.ErrNotRunning
	// ErrClosed: the Runtime was closed: it launches no more sandboxes
	// (the handles of those it launched still work).
	ErrClosed = runtime.ErrClosed
	// ErrNoCommand: the sandbox has no main command (Wait, Signal, Stop).
	ErrNoCommand = runtime.ErrNoCommand
)

// Sandbox is a handle on a running (or finished) sandbox. It is safe for
// concurrent use by many goroutines.
type Sandbox struct {
	name   string
	r      *Runtime
	rs     *runtime.Sandbox
	layers []string // its snapshot's layers, when launched by this process (a take's volumes)
	// settled, for a sandbox taken from the warm pool, lets the pool
	// refill: called when its first command finished or it is destroyed.
	settled func()
}

// SandboxInfo describes a sandbox found in the store.
type SandboxInfo struct {
	Name     string `json:"name"`
	Snapshot string `json:"snapshot"`
	// Status is "running", "exited" (its main command ended; ExitCode
	// holds its status) or "dead" (its init died without cleaning up:
	// `lightbox gc` removes it).
	Status   string `json:"status"`
	ExitCode *int   `json:"exitCode,omitempty"`
	// TimedOut: the sandbox exited because its Timeout passed.
	TimedOut  bool      `json:"timedOut,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	Volumes   []string  `json:"volumes"`
	// Detached: its launcher detached it (Sandbox.Detach, `lightbox run
	// -d`): it outlives the process that launched it.
	Detached bool `json:"detached"`
	// Pooled: a warm pool (Runtime.Prewarm) launched it and holds it
	// until a launch takes it; it has a generated name and goes with the
	// process that pooled it.
	Pooled bool `json:"pooled,omitempty"`
	Pid    int  `json:"pid,omitempty"`
	// Limits says how each limit holds, by resource ("pids", "memory",
	// "cpu", "shm", "logs"): e.g. "cgroup v1 4096", "rlimit 4096",
	// "none — no cgroup delegation".
	Limits map[string]string `json:"limits,omitempty"`
	// Usage is what the sandbox's cgroup counts now; nil when it has no
	// cgroup or is not running.
	Usage *Usage `json:"usage,omitempty"`
	// OOMKilled: the OOM killer killed a process of the sandbox (read
	// from its cgroup; an exited sandbox keeps saying so).
	OOMKilled bool `json:"oomKilled,omitempty"`
	// NetworkLost: the sandbox runs, but the user-mode network stack of
	// its private network (slirp4netns or pasta) has exited, killed or
	// crashed: it has no network any more (ps shows "running, no
	// network"). The stack is not restarted.
	NetworkLost bool `json:"networkLost,omitempty"`
}

// Usage is what a sandbox's cgroup counts.
type Usage struct {
	// MemoryBytes is the memory in use (page cache and /dev/shm included).
	MemoryBytes uint64 `json:"memoryBytes"`
	// MemoryLimitBytes is the memory limit, 0 = none.
	MemoryLimitBytes uint64 `json:"memoryLimitBytes,omitempty"`
	// Pids is the number of the workloads' processes and threads (the
	// init's own are not counted).
	Pids uint64 `json:"pids"`
	// PidsLimit is the pids limit, Resources.PidsLimit; 0 = none.
	PidsLimit uint64 `json:"pidsLimit,omitempty"`
	// CPUNanos is the CPU time used since the sandbox started.
	CPUNanos uint64 `json:"cpuNanos"`
}

// WaitDelay is how long a Cmd's Wait (Run, Exec, Shell) waits, once the
// command has exited, for its output streams to end when a process it
// left behind (a background job) holds them open: the command is
// answered when it exits, with all it wrote, not when that process ends.
// Past WaitDelay what is already written is taken and the streams are
// closed; the process keeps running, and its later writes fail (EPIPE).
// docker exec waits as long.
const WaitDelay = runtime.WaitDelay

// Cmd is a command to run in a sandbox, in the spirit of os/exec.Cmd.
// Make it with Sandbox.Command, set its fields, then Run, or Start and
// Wait. A Cmd cannot be reused.
type Cmd struct {
	// CmdSpec holds what runs: Path (without a slash it is looked up in
	// the sandbox's PATH), Args (without the program name), Env ("KEY=value"
	// entries added to the sandbox's environment), Dir and User ("" = the
	// sandbox's), Stdin, Stdout and Stderr (nil means /dev/null, as
	// os/exec has it), Tty (a terminal inside the sandbox; output then
	// arrives on Stdout only) and TtySize (its initial rows and columns).
	runtime.CmdSpec

	ctx  context.Context
	sb   *Sandbox
	rc   *runtime.Cmd
	late bool // started by Run: Start's errors come from Wait
}

// Command returns a Cmd that runs path with args in the sandbox. When
// ctx ends before the command does, the command is killed.
func (s *Sandbox) Command(ctx context.Context, path string, args ...string) *Cmd {
	return &Cmd{CmdSpec: runtime.CmdSpec{Path: path, Args: args}, ctx: ctx, sb: s}
}

// Start starts the command.
func (c *Cmd) Start() error { return c.start(false) }

// start starts the command; late, for Run, without waiting to hear that
// it started (runtime's StartLate: a message and a wakeup fewer).
func (c *Cmd) start(late bool) error {
	if c.rc != nil {
		return errors.New("lightbox: Cmd already started")
	}
	ctx := c.ctx
	if ctx == nil {
		ctx = context.Background() // a Cmd made as a literal, not by Command
	}
	rc := c.sb.rs.CommandContext(ctx, c.Path)
	rc.CmdSpec = c.CmdSpec
	start := rc.Start
	if late {
		start = rc.StartLate
	}
	if err := start(); err != nil {
		return c.startErr(err)
	}
	c.rc, c.late = rc, late
	return nil
}

func (c *Cmd) startErr(err error) error {
	return fmt.Errorf("sandbox %s: start %s: %w", c.sb.name, c.Path, runtime.Unnamed(err, c.sb.name))
}

// Wait waits for the command to exit and for its output to be copied:
// until its streams end, or at most WaitDelay after it exited when a
// process it left running holds them (all the command wrote is kept). A
// command that ran and exited non-zero (or was killed) returns an
// *ExitError.
func (c *Cmd) Wait() error {
	if c.rc == nil {
		return errors.New("lightbox: Cmd not started")
	}
	err := c.rc.Wait()
	if err != nil && c.late && !c.rc.Started() && (c.ctx == nil || c.ctx.Err() == nil) {
		// What Start would have returned. (A command killed as its
		// context ended may never have said it started: its error is
		// the context's, as os/exec's.)
		err = c.startErr(err)
	} else {
		err = toExitError(err)
	}
	if c.sb.settled != nil {
		c.sb.settled()
	}
	return err
}

// toExitError turns the runtime's exit error into the package's.
func toExitError(err error) error {
	var ee *runtime.ExitError
	if errors.As(err, &ee) {
		return &ExitError{ExitCode: ee.Code, Signal: int(ee.Signal), OOMKilled: ee.OOMKilled, TimedOut: ee.TimedOut, Destroyed: ee.Destroyed}
	}
	return err
}

// Run starts the command and waits for it.
func (c *Cmd) Run() error {
	if err := c.start(true); err != nil {
		return err
	}
	return c.Wait()
}

// Signal sends sig to the started command; once it has exited,
// os.ErrProcessDone (as os.Process.Signal).
func (c *Cmd) Signal(sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("lightbox: signal %v is not a syscall.Signal", sig)
	}
	if c.rc == nil {
		return errors.New("lightbox: Cmd not started")
	}
	return c.rc.Signal(s)
}

// Resize changes the size of the command's terminal (with Tty).
func (c *Cmd) Resize(rows, cols uint16) error {
	if c.rc == nil {
		return errors.New("lightbox: Cmd not started")
	}
	return c.rc.Resize(rows, cols)
}

// Name returns the sandbox's name (also its hostname).
func (s *Sandbox) Name() string { return s.name }

// Shell runs script with /bin/sh -c and waits for it; see Exec.
func (s *Sandbox) Shell(ctx context.Context, script string) (*Result, error) {
	return s.Exec(ctx, "/bin/sh", "-c", script)
}

// Exec runs path with args, waits for it and returns its exit status and
// output (at most OutputLimit bytes per stream). A non-zero exit returns
// the Result and an *ExitError; output past the limit returns the Result
// and an error saying it was truncated (with a non-zero exit, the
// ExitError says so: OutputTruncated). A command killed as ctx ended (a
// deadline) returns the Result with what it wrote until then, ExitCode
// -1 (it did not exit), and ctx's error, as os/exec's Output does. It
// returns when the command exits, even when a process it left running (a
// background job) holds its output: see WaitDelay.
func (s *Sandbox) Exec(ctx context.Context, path string, args ...string) (*Result, error) {
	var stdout, stderr capBuffer
	c := s.Command(ctx, path, args...)
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	res := &Result{Stdout: stdout.buf, Stderr: stderr.buf}
	var ee *ExitError
	switch {
	case err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()):
		res.ExitCode = -1
		return res, err
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode
		ee.Stderr = tail(stderr.buf, 4096)
		ee.OutputTruncated = stdout.dropped > 0 || stderr.dropped > 0
		return res, err
	case err != nil:
		return nil, err
	}
	if stdout.dropped > 0 || stderr.dropped > 0 {
		return res, fmt.Errorf("sandbox %s: %s: output truncated: kept %d bytes per stream, dropped %d of stdout and %d of stderr (use a Cmd with your own writers to keep it all)",
			s.name, path, OutputLimit, stdout.dropped, stderr.dropped)
	}
	return res, nil
}

// capBuffer keeps the first OutputLimit bytes written to it and counts
// the rest.
type capBuffer struct {
	buf     []byte
	dropped int64
}

func (b *capBuffer) Write(p []byte) (int, error) {
	room := OutputLimit - len(b.buf)
	if room >= len(p) {
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	if room > 0 {
		b.buf = append(b.buf, p[:room]...)
	}
	b.dropped += int64(len(p) - max(room, 0))
	return len(p), nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return append([]byte(nil), b...)
}

// MainCommand returns the sandbox's main command (SandboxOptions.Command)
// when this handle launched it, to Signal it or Resize its terminal; nil
// otherwise. Sandbox.Wait waits for it.
func (s *Sandbox) MainCommand() *Cmd {
	rc := s.rs.MainCommand()
	if rc == nil {
		return nil
	}
	return &Cmd{sb: s, rc: rc}
}

// Signal sends sig to the sandbox's main command, as `docker kill` does,
// from any handle (AttachSandbox's too; MainCommand is the launching
// handle's alone). A sandbox with no main command returns ErrNoCommand;
// one whose main command has exited, ErrNotRunning.
func (s *Sandbox) Signal(ctx context.Context, sig os.Signal) error {
	ss, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("signal sandbox %s: %v: not a signal number", s.name, sig)
	}
	return s.rs.Signal(ctx, ss)
}

// Stop ends the sandbox's main command as `docker stop` does: its stop
// signal (SandboxOptions.StopSignal, else the snapshot's STOPSIGNAL, else
// SIGTERM), then SIGKILL once grace has passed (0: SIGKILL at once); it
// returns once the command has exited. The sandbox ends with it, as when
// the command exits by itself: Wait returns its status, and a detached
// sandbox's logs stay until Destroy. A command that had exited already
// is no error; a sandbox with no main command returns ErrNoCommand.
func (s *Sandbox) Stop(ctx context.Context, grace time.Duration) error {
	return s.rs.Stop(ctx, grace)
}

// ParseSignal reads a signal as docker and kill(1) write it: "SIGTERM",
// "term", "RTMIN+3" or "15" (Linux's numbers).
func ParseSignal(s string) (syscall.Signal, error) { return sys.ParseSignal(s) }

// Detach leaves the sandbox running after this process exits; any later
// process finds it with AttachSandbox.
func (s *Sandbox) Detach() error { return s.rs.Detach() }

// Wait waits for the sandbox's main command and returns its exit status.
func (s *Sandbox) Wait(ctx context.Context) (int, error) { return s.rs.Wait(ctx) }

// Destroy stops every process in the sandbox (its stop signal to its
// main command, see Stop, SIGTERM to the others, SIGKILL after a grace
// period of 10 s) and removes it. When it returns,
// every process of the sandbox is gone, its name is free for a new
// sandbox, and its volumes and snapshot are no longer in use by it; its
// directory and cgroup are removed after that, in the background
// (Runtime.Close waits for it; after a crash, GC removes what is left).
func (s *Sandbox) Destroy(ctx context.Context) error { return s.destroy(ctx, 10*time.Second) }

// destroy removes the sandbox and then its capped writable layer, if it
// has one.
func (s *Sandbox) destroy(ctx context.Context, grace time.Duration) error {
	if s.settled != nil {
		s.settled()
	}
	wdir, _ := s.rs.WritableDir() // no state: nothing of it to remove
	if err := s.rs.DestroyGrace(ctx, grace); err != nil {
		return err
	}
	if wdir != "" {
		if err := s.r.disks.Remove(ctx, wdir); err != nil {
			return fmt.Errorf("destroy sandbox %s: %w", s.name, err)
		}
	}
	return nil
}

// Logs copies the output of the sandbox's main command to stdout and
// stderr; with follow it keeps copying until the command exits or ctx
// ends.
func (s *Sandbox) Logs(ctx context.Context, stdout, stderr io.Writer, follow bool) error {
	return s.rs.Logs(ctx, follow, stdout, stderr)
}

// RunInSandbox launches a sandbox, runs fn with it and destroys it when fn
// returns, panics, or ctx ends. When ctx ends first, the error matches
// ctx's (errors.Is), and wraps fn's when fn returned one.
func (r *Runtime) RunInSandbox(ctx context.Context, opts SandboxOptions, fn func(*Sandbox) error) (err error) {
	sb, err := r.LaunchSandbox(ctx, opts)
	if err != nil {
		return err
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	var ended bool // ctx ended and the sandbox was destroyed under fn
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
			ended = true
			_ = sb.Destroy(context.WithoutCancel(ctx)) // the deferred Destroy below tries again and returns its error
		case <-done:
		}
	}()
	defer func() {
		close(done)
		<-stopped
		if ended && err != nil && !errors.Is(err, ctx.Err()) {
			// What fn saw (a command killed, the sandbox gone) came of
			// the context's end: say so, and match it.
			err = fmt.Errorf("sandbox %s destroyed as the context ended (%w): %w", sb.name, ctx.Err(), err)
		}
		if derr := sb.Destroy(context.WithoutCancel(ctx)); derr != nil && err == nil {
			err = derr
		}
	}()
	err = fn(sb)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return err
}

// LaunchSandbox launches a sandbox and returns its handle. It dies with
// this process unless detached.
func (r *Runtime) LaunchSandbox(ctx context.Context, opts SandboxOptions) (*Sandbox, error) {
	return r.launch(ctx, opts)
}

// AttachSandbox finds a sandbox by name (ErrNotFound when there is none).
// Attaching does not tie the sandbox's life to this process.
func (r *Runtime) AttachSandbox(ctx context.Context, name string) (*Sandbox, error) {
	rs, err := r.mgr.Attach(ctx, name)
	if err != nil {
		return nil, err
	}
	return &Sandbox{name: name, r: r, rs: rs}, nil
}

// ListSandboxes lists the sandboxes in the store, by name.
func (r *Runtime) ListSandboxes(ctx context.Context) ([]SandboxInfo, error) {
	list, err := r.mgr.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]SandboxInfo, len(list))
	for i, in := range list {
		si := SandboxInfo{
			Name: in.Name, Snapshot: in.Snapshot, Status: in.Status, CreatedAt: in.CreatedAt,
			Volumes: in.Volumes, Pid: in.Pid, Limits: in.Limits, OOMKilled: in.OOMKilled, TimedOut: in.TimedOut,
			Detached: in.Detached, Pooled: in.Pooled, NetworkLost: in.NetworkLost,
		}
		if u := in.Usage; u != nil {
			si.Usage = &Usage{MemoryBytes: u.MemoryBytes, MemoryLimitBytes: u.MemoryLimitBytes, Pids: u.Pids, PidsLimit: u.PidsLimit, CPUNanos: u.CPUNanos}
		}
		if si.Volumes == nil {
			si.Volumes = []string{}
		}
		if in.Status == runtime.StatusExited {
			code := in.ExitCode
			si.ExitCode = &code
		}
		out[i] = si
	}
	return out, nil
}

// InspectSandbox describes the named sandbox (ErrNotFound when there is
// none): its status, how its limits hold, and its cgroup's usage.
func (r *Runtime) InspectSandbox(ctx context.Context, name string) (*SandboxInfo, error) {
	if err := names.Check("sandbox", name); err != nil {
		return nil, err
	}
	list, err := r.ListSandboxes(ctx)
	if err != nil {
		return nil, err
	}
	for i := range list {
		if list[i].Name == name {
			return &list[i], nil
		}
	}
	return nil, fmt.Errorf("sandbox %s: %w", name, ErrNotFound)
}

// SandboxLogs copies the output of the named sandbox's main command to
// stdout and stderr; with follow it keeps copying until the command exits
// or ctx ends.
func (r *Runtime) SandboxLogs(ctx context.Context, name string, stdout, stderr io.Writer, follow bool) error {
	sb, err := r.AttachSandbox(ctx, name)
	if err != nil {
		return err
	}
	return sb.Logs(ctx, stdout, stderr, follow)
}

// WaitSandbox waits for the named sandbox's main command and returns its
// exit status.
func (r *Runtime) WaitSandbox(ctx context.Context, name string) (int, error) {
	sb, err := r.AttachSandbox(ctx, name)
	if err != nil {
		return -1, err
	}
	return sb.Wait(ctx)
}

// SignalSandbox sends sig to the named sandbox's main command
// (Sandbox.Signal).
func (r *Runtime) SignalSandbox(ctx context.Context, name string, sig os.Signal) error {
	sb, err := r.AttachSandbox(ctx, name)
	if err != nil {
		return err
	}
	return sb.Signal(ctx, sig)
}

// StopSandbox stops the named sandbox's main command (Sandbox.Stop).
func (r *Runtime) StopSandbox(ctx context.Context, name string, grace time.Duration) error {
	sb, err := r.AttachSandbox(ctx, name)
	if err != nil {
		return err
	}
	return sb.Stop(ctx, grace)
}

// RemoveSandboxOptions tune RemoveSandbox.
type RemoveSandboxOptions struct {
	// Force stops a running sandbox; without it only exited or dead ones
	// are removed.
	Force bool
	// Grace is how long its processes have after the stop signal (the
	// main command's, see Stop; SIGTERM for the others) before SIGKILL;
	// 0 = 10 s.
	Grace time.Duration
}

// RemoveSandbox removes the named sandbox. A running one is refused with
// ErrInUse unless opts.Force.
func (r *Runtime) RemoveSandbox(ctx context.Context, name string, opts RemoveSandboxOptions) error {
	sb, err := r.AttachSandbox(ctx, name)
	if err != nil {
		return err
	}
	info, err := sb.rs.Status(ctx)
	if err != nil {
		return err
	}
	if info.Status == runtime.StatusRunning && !opts.Force {
		return fmt.Errorf("sandbox %s is running: stop it with rm -f: %w", name, ErrInUse)
	}
	grace := opts.Grace
	if grace == 0 {
		grace = 10 * time.Second
	}
	return sb.destroy(ctx, grace)
}

// GC removes what crashed lightbox processes left behind: mounts, state
// directories and names of sandboxes whose init is gone, temporary files,
// and leases of dead sandboxes.
func (r *Runtime) GC(ctx context.Context) error {
	_, err := r.Collect(ctx)
	return err
}

// Collected is what a garbage collection removed.
type Collected struct {
	// Sandboxes are the dead sandboxes removed.
	Sandboxes []string `json:"sandboxes"`
	// Disks are the size-capped writable layers no sandbox named any
	// more (directory names under $ROOT/disks).
	Disks []string `json:"disks"`
	// Layers are the digests of the unpacked layers no snapshot uses.
	Layers []string `json:"layers"`
	// Inits are the sandbox init programs of other lightbox builds
	// (upgrades, embedding programs) that no running lightbox process
	// can still launch from and that nothing used for a week (file names
	// under $ROOT/sandboxes: ".init-" and 32 hex digits of the program's
	// sha256). Running sandboxes never need them; this build's is kept.
	Inits []string `json:"inits"`
}

// Collect is GC that also says what it removed (`lightbox gc` prints it).
// On error, what was removed before the error is still returned.
func (r *Runtime) Collect(ctx context.Context) (*Collected, error) {
	var c Collected
	var err2, err3 error
	mc, err1 := r.mgr.Collect(ctx)
	if mc != nil {
		c.Sandboxes, c.Inits = mc.Sandboxes, mc.Inits
	}
	c.Disks, err2 = r.disks.GC(ctx, r.diskInUse(ctx))
	c.Layers, err3 = r.snaps.Collect(ctx)
	// Outside the store: what a launch killed while it published ports
	// left in the temporary directory (logged: Collected is per store).
	for _, dir := range netstack.SweepAPIDirs(r.log) {
		r.log.Info("gc: removed a killed launch's network API directory", "path", dir)
	}
	return &c, errors.Join(err1, err2, err3)
}

// diskInUse returns whether a sandbox's state names a capped writable
// layer's directory.
func (r *Runtime) diskInUse(ctx context.Context) func(dir string) bool {
	list, err := r.mgr.List(ctx)
	return func(dir string) bool {
		if err != nil {
			return true // when in doubt, keep it
		}
		return slices.ContainsFunc(list, func(in runtime.Info) bool { return in.WritableDir == dir })
	}
}

// RunInSandbox acts on the default Runtime.
func RunInSandbox(ctx context.Context, opts SandboxOptions, fn func(*Sandbox) error) error {
	r, err := Default()
	if err != nil {
		return err
	}
	return r.RunInSandbox(ctx, opts, fn)
}

// LaunchSandbox acts on the default Runtime.
func LaunchSandbox(ctx context.Context, opts SandboxOptions) (*Sandbox, error) {
	r, err := Default()
	if err != nil {
		return nil, err
	}
	return r.LaunchSandbox(ctx, opts)
}

// Commit makes a new snapshot, name, from the sandbox's snapshot plus what
// the sandbox wrote over it (its writable layer; mounts are not part of
// it), with the snapshot's configuration. A name in use is ErrExists.
//
// While the layer is read, the sandbox's processes are stopped (SIGSTOP
// to every process of its pid namespace but its init, SIGCONT after; the
// cgroup freezer once sandboxes have cgroups), so that the snapshot is one
// consistent picture; processes that were stopped already stay stopped.
// The init is not stopped, so exec requests are still served meanwhile;
// the processes resume as soon as the layer is read. The layer is read without
// following anything the sandbox made: a symlink is stored as a symlink,
// a file that changes type while it is read is left out with a warning
// (Options.Logger), and so are files named ".wh.*", which OCI layers
// reserve for whiteouts.
func (s *Sandbox) Commit(ctx context.Context, name string) (*Snapshot, error) {
	return s.CommitWith(ctx, name, CommitOptions{})
}

// CommitOptions tune CommitWith.
type CommitOptions struct {
	// Replace replaces an existing snapshot of that name (unless a
	// sandbox uses it); otherwise an existing name is ErrExists.
	Replace bool
}

// CommitWith is Commit with options (lightbox commit --replace).
func (s *Sandbox) CommitWith(ctx context.Context, name string, opts CommitOptions) (snap *Snapshot, err error) {
	info, err := s.rs.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.Snapshot == "" {
		// Its state.json is gone or torn (a crash of the machine): what
		// it was launched from is unknown.
		return nil, fmt.Errorf("commit sandbox %s: its state was lost (state.json missing or torn by a crash): the snapshot it ran is unknown, so there is nothing to commit onto; lightbox gc removes it", s.name)
	}
	if info.WritableDir != "" {
		// A kept sandbox's capped layer after a restart of the machine:
		// its loop-mounted image is mounted no more.
		if err := s.r.disks.Activate(ctx, info.WritableDir); err != nil {
			return nil, fmt.Errorf("commit sandbox %s: %w", s.name, err)
		}
	}
	upper, err := s.rs.UpperDir(ctx)
	if err != nil {
		return nil, err
	}
	thaw, err := s.rs.Freeze(ctx)
	if err != nil {
		return nil, fmt.Errorf("commit sandbox %s: %w", s.name, err)
	}
	defer func() {
		// Deferred: runs on every return and on a panic too.
		if terr := thaw(); terr != nil {
			if err == nil {
				s.r.log.Warn("commit: resume the sandbox's processes", "sandbox", s.name, "err", terr)
			} else {
				err = errors.Join(err, fmt.Errorf("resume the sandbox's processes: %w", terr))
			}
		}
	}()
	resume := func() {
		if terr := thaw(); terr != nil {
			s.r.log.Warn("commit: resume the sandbox's processes", "sandbox", s.name, "err", terr)
		}
	}
	sn, err := s.r.snaps.Commit(ctx, name, info.Snapshot, upper, snapshot.CommitOptions{
		Comment:   "lightbox commit " + s.name,
		Replace:   opts.Replace,
		UpperRead: resume, // the layer is read: no need to wait for its unpack
		Launched:  info.CreatedAt,
	})
	if err != nil {
		return nil, fmt.Errorf("commit sandbox %s: %w", s.name, err)
	}
	return toSnapshot(sn), nil
}
