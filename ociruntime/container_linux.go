package ociruntime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/beamhop/lightbox/internal/reexec"
	"github.com/beamhop/lightbox/nsinit"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Runtime is lightbox-runc's state directory: one subdirectory per
// container. It is safe for concurrent use; several processes may use
// one root at once (each container's directory is made with one mkdir).
type Runtime struct {
	// Root is --root; "" = /run/lightbox-runc as root, else (an
	// unprivileged user, or root of a user namespace)
	// $XDG_RUNTIME_DIR/lightbox-runc.
	Root string
	// Logger gets the warnings (a failing poststart or poststop hook);
	// nil discards them.
	Logger *slog.Logger
}

func (r *Runtime) warn(msg string, err error) {
	if r.Logger != nil {
		r.Logger.Warn(msg, "err", err)
	}
}

// ErrNotExist is returned for an id with no container.
var ErrNotExist = errors.New("container does not exist")

// ErrExist is returned by create for an id already in use.
var ErrExist = errors.New("container already exists")

// Compiled on first use: only the lightbox-runc role needs it.
var validID = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_+.-]*$`) })

func (r *Runtime) root() string {
	if r.Root != "" {
		return r.Root
	}
	// Rootless, or root of a user namespace (rootless podman runs its
	// runtime as that), where /run is not ours.
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && !initialUserNS() {
		return filepath.Join(d, "lightbox-runc")
	}
	return "/run/lightbox-runc"
}

func (r *Runtime) dir(id string) (string, error) {
	if !validID().MatchString(id) {
		return "", fmt.Errorf("container id %q: invalid (want [a-zA-Z0-9][a-zA-Z0-9_+.-]*)", id)
	}
	return filepath.Join(r.root(), id), nil
}

// record is a container's state.json.
type record struct {
	ID          string            `json:"id"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Pid         int               `json:"pid"`
	PidStart    uint64            `json:"pidStart"`
	Ready       bool              `json:"ready"` // created: the init holds the process
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Cgroup      *cgroupRecord     `json:"cgroup,omitempty"`
	Hooks       *specs.Hooks      `json:"hooks,omitempty"`
	// Seccomp is the compiled filter exec'd processes get too.
	Seccomp []unix.SockFilter `json:"seccomp,omitempty"`
	// Capabilities are the process's, which an exec'd process whose
	// process.json gives none gets (as runc does).
	Capabilities *specs.LinuxCapabilities `json:"capabilities,omitempty"`
}

func readRecord(dir string) (*record, error) {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("container %s: %w", filepath.Base(dir), ErrNotExist)
	}
	if err != nil {
		return nil, err
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("container %s: state: %w", filepath.Base(dir), err)
	}
	return &rec, nil
}

func writeRecord(dir string, rec *record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "state.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "state.json"))
}

// pidStart is the start time of pid (field 22 of /proc/pid/stat) and
// whether it is a zombie.
func pidStart(pid int) (uint64, bool, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false, errors.New("bad stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, false, errors.New("bad stat")
	}
	n, err := strconv.ParseUint(f[19], 10, 64)
	return n, f[0] == "Z" || f[0] == "X", err
}

// alive reports whether the record's init still runs.
func (rec *record) alive() bool {
	if rec.Pid <= 0 {
		return false
	}
	st, zombie, err := pidStart(rec.Pid)
	return err == nil && st == rec.PidStart && !zombie
}

// Status values.
const (
	Creating = "creating"
	Created  = "created"
	Running  = "running"
	Paused   = "paused"
	Stopped  = "stopped"
)

func (r *Runtime) status(dir string, rec *record) string {
	switch {
	case !rec.alive():
		if !rec.Ready && rec.Pid == 0 {
			return Creating
		}
		return Stopped
	case !rec.Ready:
		return Creating
	}
	if _, err := os.Lstat(filepath.Join(dir, "exec.fifo")); err == nil {
		return Created
	}
	if c, err := loadCgroup(rec.Cgroup); err == nil && c != nil && c.frozen() {
		return Paused
	}
	return Running
}

// State is the OCI state of the container id.
func (r *Runtime) State(id string) (*specs.State, error) {
	dir, err := r.dir(id)
	if err != nil {
		return nil, err
	}
	rec, err := readRecord(dir)
	if err != nil {
		return nil, err
	}
	st := &specs.State{Version: specs.Version, ID: id, Status: specs.ContainerState(r.status(dir, rec)), Bundle: rec.Bundle, Annotations: rec.Annotations}
	if st.Status != Stopped {
		st.Pid = rec.Pid
	}
	return st, nil
}

// CreateOptions are create's (and run's) flags.
type CreateOptions struct {
	PidFile       string
	ConsoleSocket string
	PreserveFDs   int
	// Stdin, Stdout, Stderr are the process's stdio (nil = this
	// process's own).
	Stdin, Stdout, Stderr *os.File
}

// Create creates the container id from bundle: the init is set up and
// holds the process until Start. It returns the init's process (a child
// of this one) for run to wait on.
func (r *Runtime) Create(ctx context.Context, id, bundle string, o CreateOptions) (*os.Process, error) {
	dir, err := r.dir(id)
	if err != nil {
		return nil, err
	}
	if bundle == "" {
		bundle = "."
	}
	bundle, err = filepath.Abs(bundle)
	if err != nil {
		return nil, err
	}
	spec, err := loadSpec(bundle)
	if err != nil {
		return nil, err
	}
	p, err := translate(spec, bundle)
	if err != nil {
		return nil, err
	}
	if p.oci.Process.Terminal && o.ConsoleSocket == "" {
		return nil, errors.New("process.terminal is set: --console-socket is required")
	}
	if !p.oci.Process.Terminal && o.ConsoleSocket != "" {
		return nil, errors.New("--console-socket given but process.terminal is not set")
	}
	if err := os.MkdirAll(r.root(), 0o711); err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o711); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("container %s: %w", id, ErrExist)
		}
		return nil, err
	}
	rec := &record{ID: id, Bundle: bundle, Rootfs: p.oci.Rootfs, Created: time.Now().UTC(), Annotations: spec.Annotations, Hooks: spec.Hooks, Seccomp: p.oci.Seccomp, Capabilities: spec.Process.Capabilities}
	proc, err := r.create(ctx, dir, rec, p, o)
	if err != nil {
		// Nothing half-done: the init (if any) and the cgroup go.
		if cerr := r.cleanup(dir, rec); cerr != nil {
			return nil, fmt.Errorf("%w (and its clean-up: %w)", err, cerr)
		}
		return nil, err
	}
	return proc, nil
}

func (r *Runtime) create(ctx context.Context, dir string, rec *record, p *plan, o CreateOptions) (*os.Process, error) {
	// The cgroup is recorded before it is made, so that delete finds it
	// whatever happens next.
	rec.Cgroup = &cgroupRecord{Path: cgroupPath(p.cgroup, rec.ID)}
	if err := writeRecord(dir, rec); err != nil {
		return nil, err
	}
	cgRec, cg, err := newCgroup(rec.Cgroup.Path, p.res)
	if err != nil {
		return nil, err
	}
	rec.Cgroup = cgRec
	if err := writeRecord(dir, rec); err != nil {
		return nil, err
	}
	fifo := filepath.Join(dir, "exec.fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		return nil, &os.PathError{Op: "mkfifo", Path: fifo, Err: err}
	}
	if p.userNS {
		// The init opens it as the container's root.
		if err := os.Chown(fifo, int(hostID(p.uidMap, 0)), int(hostID(p.gidMap, 0))); err != nil {
			return nil, err
		}
	}
	p.oci.ExecFifo = fifo
	fifoFD, err := os.OpenFile(fifo, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer func() { _ = fifoFD.Close() }() // O_PATH: nothing written through it; the init has its own

	ln, err := nsinit.ListenSock(dir)
	if err != nil {
		return nil, err
	}
	defer func() { _ = ln.Close() }() // a listening socket, no data; the init has its own
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer func() { _ = cfgR.Close() }() // pipe end: nothing buffered to lose
	defer func() { _ = cfgW.Close() }() // pipe end: nothing buffered to lose
	repR, repW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer func() { _ = repR.Close() }() // pipe end: nothing buffered to lose
	defer func() { _ = repW.Close() }() // pipe end: nothing buffered to lose

	var extra []*os.File
	for i := 0; i < o.PreserveFDs; i++ {
		extra = append(extra, os.NewFile(uintptr(3+i), "preserved"))
	}
	p.oci.PreserveFDs = o.PreserveFDs
	cfgFD := 3 + len(extra)
	extra = append(extra, cfgR, repW, ln)
	p.oci.ExecFifoFD = 3 + len(extra)
	extra = append(extra, fifoFD)
	cfg := nsinit.Config{Version: nsinit.Version, Name: rec.ID, FDs: nsinit.FDs{Report: cfgFD + 1, Liveness: -1, Listener: cfgFD + 2, Lock: -1, Exe: -1}}
	if cg != nil {
		tasks, max, err := cg.spawnFiles()
		if err != nil {
			return nil, fmt.Errorf("the container's pids cgroup: %w", err)
		}
		if tasks != nil {
			defer func() { _ = tasks.Close() }() // written by the init only, through its own copy
			defer func() { _ = max.Close() }()   // written by the init only, through its own copy
			cfg.FDs.Workload = 3 + len(extra)
			p.oci.PidsMaxFD = 4 + len(extra)
			extra = append(extra, tasks, max)
		}
	}
	if o.ConsoleSocket != "" {
		c, err := net.Dial("unix", o.ConsoleSocket)
		if err != nil {
			return nil, fmt.Errorf("console socket: %w", err)
		}
		cf, err := c.(*net.UnixConn).File()
		_ = c.Close() // nothing written through it; cf is a dup of the same socket
		if err != nil {
			return nil, fmt.Errorf("console socket: %w", err)
		}
		defer func() { _ = cf.Close() }() // nothing written through it; the init has its own
		p.oci.Console = 3 + len(extra)
		extra = append(extra, cf)
	}
	cfg.OCI = &p.oci

	cmd := exec.Command("/proc/self/exe", strconv.Itoa(cfgFD))
	cmd.Args[0] = "lightbox-init"
	cmd.Env = []string{reexec.EnvRole + "=init", nsinit.EnvOCIInit + "=1", "GOMAXPROCS=1", "GOGC=off"}
	cmd.ExtraFiles = extra
	cmd.Stdin, cmd.Stdout, cmd.Stderr = orStd(o.Stdin, os.Stdin), orStd(o.Stdout, os.Stdout), orStd(o.Stderr, os.Stderr)
	// Not its cgroup namespace: the init unshares it once in its cgroup
	// (nsinit.OCIConfig.CgroupNS).
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: p.clone &^ unix.CLONE_NEWCGROUP}
	if p.userNS {
		for _, m := range p.uidMap {
			cmd.SysProcAttr.UidMappings = append(cmd.SysProcAttr.UidMappings, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
		}
		for _, m := range p.gidMap {
			cmd.SysProcAttr.GidMappings = append(cmd.SysProcAttr.GidMappings, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
		}
		// An unprivileged parent may write a gid map only with setgroups denied.
		cmd.SysProcAttr.GidMappingsEnableSetgroups = os.Geteuid() == 0
		// The init is the container's root: without a setuid it keeps
		// this process's ids, which the map need not hold (unmapped, it
		// would exec with no capabilities in its namespace).
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: os.Geteuid() != 0}
	}
	if err := startJoined(cmd, p.join); err != nil {
		return nil, fmt.Errorf("start init: %w", err)
	}
	pid := cmd.Process.Pid
	rec.Pid = pid
	// A pid gone already leaves PidStart 0: the report wait below fails.
	rec.PidStart, _, _ = pidStart(pid)
	_ = cfgR.Close() // pipe end: nothing buffered to lose
	_ = repW.Close() // pipe end: nothing buffered to lose
	fail := func(err error) (*os.Process, error) {
		_ = cmd.Process.Kill()    // our child: fails only when it is gone already
		_, _ = cmd.Process.Wait() // reaps the killed child: its status tells nothing
		return nil, err
	}
	if err := writeRecord(dir, rec); err != nil {
		return fail(err)
	}
	if cg != nil {
		// The init waits for its config: it is in its cgroup before it
		// does anything.
		if err := cg.add(pid); err != nil {
			return fail(fmt.Errorf("add the init to its cgroup: %w", err))
		}
	}
	if err := nsinit.WriteConfig(cfgW, &cfg); err != nil {
		return fail(fmt.Errorf("send config to init: %w", err))
	}
	_ = cfgW.Close() // pipe end: nothing buffered to lose
	if err := nsinit.WaitReport(ctx, repR); err != nil {
		if errors.Is(err, nsinit.ErrNoReport) {
			err = errors.New("init exited during setup (see its stderr)")
		}
		return fail(err)
	}
	if cg != nil {
		if err := cg.placeInit(pid); err != nil {
			return fail(err)
		}
	}
	rec.Ready = true
	if err := writeRecord(dir, rec); err != nil {
		return fail(err)
	}
	if o.PidFile != "" {
		if err := writePidFile(o.PidFile, pid); err != nil {
			return fail(err)
		}
	}
	if h := rec.Hooks; h != nil {
		st, _ := r.State(rec.ID)
		for _, hk := range append(append([]specs.Hook{}, h.Prestart...), h.CreateRuntime...) { //nolint:staticcheck // prestart is deprecated but used
			if err := runHook(ctx, hk, st); err != nil {
				return fail(fmt.Errorf("createRuntime hook: %w", err))
			}
		}
	}
	return cmd.Process, nil
}

func orStd(f, def *os.File) *os.File {
	if f != nil {
		return f
	}
	return def
}

// startJoined starts cmd from a locked thread that first entered the
// namespaces in join (network, ipc, uts, pid, cgroup: each is per thread,
// and the child takes those of the thread that forks it). The thread is
// left to die with its goroutine.
func startJoined(cmd *exec.Cmd, join map[specs.LinuxNamespaceType]string) error {
	if len(join) == 0 {
		return cmd.Start()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread is in the container's namespaces
		for t, p := range join {
			fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				errc <- fmt.Errorf("join %s namespace: %w", t, &os.PathError{Op: "open", Path: p, Err: err})
				return
			}
			err = unix.Setns(fd, int(nsFlags[t]))
			unix.Close(fd)
			if err != nil {
				errc <- fmt.Errorf("join %s namespace %s: setns: %w", t, p, err)
				return
			}
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// writePidFile writes pid atomically (engines poll for the file).
func writePidFile(path string, pid int) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	return nil
}

// runHook runs h with the state on its stdin.
func runHook(ctx context.Context, h specs.Hook, st *specs.State) error {
	if h.Timeout != nil && *h.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(*h.Timeout)*time.Second)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, h.Path)
	if len(h.Args) > 0 {
		cmd.Args = h.Args
	}
	cmd.Env = h.Env
	b, _ := json.Marshal(st)
	cmd.Stdin = bytes.NewReader(b)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", h.Path, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// Start releases the process of a created container.
func (r *Runtime) Start(ctx context.Context, id string) error {
	dir, err := r.dir(id)
	if err != nil {
		return err
	}
	rec, err := readRecord(dir)
	if err != nil {
		return err
	}
	if s := r.status(dir, rec); s != Created {
		return fmt.Errorf("container %s is %s, not created: cannot start", id, s)
	}
	fifo := filepath.Join(dir, "exec.fifo")
	fd, err := unix.Open(fifo, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: fifo, Err: err}
	}
	defer unix.Close(fd)
	// Unlinking the fifo starts the container: the init waits for its
	// name to go (the init of an older lightbox went on at our open
	// instead), and the name is what makes the container "created". One
	// step, so that a start killed at any moment leaves a state that
	// says what happened: before it, created and not started; after it,
	// started. Then the init tells us through the fifo, held open here,
	// once the process is exec'd.
	if err := os.Remove(fifo); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("container %s is being started by another start", id)
	} else if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 100)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("start: poll exec fifo: %w", err)
		}
		if n > 0 && fds[0].Revents&unix.POLLIN != 0 {
			var b [1]byte
			if n, _ := unix.Read(fd, b[:]); n == 1 {
				break
			}
		}
		if !rec.alive() {
			return fmt.Errorf("start: container %s: the init exited", id)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("start: container %s: the init did not take the start", id)
		}
	}
	// The init closes its end once the process is exec'd: poststart
	// hooks run after the program started, as the spec orders.
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, 100); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("start: poll exec fifo: %w", err)
		}
		var b [1]byte
		if n, err := unix.Read(fd, b[:]); n == 0 && err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("start: container %s: the process did not start", id)
		}
	}
	if rec.Hooks != nil {
		st, _ := r.State(id)
		for _, h := range rec.Hooks.Poststart {
			if err := runHook(ctx, h, st); err != nil {
				// The process runs: a failing poststart hook is a
				// warning, and the other hooks still run (runtime
				// spec, lifecycle step 7).
				r.warn("poststart hook failed", err)
			}
		}
	}
	return nil
}

// Kill sends sig to the container's init (which forwards it to the
// process), or with all to every process of the container.
func (r *Runtime) Kill(id string, sig syscall.Signal, all bool) error {
	dir, err := r.dir(id)
	if err != nil {
		return err
	}
	rec, err := readRecord(dir)
	if err != nil {
		return err
	}
	s := r.status(dir, rec)
	if s == Stopped || s == Creating && !rec.alive() {
		return fmt.Errorf("container %s: not running", id)
	}
	if all {
		pids, err := r.pids(rec)
		if err != nil && !errors.Is(err, os.ErrNotExist) { // ErrNotExist: the init is gone, its pid namespace with it
			return fmt.Errorf("container %s: list its processes: %w", id, err)
		}
		for _, p := range pids {
			if err := unix.Kill(p, sig); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("kill %d: %w", p, err)
			}
		}
	}
	if err := unix.Kill(rec.Pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill %d: %w", rec.Pid, err)
	}
	return nil
}

// pids are the host pids of the container's processes: from its cgroup,
// else every process in the init's pid namespace.
func (r *Runtime) pids(rec *record) ([]int, error) {
	if c, err := loadCgroup(rec.Cgroup); err == nil && c != nil {
		if ps, err := c.pids(); err == nil {
			return ps, nil
		}
	}
	if !rec.alive() {
		return nil, nil
	}
	want, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", rec.Pid))
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", n)); err == nil && l == want {
			out = append(out, n)
		}
	}
	return out, nil
}

// Delete removes a stopped (or created) container; with force, a running
// one is killed first, and an id with no container is not an error.
func (r *Runtime) Delete(ctx context.Context, id string, force bool) error {
	dir, err := r.dir(id)
	if err != nil {
		return err
	}
	rec, err := readRecord(dir)
	if err != nil {
		if force && errors.Is(err, ErrNotExist) {
			// Nothing is left to delete, which is what --force asks:
			// runc and crun succeed too, and engines clean up a failed
			// create with it (podman logs its failure as an error).
			return os.RemoveAll(dir) // a create killed before its state was written; none: nil
		}
		return err
	}
	switch s := r.status(dir, rec); s {
	case Stopped, Created:
	case Creating:
		if !force && rec.alive() {
			return fmt.Errorf("container %s is being created: use --force", id)
		}
	default:
		if !force {
			return fmt.Errorf("container %s is %s: stop it first or use --force", id, s)
		}
	}
	if err := r.cleanup(dir, rec); err != nil {
		return err
	}
	if rec.Hooks != nil && len(rec.Hooks.Poststop) > 0 {
		st := &specs.State{Version: specs.Version, ID: id, Status: Stopped, Bundle: rec.Bundle, Annotations: rec.Annotations}
		for _, h := range rec.Hooks.Poststop {
			if err := runHook(ctx, h, st); err != nil {
				r.warn("poststop hook failed", err)
			}
		}
	}
	return nil
}

// cleanup kills what is left of the container and removes its cgroup and
// directory. When a process will not die or the cgroup will not go, it
// says so and keeps the directory, whose record lets another delete try
// again.
func (r *Runtime) cleanup(dir string, rec *record) error {
	var errs []error
	// A cgroup that does not load was never made, or is gone already.
	c, _ := loadCgroup(rec.Cgroup)
	var thawErr error
	if c != nil {
		thawErr = c.thaw() // a frozen process cannot die: reported with the cgroup if it stays
	}
	if rec.alive() {
		if err := unix.Kill(rec.Pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("kill the init %d: %w", rec.Pid, err))
		}
		waitGone(rec, 10*time.Second)
		if rec.alive() {
			errs = append(errs, fmt.Errorf("the init %d is still alive 10 s after SIGKILL", rec.Pid))
		}
	}
	if c != nil {
		// The init's death takes its pid namespace with it; the
		// cgroup empties a moment later.
		deadline := time.Now().Add(5 * time.Second)
		for {
			ps, _ := c.pids() // a process not listed keeps the cgroup, and that is reported
			for _, p := range ps {
				_ = unix.Kill(p, unix.SIGKILL) // one that does not die keeps the cgroup, and that is reported
			}
			err := c.remove()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				if thawErr != nil {
					err = fmt.Errorf("%w (thaw: %w)", err, thawErr)
				}
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", rec.Cgroup.Path, err))
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("container %s: %w; its state is kept for another delete", rec.ID, errors.Join(errs...))
	}
	// The record goes last: a removal that fails leaves it for another
	// delete.
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	for _, e := range ents {
		if e.Name() != "state.json" {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err == nil && len(errs) == 0 {
		err = os.RemoveAll(dir)
	}
	if err != nil || len(errs) > 0 {
		return fmt.Errorf("container %s: remove its state: %w", rec.ID, errors.Join(append(errs, err)...))
	}
	return nil
}

// waitGone waits until the init is dead (a zombie counts: its reaper is
// the engine).
func waitGone(rec *record, d time.Duration) {
	deadline := time.Now().Add(d)
	for rec.alive() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// List returns the states of every container under the root.
func (r *Runtime) List() ([]*specs.State, error) {
	ents, err := os.ReadDir(r.root())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*specs.State
	for _, e := range ents {
		if st, err := r.State(e.Name()); err == nil {
			out = append(out, st)
		}
	}
	return out, nil
}
