package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/names"
	"github.com/beamhop/lightbox/internal/netstack"
	"github.com/beamhop/lightbox/internal/reap"
	"github.com/beamhop/lightbox/nsinit"
)

// Options configure Open.
type Options struct {
	// Root holds one directory per sandbox ($ROOT/sandboxes). Required.
	Root string
	// TmpDir is scratch space on the same filesystem ($ROOT/tmp); "" =
	// Root.
	TmpDir string
	// Mapping is the store's id mapping, used for every sandbox.
	Mapping idmap.Mapping
	// Logger receives structured records; nil discards them.
	Logger *slog.Logger
	// AttachNetwork connects a sandbox with Network "private" to the
	// outside world (the user-mode network stack hooks in here). It is
	// called with the init's host pid once the init is ready, before the
	// main command starts; the returned attachment's ResolvConf becomes
	// the sandbox's /etc/resolv.conf, and Close is called when the
	// launching process destroys the sandbox; ports are Spec.Ports, to
	// publish. nil refuses "private".
	// helper is Spec.NetworkHelper. exit, when not nil, is a pipe's read
	// end that hangs up once the init has exited (it holds the only
	// write end): the stack's cue to go, even before anything reaps the
	// init; the hook hands copies on and the caller closes it.
	AttachNetwork func(ctx context.Context, pid int, ports []Port, helper string, exit *os.File) (NetworkAttachment, error)
	// StopGrace is how long Destroy waits after SIGTERM before SIGKILL;
	// 0 = 10s.
	StopGrace time.Duration
}

// NetworkAttachment is a private network attached to a sandbox.
type NetworkAttachment interface {
	ResolvConf() []byte
	Close() error
}

// Roles returns the re-exec roles of this package, to be dispatched by
// lightbox.Init (and by the TestMain of tests that launch sandboxes): the
// sandbox init. (Removing what other ids of a rootless range own uses
// internal/rmtree, whose role Init dispatches too.)
func Roles() map[string]func() {
	return map[string]func(){"init": nsinit.Main, reap.Role: reap.Main}
}

// Port is a port of the sandbox published on the host (Spec.Ports).
type Port = netstack.Port

// Network modes.
const (
	NetworkNone    = "none"
	NetworkHost    = "host"
	NetworkPrivate = "private"
)

// Spec is a sandbox to launch, as plain data: the caller has resolved the
// snapshot to layer directories and volume names to host paths.
type Spec struct {
	// Name is the sandbox's name and hostname; "" = generated (a name
	// like "lb-3f9a1c2e", made again should it be taken).
	Name string
	// Hostname is the sandbox's hostname (and /etc/hostname); "" = the
	// name, as DESIGN.md wants it.
	Hostname string
	// Snapshot is recorded for List.
	Snapshot string
	// Layers are unpacked layer directories, bottom first; any number,
	// at least one. A caller that validates before resolving them (see
	// Validate) may leave them empty then.
	Layers []string
	// Mounts are bind mounts, applied parents first.
	Mounts []MountSpec
	// Env is the final environment ("KEY=value").
	Env []string
	// Workdir is the working directory inside, an absolute path
	// (cleaned); created when missing; "" = "/".
	Workdir string
	// User is "uid[:gid]" or "name[:group]", resolved in the sandbox's
	// /etc/passwd and /etc/group; "" = root.
	User string
	// Command is the main process; nil = none: the sandbox idles serving
	// commands until destroyed. With one, the sandbox lives as long as it.
	Command []string
	// Stdin, Stdout, Stderr connect the main command; when all three are
	// nil its output goes to the sandbox's logs (see Sandbox.Logs) and
	// its stdin is empty. Tty gives it a pty instead (Stdout receives
	// both streams).
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Tty            bool
	// TtySize is the pty's initial size (rows, columns) with Tty; see
	// Sandbox.MainCommand for resizing it.
	TtySize [2]uint16
	// Network is "private" (the default, as lightbox.SandboxOptions has
	// it; needs Options.AttachNetwork), "none" (own namespace, loopback
	// only) or "host".
	Network string
	// NetworkHelper picks the user-mode stack of Network "private"
	// ("pasta", "slirp4netns"; "" = the default), handed to
	// Options.AttachNetwork.
	NetworkHelper string
	// Ports are published on the host, with Network "private" only.
	Ports []Port
	// Timeout ends the sandbox after this long; 0 = never.
	Timeout time.Duration
	// StopSignal is what Stop and Destroy send the main command first
	// (0 = SIGTERM); recorded in the state, for every handle.
	StopSignal syscall.Signal
	// DetachedTeardown makes Destroy, once the main command has exited,
	// free the sandbox's name at once (renamed aside), wait for its init
	// only, and hand the removal of a directory that holds much to a
	// detached reaper process (internal/reap) that finishes after Destroy
	// returns. For a launcher about to exit (lightbox run). The launcher
	// keeps its own hold of the name lock until Destroy (handed to the
	// reaper, so gc sees the directory busy until the reaper is done or
	// killed). Not with a private network (its helper is waited for) or
	// a WritableDir (the caller removes it). Without it, a sandbox that
	// ends by itself (its main command exits, or Timeout passes) may stay
	// exited for a commit: the init syncs the store's filesystem before
	// it records the status (nsinit.Config.SyncOnEnd).
	DetachedTeardown bool
	// Filled, when set, is called with the targets of the Mounts with
	// Fill that the init filled, once it reports ready (before Launch
	// returns, and also when Launch then fails: the volumes are filled
	// all the same).
	Filled func(targets []string)
	// AllowUserNamespaces lets workloads create user namespaces of their
	// own (the seccomp profile refuses them by default).
	AllowUserNamespaces bool
	// Takeable launches a sandbox for a warm pool: its init's descriptor
	// table is made at launch big enough for the most a Take passes
	// (nsinit.MaxFDsPerMessage mounts and leases), since a table that
	// grows once the init runs waits for an RCU grace period (a take of
	// 60 mounts waited 6-9 ms for it; initTableFor). Until
	// Sandbox.Unpool, List says it is pooled (Info.Pooled).
	Takeable bool
	// WritableDir, when set, is an existing empty directory that holds
	// the overlay's upper and work dirs instead of the sandbox's own
	// directory: the caller caps its size (SandboxOptions.DiskMiB) and
	// removes it after the sandbox is removed (Info.WritableDir). When it
	// is another filesystem than the store's (a loop-mounted image), a
	// sandbox that may stay once ended also gets an empty file there
	// that its init syncs that filesystem through (nsinit.FDs.UpperFS).
	WritableDir string
	// Volumes are the names of the volumes mounted, for List.
	Volumes []string
	// Leases are open files (held flocks) the init keeps open for its
	// whole life; workloads never see them. Launch does not close them.
	Leases []*os.File
	// Limits bound the sandbox's resources; see Limits.
	Limits Limits
}

// MountSpec is a bind mount of a host path.
type MountSpec struct {
	// Target is an absolute path inside, with no ".." element (cleaned),
	// resolved inside the root (symlinks cannot lead out of it); created
	// when missing.
	Target string
	// Source is an absolute host path that exists. A volume's (Volume
	// set) may be "" when Validate runs before the caller resolved it.
	Source string
	// ReadOnly makes the mount read-only, with every mount below it.
	ReadOnly bool
	// Volume names the volume this is, "" for a host path (for List).
	Volume string
	// Overlay makes the mount copy-on-write: Source, a directory, is the
	// read-only lower layer of an overlay whose upper dir is the
	// sandbox's own (under its writable directory, removed with it), so
	// that what the sandbox writes there never reaches Source and no two
	// sandboxes see each other's writes. Not with ReadOnly.
	Overlay bool
	// Fill fills a volume's mount (Volume set) with what the sandbox's
	// root has at Target, when that is a directory with entries and the
	// volume is empty (nsinit.Mount.Fill), before the mount is made
	// read-only when ReadOnly: the caller sets it for a volume that was
	// never filled; Spec.Filled hears whether it was.
	Fill bool
	// FillLock, with Fill, is the volume's fill lock (volstore.Fill's
	// File): the init holds a copy of it until the mount is made, so
	// that the volume's fill stays locked while the init copies even
	// when the launcher is killed (nsinit.Mount.FillLock). Launch does
	// not close it.
	FillLock *os.File
	// FillRecord, with FillLock, is what the init writes at the start of
	// the fill lock once it filled the volume (volstore.Fill's Record),
	// so that the fill is known when the launcher is killed before it
	// hears of it (nsinit.Mount.FillRecord).
	FillRecord []byte
}

// WaitDelay is how long Cmd.Wait waits, once the command has exited (or
// was killed), for its output streams to end: a process it left behind
// (a background job, `sleep 100 &`) may hold them open for as long as it
// runs. Past it Wait takes what is already in the pipes, stops copying
// and returns; that process's later writes fail (EPIPE). As containerd's
// exec (and so docker exec) waits 2 s for an exec's output, and as
// os/exec's Cmd.WaitDelay.
const WaitDelay = 2 * time.Second

// CmdSpec is what a command runs in a sandbox: the fields of Cmd, and of
// lightbox.Cmd, which embeds it too (one convention for both: Args
// without the program name, TtySize as rows and columns).
type CmdSpec struct {
	// Path is the program: a name looked up in the sandbox's PATH, or a
	// path inside the sandbox.
	Path string
	// Args holds the arguments, without the program name.
	Args []string
	// Env entries are added on top of the sandbox's environment (later
	// entries win); nil adds nothing.
	Env []string
	// Dir is the working directory; "" = the sandbox's.
	Dir string
	// User is "uid[:gid]" or "name[:group]"; "" = the sandbox's.
	User string
	// Stdin, Stdout and Stderr are the process's streams; nil means
	// /dev/null. An *os.File is passed to the process as it is (a
	// terminal goes through a pipe instead, and a directory is refused:
	// the process could reach the host's files from it); anything else
	// through a pipe copied by a goroutine, as os/exec does.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Tty runs the process on a new pty inside the sandbox; Stdin feeds it
	// and Stdout receives its output (Stderr is unused); its environment
	// has TERM=xterm unless it sets TERM. TtySize is the initial window
	// size (rows, columns); see Cmd.Resize.
	Tty     bool
	TtySize [2]uint16
}

// Collected is what Manager.Collect removed.
type Collected struct {
	// Sandboxes are the dead sandboxes removed.
	Sandboxes []string
	// Inits are the lean init programs of other lightbox builds removed
	// (file names in the root, ".init-" and 32 hex digits of the
	// program's sha256): the rule is initbin.RemoveStale's.
	Inits []string
}

// Info describes a sandbox on disk.
type Info struct {
	Name     string `json:"name"`
	Snapshot string `json:"snapshot,omitempty"`
	// Status is StatusRunning, StatusExited or StatusDead.
	Status string `json:"status"`
	// ExitCode is the main command's status when Exited (128+N for
	// signal N; 124 when the timeout ended an idle sandbox).
	ExitCode  int       `json:"exitCode"`
	TimedOut  bool      `json:"timedOut,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	Volumes   []string  `json:"volumes,omitempty"`
	Command   []string  `json:"command,omitempty"`
	// Pid is the init's pid on the host (0 unless running).
	Pid int `json:"pid,omitempty"`
	// Detached: the launcher detached it (Sandbox.Detach); it runs on
	// after its launcher's exit. Set by List only.
	Detached bool `json:"detached,omitempty"`
	// Pooled: launched for a warm pool (Spec.Takeable) and not yet
	// handed out (Sandbox.Unpool). Set by List only.
	Pooled bool `json:"pooled,omitempty"`
	// WritableDir is Spec.WritableDir: the caller removes it once the
	// sandbox is gone.
	WritableDir string `json:"writableDir,omitempty"`
	// Limits says how each limit holds (see LimitsApplied).
	Limits LimitsApplied `json:"limits,omitempty"`
	// Usage is what the sandbox's cgroup counts, nil without one.
	Usage *Usage `json:"usage,omitempty"`
	// OOMKilled: the OOM killer killed a process of the sandbox (read
	// from its cgroup).
	OOMKilled bool `json:"oomKilled,omitempty"`
	// NetworkLost: the sandbox runs, but its user-mode network stack
	// (NetworkAttachment's first pid) has exited: it has no network.
	// Set by List and Info only.
	NetworkLost bool `json:"networkLost,omitempty"`
}

// Sandbox statuses.
const (
	StatusRunning = "running"
	StatusExited  = "exited"
	StatusDead    = "dead"
)

var (
	// ErrCommandNotFound: the command does not exist in the sandbox
	// (the shell's exit code 127).
	ErrCommandNotFound = errors.New("command not found")
	// ErrNotExecutable: the command exists but cannot be executed
	// (exit code 126).
	ErrNotExecutable = errors.New("command not executable")
	// ErrNotRunning: the sandbox's init is not running (it exited or
	// died).
	ErrNotRunning = errors.New("sandbox not running")
	// ErrNoCommand: the sandbox has no main command to wait for.
	ErrNoCommand = errors.New("sandbox has no main command")
	// ErrClosed: the Manager was closed; it launches no more sandboxes.
	ErrClosed = errors.New("the runtime is closed")
)

// ExitError reports a command that exited non-zero or was killed.
type ExitError struct {
	// Code is the exit status, 128+Signal when killed by a signal.
	Code int
	// Signal is the signal that killed the command, 0 if it exited.
	Signal syscall.Signal
	// OOMKilled: the sandbox's cgroup counted an OOM kill while the
	// command ran (the command, or a process it waited for, ran out of
	// memory).
	OOMKilled bool
	// TimedOut: the sandbox's timeout (Spec.Timeout) passed while the
	// command ran, and the sandbox ended it.
	TimedOut bool
	// Destroyed: the sandbox was being destroyed as the command ended
	// (the destroy ended it, most likely).
	Destroyed bool
}

func (e *ExitError) Error() string {
	var msg string
	switch {
	case e.OOMKilled:
		msg = fmt.Sprintf("out of memory (exit status %d)", e.Code)
	case e.Signal != 0:
		msg = "killed by signal " + e.Signal.String()
	default:
		msg = fmt.Sprintf("exit status %d", e.Code)
	}
	switch {
	case e.TimedOut:
		msg = "the sandbox's timeout passed: " + msg
	case e.Destroyed:
		msg = "the sandbox was destroyed: " + msg
	}
	return msg
}

// ExitCode returns the exit code err stands for: 0 for nil, the code of an
// ExitError, 127 and 126 for ErrCommandNotFound and ErrNotExecutable, and
// -1 for any other error.
func ExitCode(err error) int {
	var ee *ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.Code
	case errors.Is(err, ErrCommandNotFound):
		return 127
	case errors.Is(err, ErrNotExecutable):
		return 126
	}
	return -1
}

// Validate checks a spec's shape, touching nothing on disk: the one set of
// rules for a sandbox's options (runc's libcontainer/configs/validate).
// Launch calls it; a caller that does work of its own before Launch
// (taking leases, creating volumes) calls it first, on the spec before it
// resolves the layers and the volumes' paths. Launch then checks what
// only the disk can tell (layers and sources exist) as it opens them.
func (sp *Spec) Validate() error {
	if sp.Name != "" {
		if err := names.Check("sandbox", sp.Name); err != nil {
			return err
		}
	}
	if sp.Hostname != "" && !names.Valid(sp.Hostname) {
		return fmt.Errorf("hostname %q: %w", sp.Hostname, names.ErrInvalid)
	}
	for _, l := range sp.Layers {
		if !filepath.IsAbs(l) {
			return fmt.Errorf("layer %q: not an absolute path", l)
		}
	}
	seen := map[string]bool{}
	for _, m := range sp.Mounts {
		if err := checkTarget(m.Target); err != nil {
			return err
		}
		t := path.Clean(m.Target)
		if seen[t] {
			return fmt.Errorf("mount target %s: given twice", t)
		}
		seen[t] = true
		switch {
		case m.Source == "" && m.Volume == "":
			return fmt.Errorf("mount %s: no source", t)
		case m.Source != "" && !filepath.IsAbs(m.Source):
			return fmt.Errorf("mount %s: source %q is not an absolute path", t, m.Source)
		}
		if m.Volume != "" {
			if err := names.Check("volume", m.Volume); err != nil {
				return fmt.Errorf("mount %s: %w", t, err)
			}
		}
		if m.Overlay && m.ReadOnly {
			return fmt.Errorf("mount %s: copy-on-write (overlay) and read-only: choose one", t)
		}
		if m.Overlay && m.Volume != "" {
			return fmt.Errorf("mount %s: copy-on-write (overlay) is for host paths, not volume %s", t, m.Volume)
		}
		if m.FillLock != nil && !m.Fill {
			return fmt.Errorf("mount %s: a fill lock without Fill", t)
		}
		if len(m.FillRecord) > 0 && m.FillLock == nil {
			return fmt.Errorf("mount %s: a fill record without a fill lock", t)
		}
		if m.Fill && m.Volume == "" {
			return fmt.Errorf("mount %s: only a volume's mount is filled from the image", t)
		}
	}
	if err := checkProcess(sp.Command, sp.Env, sp.Workdir, sp.User); err != nil {
		return err
	}
	switch sp.Network {
	case "", NetworkNone, NetworkHost, NetworkPrivate:
	default:
		return fmt.Errorf("network %q: want private, none or host", sp.Network)
	}
	if len(sp.Ports) > 0 && sp.Network != NetworkPrivate && sp.Network != "" {
		return fmt.Errorf("ports are published only with the private network, not %q", sp.Network)
	}
	for _, p := range sp.Ports {
		if err := p.Validate(); err != nil {
			return err
		}
	}
	if sp.Timeout < 0 {
		return fmt.Errorf("timeout %v: negative", sp.Timeout)
	}
	if err := sp.Limits.validate(); err != nil {
		return err
	}
	for i, f := range sp.Leases {
		if f == nil {
			return fmt.Errorf("lease %d: nil file", i)
		}
	}
	return nil
}

// checkProcess checks what a process is started with, the same for a
// sandbox's main command and defaults (Validate) and for a command
// started in a running sandbox (Cmd.start): an absolute workdir (a
// relative one would be taken from the init's own "/"), KEY=value
// environment entries, and no NUL byte anywhere, which execve cannot
// pass (every command in the sandbox would fail with a bare EINVAL,
// "invalid argument").
func checkProcess(args, env []string, workdir, user string) error {
	if workdir != "" && !path.IsAbs(workdir) {
		return fmt.Errorf("workdir %q: not an absolute path", workdir)
	}
	for _, e := range env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("environment entry %q: want KEY=value", e)
		}
	}
	for _, a := range args {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("command argument %q: contains a NUL byte", a)
		}
	}
	for _, e := range env {
		if strings.IndexByte(e, 0) >= 0 {
			return fmt.Errorf("environment entry %q: contains a NUL byte", e)
		}
	}
	for _, f := range [][2]string{{"workdir", workdir}, {"user", user}} {
		if strings.IndexByte(f[1], 0) >= 0 {
			return fmt.Errorf("%s %q: contains a NUL byte", f[0], f[1])
		}
	}
	return nil
}

// checkPaths checks, at launch, what Validate leaves to the disk: the
// layers are directories and the mount sources exist.
func (sp *Spec) checkPaths() error {
	if len(sp.Layers) == 0 {
		return errors.New("no layers")
	}
	for _, l := range sp.Layers {
		if st, err := os.Stat(l); err != nil {
			return fmt.Errorf("layer: %w", err)
		} else if !st.IsDir() {
			return fmt.Errorf("layer %s: not a directory", l)
		}
	}
	for _, m := range sp.Mounts {
		if m.Source == "" {
			return fmt.Errorf("mount %s: volume %s: no source path", m.Target, m.Volume)
		}
		fi, err := os.Stat(m.Source)
		if err != nil {
			return fmt.Errorf("mount %s: source: %w", m.Target, err)
		}
		if m.Overlay && !fi.IsDir() {
			return fmt.Errorf("mount %s: copy-on-write (overlay) source %s: not a directory", m.Target, m.Source)
		}
	}
	return nil
}

// normalize cleans what Validate accepts unclean and fills the defaults.
func (sp *Spec) normalize() {
	for i := range sp.Mounts {
		sp.Mounts[i].Target = path.Clean(sp.Mounts[i].Target)
	}
	if sp.Workdir != "" {
		sp.Workdir = path.Clean(sp.Workdir)
	}
	if sp.Network == "" {
		sp.Network = NetworkPrivate
	}
	if len(sp.Command) == 0 {
		sp.Command = nil // an empty command is no command: the sandbox idles
	}
}

// checkTarget accepts an absolute path with no ".." element, other than
// the root and, but for a few files, /proc and what is inside it.
func checkTarget(t string) error {
	if !path.IsAbs(t) {
		return fmt.Errorf("mount target %q: not an absolute path", t)
	}
	if slices.Contains(strings.Split(t, "/"), "..") {
		return fmt.Errorf("mount target %q: not a clean path (no ..)", t)
	}
	c := path.Clean(t)
	if c == "/" {
		return fmt.Errorf("mount target %q: cannot mount over the root", t)
	}
	if (c == "/proc" || strings.HasPrefix(c, "/proc/")) && !procTargets[c] {
		// Over the sandbox's own procfs a bind hides it (ps, /proc/self,
		// the masked and read-only paths) or a part of it; runc refuses
		// these too (checkProcMount), but for the files lxcfs stands in
		// for.
		return fmt.Errorf("mount target %q: inside /proc, which is the sandbox's own procfs", t)
	}
	return nil
}

// procTargets are the paths inside /proc a mount may cover: files whose
// contents a tool such as lxcfs makes fit the sandbox (runc's list).
var procTargets = map[string]bool{
	"/proc/cpuinfo": true, "/proc/diskstats": true, "/proc/meminfo": true, "/proc/stat": true,
	"/proc/swaps": true, "/proc/uptime": true, "/proc/loadavg": true, "/proc/slabinfo": true,
	"/proc/net/dev": true, "/proc/sys/kernel/ns_last_pid": true,
}

// ExecError is a command's failure to start or to be waited for in a
// sandbox: "exec in sandbox NAME: Err". A caller whose own message names
// the sandbox already says Err alone (Unwrap).
type ExecError struct {
	Sandbox string
	Err     error
}

func (e *ExecError) Error() string { return "exec in sandbox " + e.Sandbox + ": " + e.Err.Error() }

func (e *ExecError) Unwrap() error { return e.Err }

// Unnamed returns err without the ExecError of sandbox name at its top,
// for a message that names the sandbox already.
func Unnamed(err error, name string) error {
	if e, ok := err.(*ExecError); ok && e.Sandbox == name {
		return e.Err
	}
	return err
}
