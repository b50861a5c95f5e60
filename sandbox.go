package lightbox

import (
	"context"
	"errors"
	"io"
	"os"
	"time"
)

// Errors a Cmd returns when its program cannot start.
var (
	// ErrCommandNotFound: the program does not exist in the sandbox
	// (the CLI exits 127).
	ErrCommandNotFound = errors.New("command not found")
	// ErrNotExecutable: the program exists but cannot be executed
	// (the CLI exits 126).
	ErrNotExecutable = errors.New("command not executable")
)

// Sandbox is a handle on a running (or finished) sandbox. It is safe for
// concurrent use by many goroutines.
type Sandbox struct {
	name string
	r    *Runtime
}

// SandboxInfo describes a sandbox found in the store.
type SandboxInfo struct {
	Name     string `json:"name"`
	Snapshot string `json:"snapshot"`
	// Status is "running", "exited" (its main command ended; ExitCode
	// holds its status) or "dead" (its init died without cleaning up:
	// `lightbox gc` removes it).
	Status    string    `json:"status"`
	ExitCode  *int      `json:"exitCode,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	Volumes   []string  `json:"volumes"`
	Detached  bool      `json:"detached"`
	Pid       int       `json:"pid,omitempty"`
}

// Cmd is a command to run in a sandbox, in the spirit of os/exec.Cmd.
// Make it with Sandbox.Command, set its fields, then Run, or Start and
// Wait. A Cmd cannot be reused.
type Cmd struct {
	// Path is the program; without a slash it is looked up in the
	// sandbox's PATH.
	Path string
	// Args holds the arguments, without the program name.
	Args []string
	// Env is "KEY=value" entries added to the sandbox's environment.
	Env []string
	// Dir is the working directory; "" = the sandbox's.
	Dir string
	// User is "user[:group]"; "" = the sandbox's.
	User string
	// Stdin, Stdout and Stderr are connected to the command; nil means
	// /dev/null (as os/exec does).
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Tty allocates a terminal inside the sandbox for the command; its
	// output then arrives on Stdout only.
	Tty bool
	// TtySize is the initial terminal size (rows, columns) with Tty.
	TtySize [2]uint16

	ctx context.Context
	sb  *Sandbox
}

// Command returns a Cmd that runs path with args in the sandbox. When
// ctx ends before the command does, the command is killed.
func (s *Sandbox) Command(ctx context.Context, path string, args ...string) *Cmd {
	return &Cmd{Path: path, Args: args, ctx: ctx, sb: s}
}

// Start starts the command.
func (c *Cmd) Start() error { return errNotYet }

// Wait waits for the command to exit. A command that ran and exited
// non-zero (or was killed) returns an *ExitError.
func (c *Cmd) Wait() error { return errNotYet }

// Run starts the command and waits for it.
func (c *Cmd) Run() error {
	if err := c.Start(); err != nil {
		return err
	}
	return c.Wait()
}

// Signal sends sig to the started command.
func (c *Cmd) Signal(sig os.Signal) error { return errNotYet }

// Resize changes the size of the command's terminal (with Tty).
func (c *Cmd) Resize(rows, cols uint16) error { return errNotYet }

// Name returns the sandbox's name (also its hostname).
func (s *Sandbox) Name() string { return s.name }

// Shell runs script with /bin/sh -c and waits for it; see Exec.
func (s *Sandbox) Shell(ctx context.Context, script string) (*Result, error) {
	return s.Exec(ctx, "/bin/sh", "-c", script)
}

// Exec runs path with args, waits for it and returns its exit status and
// output (at most OutputLimit bytes per stream). A non-zero exit returns
// the Result and an *ExitError.
func (s *Sandbox) Exec(ctx context.Context, path string, args ...string) (*Result, error) {
	return nil, errNotYet
}

// Detach leaves the sandbox running after this process exits; any later
// process finds it with AttachSandbox.
func (s *Sandbox) Detach() error { return errNotYet }

// Wait waits for the sandbox's main command and returns its exit status.
func (s *Sandbox) Wait(ctx context.Context) (int, error) { return 0, errNotYet }

// Destroy stops every process in the sandbox (SIGTERM to its main command,
// SIGKILL after a grace period) and removes it.
func (s *Sandbox) Destroy(ctx context.Context) error { return errNotYet }

// RunInSandbox launches a sandbox, runs fn with it and destroys it when fn
// returns, panics, or ctx ends.
func (r *Runtime) RunInSandbox(ctx context.Context, opts SandboxOptions, fn func(*Sandbox) error) error {
	return errNotYet
}

// LaunchSandbox launches a sandbox and returns its handle. It dies with
// this process unless detached.
func (r *Runtime) LaunchSandbox(ctx context.Context, opts SandboxOptions) (*Sandbox, error) {
	if err := checkInit(); err != nil {
		return nil, err
	}
	return nil, errNotYet
}

// AttachSandbox finds a live sandbox by name.
func (r *Runtime) AttachSandbox(ctx context.Context, name string) (*Sandbox, error) {
	return nil, errNotYet
}

// ListSandboxes lists the sandboxes in the store.
func (r *Runtime) ListSandboxes(ctx context.Context) ([]SandboxInfo, error) { return nil, errNotYet }

// SandboxLogs copies the output of the named sandbox's main command to
// stdout and stderr; with follow it keeps copying until the command exits
// or ctx ends.
func (r *Runtime) SandboxLogs(ctx context.Context, name string, stdout, stderr io.Writer, follow bool) error {
	return errNotYet
}

// WaitSandbox waits for the named sandbox's main command and returns its
// exit status.
func (r *Runtime) WaitSandbox(ctx context.Context, name string) (int, error) { return 0, errNotYet }

// RemoveSandboxOptions tune RemoveSandbox.
type RemoveSandboxOptions struct {
	// Force stops a running sandbox; without it only exited or dead ones
	// are removed.
	Force bool
	// Grace is how long its main command has after SIGTERM before
	// SIGKILL; 0 = 10 s.
	Grace time.Duration
}

// RemoveSandbox removes the named sandbox.
func (r *Runtime) RemoveSandbox(ctx context.Context, name string, opts RemoveSandboxOptions) error {
	return errNotYet
}

// GC removes what crashed lightbox processes left behind: mounts, state
// directories and names of sandboxes whose init is gone, temporary files,
// and leases of dead sandboxes.
func (r *Runtime) GC(ctx context.Context) error { return errNotYet }

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
