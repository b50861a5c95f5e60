package nsinit

import (
	"errors"
	"fmt"
	"github.com/beamhop/lightbox/internal/environ"
	"net"
	"os"
	"os/signal"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/beamhop/lightbox/internal/sys"
	"github.com/beamhop/lightbox/internal/sys/seccomp"
	"golang.org/x/sys/unix"
)

func init() {
	if os.Getenv(EnvOCIInit) == "1" {
		// Still the main thread: package initialization runs locked to
		// it. Locked, it never runs another goroutine, and the threads
		// the Go runtime makes while it runs are made by its template
		// thread, not cloned from it: none is born in the container's
		// pids cgroup, where the runtime leaves it (see pidsCgroup).
		runtime.LockOSThread()
	}
}

// ociMain is the init of an OCI container (see OCIConfig). It never
// returns.
func ociMain(cfg *Config, report *os.File) {
	oc := cfg.OCI
	// Signals before the process starts end the init as their default
	// action would; after, they are forwarded to the process.
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs)
	r := newReaper()
	fifo := oc.ExecFifoFD
	unix.CloseOnExec(fifo)
	if oc.CgroupNS {
		// On the main thread (locked), which mounts /sys/fs/cgroup.
		if err := unshareCgroupNS(); err != nil {
			fatal(report, fmt.Errorf("init: %w", err))
		}
		fd, err := unix.Open("/proc/thread-self/ns/cgroup", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			fatal(report, fmt.Errorf("init: %w", &os.PathError{Op: "open", Path: "/proc/thread-self/ns/cgroup", Err: err}))
		}
		ociCgroupNS = fd
	}
	if err := ociSetup(oc); err != nil {
		fatal(report, err)
	}
	p := &oc.Process
	files := []uintptr{0, 1, 2}
	for i := 0; i < oc.PreserveFDs; i++ {
		files = append(files, uintptr(3+i))
	}
	if p.Terminal {
		slave, err := ociConsole(oc.Console, p.Rows, p.Cols)
		if err != nil {
			fatal(report, fmt.Errorf("init: console: %w", err))
		}
		files[0], files[1], files[2] = slave.Fd(), slave.Fd(), slave.Fd()
		// The init's own stdio becomes the terminal too, as runc's init's
		// does: it kept create's, and containerd's runc shim reads
		// create's output to its end before it takes the pty master, so
		// ctr run -t hung there (the init holding the pipe's write end),
		// never to start the container.
		for fd := 0; fd < 3; fd++ {
			if err := unix.Dup3(int(slave.Fd()), fd, 0); err != nil {
				fatal(report, fmt.Errorf("init: console: stdio %d: %w", fd, err))
			}
		}
	}
	if oc.Console >= 0 {
		unix.Close(oc.Console)
	}
	env := ociEnv(p)
	argv0, err := lookPath(p.Args[0], p.Cwd, env)
	if err != nil {
		fatal(report, fmt.Errorf("init: %w", err))
	}
	if err := applyProcessLimits(p); err != nil {
		fatal(report, fmt.Errorf("init: %w", err))
	}
	if err := ociFork.setup(p.OOMScoreAdj, nprocOf(p.Rlimits)); err != nil {
		fatal(report, fmt.Errorf("init: %w", err))
	}
	var pids *pidsCgroup
	if oc.PidsMaxFD > 0 && cfg.FDs.Workload > 0 {
		if unix.Gettid() != unix.Getpid() {
			fatal(report, fmt.Errorf("init: started without %s=1: its main thread is not its main goroutine's", EnvOCIInit))
		}
		pids = &pidsCgroup{tasks: cfg.FDs.Workload, max: oc.PidsMaxFD}
	}
	if cfg.FDs.Listener >= 0 {
		lf := os.NewFile(uintptr(cfg.FDs.Listener), "init.sock")
		l, err := net.FileListener(lf)
		_ = lf.Close() // a copy: the listener has its own fd
		if err != nil {
			fatal(report, fmt.Errorf("init: exec socket: %w", err))
		}
		go ociServe(l.(*net.UnixListener), r, oc, pids)
	}
	if err := WriteReport(report, Report{Type: ReportReady}); err != nil {
		// The runtime is gone or gave up: it kills us, as for any init.
		fmt.Fprintln(os.Stderr, "lightbox init: report ready:", err)
	}
	_ = report.Close() // the report pipe's write end: the write was checked above, a pipe buffers nothing of ours

	started := make(chan int, 1)
	go func() {
		main := 0
		for s := range sigs {
			sig := s.(syscall.Signal)
			if sig == unix.SIGCHLD || sig == unix.SIGURG || sig == unix.SIGPIPE {
				continue
			}
			select {
			case main = <-started:
			default:
			}
			if main > 0 {
				_ = unix.Kill(main, sig) // our child: fails only once it has exited
				continue
			}
			switch sig {
			case unix.SIGWINCH, unix.SIGCONT, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU:
			default:
				os.Exit(128 + int(sig))
			}
		}
	}()

	// Hold until start unlinks the fifo: that one step both starts the
	// container and makes it no longer "created" (its state is the
	// fifo's name), so that a start killed at any moment leaves a state
	// that says what happened. (Held on the open for writing, the init
	// went on as soon as a start had opened the fifo, and a start killed
	// before it removed the name left a running container that said
	// "created".)
	if err := waitUnlinked(fifo); err != nil {
		fmt.Fprintf(os.Stderr, "lightbox init: exec fifo: %v\n", err)
		os.Exit(125)
	}
	// The start that unlinked it holds it open for reading, and reads
	// until this end closes once the process is exec'd; a start killed
	// since has no reader left (ENXIO): the container starts anyway.
	w, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fifo), unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err == nil {
		_, _ = unix.Write(w, []byte{0}) // best effort: the runtime waiting on the fifo sees it closed either way
	}
	unix.Close(fifo)

	pid, done, err := spawnOCI(r, p, oc.Seccomp, pids, ociFork.main, limitsOf(nprocOf(p.Rlimits)), argv0, env, files)
	// Start reads until this end closes: the process has been exec'd
	// (or could not be) before start returns and poststart hooks run.
	if w >= 0 {
		unix.Close(w)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "lightbox init: start %s: %v\n", p.Args[0], err)
		if c := execErrorCode(err); c != 0 {
			os.Exit(c)
		}
		os.Exit(125)
	}
	started <- pid
	ws := <-done
	ociExits.pending.Done() // the main process's: its status is ours to exit with
	code, _ := exitCode(ws)
	ociEnd(r)
	os.Exit(code)
}

// ociExits holds the init's exit until every exec'd process that ended
// has had its status sent to its client (see ociEnd).
var ociExits struct {
	// stopping, under the reaper's mu, refuses every later start.
	stopping bool
	// pending counts the started processes (the main one too) whose
	// status is not yet handed on.
	pending sync.WaitGroup
}

// errOCIStopping refuses an exec once the container's process has ended.
var errOCIStopping = errors.New("the container's process has ended")

// ociEnd ends the container's other processes once its main process has
// ended, and returns once each exec'd one's status is sent to its client.
// The kernel would SIGKILL them as the init, PID 1, exits; but an exec'd
// process that ended in the same moment as the main one, its status read
// by the reaper and not yet sent, lost it: the init exited first, and its
// client, seeing the connection close, said 137 (runc's exec waits for
// the process itself and reports its status). So the init does what the
// kernel would first, and exits after: every other process killed and
// reaped, the statuses sent. One that had exited keeps its own status; one
// that was killed says 137, as under runc.
//
// In a pid namespace the container joined the init is not PID 1: the
// namespace's other processes are not the container's to kill, and its
// exec'd processes outlive it, as under runc (their clients say 137).
func ociEnd(r *reaper) {
	r.mu.Lock()
	ociExits.stopping = true
	r.mu.Unlock()
	if unix.Getpid() != 1 {
		return
	}
	_ = unix.Kill(-1, unix.SIGKILL) // PID 1: every other process of its namespace; ESRCH when none is left, which noChildren tells
	<-r.noChildren()
	ociExits.pending.Wait()
}

// waitUnlinked waits until the fifo (an O_PATH descriptor) has no name
// left: unlinking it changes its link count, an IN_ATTRIB event on the
// file itself.
func waitUnlinked(fifo int) error {
	in, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("inotify_init1", err)
	}
	defer unix.Close(in)
	if _, err := unix.InotifyAddWatch(in, "/proc/self/fd/"+strconv.Itoa(fifo), unix.IN_ATTRIB); err != nil {
		return os.NewSyscallError("inotify_add_watch", err)
	}
	buf := make([]byte, 4096)
	for {
		var st unix.Stat_t
		if err := unix.Fstat(fifo, &st); err != nil {
			return os.NewSyscallError("fstat", err)
		}
		if st.Nlink == 0 {
			return nil
		}
		if _, err := unix.Read(in, buf); err != nil && !errors.Is(err, unix.EINTR) {
			return os.NewSyscallError("read inotify", err)
		}
	}
}

// ociEnv is the process's environment, with HOME from the container's
// passwd when it has none (as runc does).
func ociEnv(p *OCIProcess) []string {
	env := slices.Clone(p.Env)
	if _, ok := environ.Lookup(env, "HOME"); !ok {
		home := "/"
		uid := strconv.FormatUint(uint64(p.UID), 10)
		_ = scanDB("/etc/passwd", func(e []string) bool { // unreadable: HOME stays "/", as with no entry
			if len(e) >= 6 && e[2] == uid {
				home = e[5]
				return true
			}
			return false
		})
		env = append(env, "HOME="+home)
	}
	return env
}

// applyProcessLimits sets the process's rlimits and umask on the init
// itself (each is per process and inherited), but RLIMIT_NPROC: the
// init's threads would count against it with the container's root's
// processes (in a user namespace, where the init is not exempt), and
// the Go runtime dies when it cannot make a thread. The process gets
// that one for its fork only (ociFork); its oom_score_adj too.
func applyProcessLimits(p *OCIProcess) error {
	for _, rl := range p.Rlimits {
		if rl.Type == unix.RLIMIT_NPROC {
			continue
		}
		if err := syscall.Setrlimit(rl.Type, &syscall.Rlimit{Cur: rl.Soft, Max: rl.Hard}); err != nil {
			return fmt.Errorf("setrlimit(%d, %d, %d): %w", rl.Type, rl.Soft, rl.Hard, err)
		}
	}
	if p.Umask != nil {
		syscall.Umask(int(*p.Umask))
	}
	return nil
}

// nprocOf is the RLIMIT_NPROC of rls, nil if none.
func nprocOf(rls []OCIRlimit) *OCIRlimit {
	for i := range rls {
		if rls[i].Type == unix.RLIMIT_NPROC {
			return &rls[i]
		}
	}
	return nil
}

// execLimits are the rlimits an exec's process p gets after its fork:
// RLIMIT_NPROC, its own or else the container's (main: the container's
// process), which the init does not have for it to inherit (see
// applyProcessLimits), and each of its own that the init's (the
// container's, inherited) is not already.
func execLimits(p, main *OCIProcess) []OCIRlimit {
	var out []OCIRlimit
	nproc := nprocOf(p.Rlimits)
	if nproc == nil {
		nproc = nprocOf(main.Rlimits)
	}
	if nproc != nil {
		out = append(out, *nproc)
	}
	for _, rl := range p.Rlimits {
		if rl.Type == unix.RLIMIT_NPROC {
			continue
		}
		var cur unix.Rlimit
		if unix.Getrlimit(int(rl.Type), &cur) == nil && cur.Cur == rl.Soft && cur.Max == rl.Hard {
			continue // inherited at the fork
		}
		out = append(out, rl)
	}
	return out
}

// limitsOf is nil, or the one rlimit *rl.
func limitsOf(rl *OCIRlimit) []OCIRlimit {
	if rl == nil {
		return nil
	}
	return []OCIRlimit{*rl}
}

// ociFork is how the init gives a process what it must not keep itself.
//
// RLIMIT_NPROC: the init's threads count with the processes of the
// container's root (in a user namespace, where the init is not
// exempt), and the Go runtime dies when it cannot make a thread: a fork
// burst at the limit (rootless, where v1 gives no pids cgroup) killed
// the init and the container with it. The init does not take it: it is
// set on the process right after its fork (prlimit), before the start
// or the exec returns. Go's ForkExec gives no moment between the fork
// and the exec to set it in the child, so a program that forks in its
// first microseconds can start children without it, and one that reads
// its own limits at once may see the init's. Taken for the fork only,
// the init died of it instead: a thread the Go runtime made then, with
// the container at its limit (8 execs at once, rootless). Its threads
// count for the container's root still: the processes get the limit
// less the init's threads (about ten).
//
// oom_score_adj: the processes' is the spec's (process.oomScoreAdj, an
// exec's own), else the one the init started with, as runc's get. The
// init's own is as low as it may go: -1000, where the OOM killer never
// takes it, when it is privileged (CAP_SYS_RESOURCE: as root with no
// user namespace, on a host whose root has it; this machine's has not)
// or its oom_score_adj_min allows it; else the one it started with. It
// used to take the process's (podman --oom-score-adj 300 made it a
// candidate as good as the processes), and at the same score the OOM
// killer took the largest, the init, when the processes held their
// memory where no process's RSS shows it (tmpfs): the container died of
// it, with the init's status, not theirs. A child takes its parent's
// score at the fork: the init is at the process's for the fork (its
// microseconds are the window in which an OOM sees the init there), and
// back. Written with privilege, the process's score is also its floor
// (oom_score_adj_min), as runc's is. Without the privilege a process may
// lower its score to the init's: that is left.
var ociFork forkState

type forkState struct {
	mu   sync.Mutex // held across a fork
	fd   int        // /proc/self/oom_score_adj, opened before any seccomp filter
	own  int        // the init's score between forks
	main int        // the container's process's
}

// setup sets the init's own score as low as it may be, and checks that
// the process's (spec; nil: the init's at its start) and its nproc
// limit (nil: none) can be set.
func (o *forkState) setup(spec *int, nproc *OCIRlimit) error {
	if nproc != nil {
		var cur unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NPROC, &cur); err != nil {
			return fmt.Errorf("getrlimit(RLIMIT_NPROC): %w", err)
		}
		if nproc.Soft > nproc.Hard || nproc.Hard > cur.Max {
			return fmt.Errorf("setrlimit(%d, %d, %d): %w", nproc.Type, nproc.Soft, nproc.Hard, unix.EPERM)
		}
	}
	fd, err := unix.Open("/proc/self/oom_score_adj", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: "/proc/self/oom_score_adj", Err: err}
	}
	o.fd = fd
	b := make([]byte, 16)
	n, err := unix.Pread(fd, b, 0)
	if err != nil {
		return &os.PathError{Op: "read", Path: "/proc/self/oom_score_adj", Err: err}
	}
	if o.own, err = strconv.Atoi(strings.TrimSpace(string(b[:n]))); err != nil {
		return fmt.Errorf("oom_score_adj %q: %w", b[:n], err)
	}
	o.main = o.own
	if spec != nil {
		o.main = *spec
	}
	// The process's score, once: the error the spec's deserves (a
	// lower one than this process's needs privilege) comes now, not at
	// start.
	if err := o.set(o.main); err != nil {
		return err
	}
	if o.set(-1000) == nil {
		o.own = -1000
		return nil
	}
	return o.set(o.own)
}

func (o *forkState) set(score int) error {
	if _, err := unix.Pwrite(o.fd, strconv.AppendInt(nil, int64(score), 10), 0); err != nil {
		return fmt.Errorf("oom_score_adj %d: %w", score, err)
	}
	return nil
}

// forkAs runs fork (a ForkExec) with the init at score, so that the
// child is born with it, and puts the init's own back; then it sets
// limits (RLIMIT_NPROC, an exec's own rlimits) on the child as uid:gid,
// the child's ids: prlimit of another user's process needs
// CAP_SYS_RESOURCE, which root may lack (every podman exec -u 1000 wrote
// "rlimit 7: operation not permitted" in the container's log when the
// init set them as itself). Called on a locked thread that dies (or
// never forks again) after: it ends as uid:gid.
func (o *forkState) forkAs(score int, limits []OCIRlimit, uid, gid uint32, fork func() (int, error)) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if score != o.own {
		if err := o.set(score); err != nil {
			return 0, err
		}
	}
	pid, err := fork()
	if score != o.own {
		if rerr := o.set(o.own); rerr != nil {
			// Not expected (it was the init's a moment ago): said, the
			// init going on at the process's.
			fmt.Fprintf(os.Stderr, "lightbox init: put back its own after a fork: %v\n", rerr)
		}
	}
	if err != nil || len(limits) == 0 {
		return pid, err
	}
	err = setThreadIDs(uid, gid)
	for _, rl := range limits {
		if err != nil {
			break
		}
		err = unix.Prlimit(pid, rl.Type, &unix.Rlimit{Cur: rl.Soft, Max: rl.Hard}, nil)
		if errors.Is(err, unix.ESRCH) {
			return pid, nil // it has exited already: its status follows
		} else if err != nil {
			err = fmt.Errorf("setrlimit(%d, %d, %d): %w", rl.Type, rl.Soft, rl.Hard, err)
		}
	}
	if err != nil {
		_ = unix.Kill(pid, unix.SIGKILL) // our child, never to run without its limits: fails only once it has exited
	}
	return pid, err
}

// setThreadIDs sets this thread's (only: raw system calls, not Go's
// for every thread) real, effective and saved ids to uid:gid.
func setThreadIDs(uid, gid uint32) error {
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
		return fmt.Errorf("setresgid(%d) of the forking thread: %w", gid, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
		return fmt.Errorf("setresuid(%d) of the forking thread: %w", uid, e)
	}
	return nil
}

// ociSetup mounts the container's root and everything on it, then pivots.
func ociSetup(oc *OCIConfig) error {
	prop := uintptr(unix.MS_REC | unix.MS_PRIVATE)
	if oc.Propagation == "slave" || oc.Propagation == "rslave" {
		prop = unix.MS_REC | unix.MS_SLAVE
	}
	if err := sys.Mount("", "/", "", prop, ""); err != nil {
		return fmt.Errorf("root propagation: %w", err)
	}
	// pivot_root needs the root to be a mount: bind it onto itself.
	mfd, err := sys.OpenTree(unix.AT_FDCWD, oc.Rootfs, unix.OPEN_TREE_CLONE|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("bind root: %w", err)
	}
	t, err := sys.Openat(unix.AT_FDCWD, oc.Rootfs, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		unix.Close(mfd)
		return fmt.Errorf("bind root: %w", err)
	}
	err = sys.MoveMount(mfd, t, oc.Rootfs)
	unix.Close(mfd)
	unix.Close(t)
	if err != nil {
		return fmt.Errorf("bind root: %w", err)
	}
	root, err := sys.Openat(unix.AT_FDCWD, oc.Rootfs, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("open root: %w", err)
	}
	defer unix.Close(root)
	for _, m := range oc.Mounts {
		if err := ociMount(root, m); err != nil {
			return fmt.Errorf("mount %s (%s): %w", m.Destination, m.Type, err)
		}
	}
	if err := ociDevices(root, oc); err != nil {
		return fmt.Errorf("devices: %w", err)
	}
	if c := oc.Process.Cwd; c != "" {
		fd, err := ensure(root, path.Clean(c), true)
		if err != nil {
			return fmt.Errorf("cwd %s: %w", c, err)
		}
		unix.Close(fd)
	}
	for k, v := range oc.Sysctl {
		p := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
		fd, err := sys.OpenInRoot(root, p, unix.O_WRONLY|unix.O_TRUNC, 0)
		if err == nil {
			_, err = unix.Write(fd, []byte(v))
			unix.Close(fd)
		}
		if err != nil {
			return fmt.Errorf("sysctl %s: %w", k, err)
		}
	}
	for _, p := range oc.ReadonlyPaths {
		if err := ociProtect(root, p, readOnly); err != nil {
			return fmt.Errorf("read-only path %s: %w", p, err)
		}
	}
	for _, p := range oc.MaskedPaths {
		if err := ociProtect(root, p, mask); err != nil {
			return fmt.Errorf("masked path %s: %w", p, err)
		}
	}
	if oc.Hostname != "" {
		if err := unix.Sethostname([]byte(oc.Hostname)); err != nil {
			return fmt.Errorf("sethostname: %w", err)
		}
	}
	if oc.Domainname != "" {
		if err := unix.Setdomainname([]byte(oc.Domainname)); err != nil {
			return fmt.Errorf("setdomainname: %w", err)
		}
	}
	if err := pivot(root); err != nil {
		return err
	}
	if oc.RootReadonly {
		if err := sys.SetAttr(unix.AT_FDCWD, unix.MOUNT_ATTR_RDONLY, 0, false, "/"); err != nil {
			return fmt.Errorf("read-only root: %w", err)
		}
	}
	switch oc.Propagation {
	case "shared", "rshared":
		// A peer group of the container's own: nothing propagates back
		// to the host, whose mounts were made private above.
		if err := sys.Mount("", "/", "", unix.MS_REC|unix.MS_SHARED, ""); err != nil {
			return fmt.Errorf("root propagation: %w", err)
		}
	case "unbindable", "runbindable":
		if err := sys.Mount("", "/", "", unix.MS_REC|unix.MS_UNBINDABLE, ""); err != nil {
			return fmt.Errorf("root propagation: %w", err)
		}
	}
	return nil
}

// ociProtect applies how (readOnly or mask) to p inside root; a p the
// root lacks is skipped, as runc does.
func ociProtect(root int, p string, how func(target int, p string, dir bool) error) error {
	fd, err := sys.OpenInRoot(root, p, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "stat", Path: p, Err: err}
	}
	return how(fd, p, st.Mode&unix.S_IFMT == unix.S_IFDIR)
}

// ociMount carries out one mount of the config, its target resolved
// inside root.
func ociMount(root int, m OCIMount) error {
	dst := path.Clean(m.Destination)
	var mfd int
	var err error
	dir := true
	switch {
	case m.Bind:
		var st unix.Stat_t
		if err := unix.Stat(m.Source, &st); err != nil {
			return fmt.Errorf("source: %w", &os.PathError{Op: "stat", Path: m.Source, Err: err})
		}
		dir = st.Mode&unix.S_IFMT == unix.S_IFDIR
		flags := uint(unix.OPEN_TREE_CLONE)
		if m.Recursive {
			flags |= unix.AT_RECURSIVE
		}
		mfd, err = sys.OpenTree(unix.AT_FDCWD, m.Source, flags)
		if err == nil && m.Attrs != 0 {
			var clear uint64
			if m.Attrs&unix.MOUNT_ATTR__ATIME != 0 {
				// mount_setattr takes an atime mode only with the
				// old one cleared.
				clear = unix.MOUNT_ATTR__ATIME
			}
			if err = sys.SetAttr(mfd, m.Attrs, clear, m.Recursive, m.Source); err != nil {
				unix.Close(mfd)
			}
		}
	case m.Type == "cgroup" || m.Type == "cgroup2":
		return ociCgroup(root, dst, m)
	default:
		params := make([]sys.Param, 0, len(m.Data)+1)
		if m.Source != "" {
			params = append(params, sys.Param{Key: "source", Value: m.Source})
		}
		for _, d := range m.Data {
			k, v, _ := strings.Cut(d, "=")
			params = append(params, sys.Param{Key: k, Value: v})
		}
		attrs := m.Attrs
		if m.CopyUp {
			attrs &^= unix.MOUNT_ATTR_RDONLY // set once it is filled
		}
		mfd, err = sys.FSMount(m.Type, params, int(attrs), dst)
		if err == nil && m.CopyUp {
			if err = tmpCopyUp(root, dst, mfd, m.Attrs); err != nil {
				unix.Close(mfd)
			}
		}
		if err != nil && m.Type == "sysfs" {
			// A fresh sysfs needs a network namespace owned by our user
			// namespace: bind the host's, read-only.
			mfd, err = sys.OpenTree(unix.AT_FDCWD, "/sys", unix.OPEN_TREE_CLONE|unix.AT_RECURSIVE)
			if err == nil {
				if err = sys.SetAttr(mfd, unix.MOUNT_ATTR_RDONLY|nosuidNodevNoexec, 0, true, "/sys"); err != nil {
					unix.Close(mfd)
				}
			}
		}
	}
	if err != nil {
		return err
	}
	if err := attach(root, mfd, dst, dir); err != nil {
		return err
	}
	if m.Propagation != 0 {
		fd, err := sys.OpenInRoot(root, dst, unix.O_PATH, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := sys.Mount("", "/proc/self/fd/"+strconv.Itoa(fd), "", m.Propagation, ""); err != nil {
			return err
		}
	}
	return nil
}

// ociCgroup mounts the cgroup hierarchies at dst: cgroup2 on a unified
// host, else a tmpfs with each v1 hierarchy the init is in, from its own
// cgroup down.
func ociCgroup(root int, dst string, m OCIMount) error {
	attrs := int(m.Attrs)
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		mfd, err := sys.FSMount("cgroup2", nil, attrs, dst)
		if err != nil {
			return err
		}
		return attach(root, mfd, dst, true)
	}
	mfd, err := sys.FSMount("tmpfs", []sys.Param{{Key: "mode", Value: "755"}, {Key: "size", Value: "4k"}}, nosuidNodevNoexec, dst)
	if err != nil {
		return err
	}
	if err := attach(root, mfd, dst, true); err != nil {
		return err
	}
	dir, err := sys.OpenInRoot(root, dst, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || f[1] == "" {
			continue
		}
		var params []sys.Param
		name := f[1]
		for _, c := range strings.Split(f[1], ",") {
			k, v, _ := strings.Cut(c, "=")
			params = append(params, sys.Param{Key: k, Value: v})
			if k == "name" {
				name = v
			}
		}
		if strings.ContainsAny(name, "/") || name == "." || name == ".." {
			continue
		}
		var cfd int
		var err error
		own := f[2] != "/"
		if !own {
			// At the root of its cgroup namespace (its own, or the
			// host's with no cgroup of its own): a new mount of the
			// hierarchy shows what the container may see.
			cfd, err = sys.FSMount("cgroup", params, attrs|nosuidNodevNoexec, dst+"/"+name)
		}
		if own || errors.Is(err, unix.EPERM) {
			// Below it (the host's cgroup namespace: podman on v1), a
			// new mount would show the host's whole hierarchy, every
			// container's cgroup, and at its root none of this one's
			// limits (memory.limit_in_bytes unlimited under --memory);
			// and a user namespace may not mount a v1 hierarchy. Bind
			// the init's own cgroup of it instead, as runc does.
			cfd, err = bindOwnCgroup(f[1], f[2], uint64(attrs)|nosuidNodevNoexec)
		}
		if err != nil {
			return fmt.Errorf("cgroup %s: %w", f[1], err)
		}
		if err := attach(dir, cfd, "/"+name, true); err != nil {
			return err
		}
	}
	if attrs&unix.MOUNT_ATTR_RDONLY != 0 {
		return sys.SetAttr(dir, unix.MOUNT_ATTR_RDONLY, 0, false, dst)
	}
	return nil
}

// bindOwnCgroup clones the directory of cgroup path in the v1 hierarchy
// of controllers (as /proc/self/cgroup names them) from where that
// hierarchy is mounted in this mount namespace, with attrs set.
func bindOwnCgroup(controllers, path string, attrs uint64) (int, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return -1, err
	}
	want := strings.Split(controllers, ",")
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 || g[0] != "cgroup" {
			continue
		}
		opts := strings.Split(g[2], ",")
		match := true
		for _, c := range want {
			match = match && slices.Contains(opts, c)
		}
		rel, ok := strings.CutPrefix(path, f[3])
		if !match || !ok {
			continue
		}
		src := f[4] + "/" + strings.TrimPrefix(rel, "/")
		mfd, err := sys.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE)
		if err != nil {
			return -1, err
		}
		if err := sys.SetAttr(mfd, attrs, 0, false, src); err != nil {
			unix.Close(mfd)
			return -1, err
		}
		return mfd, nil
	}
	return -1, fmt.Errorf("no mount of the hierarchy in /proc/self/mountinfo: %w", unix.ENOENT)
}

// ociDevices makes the device nodes and /dev's standard symlinks.
func ociDevices(root int, oc *OCIConfig) error {
	for _, d := range oc.Devices {
		p := path.Clean(d.Path)
		if oc.Mknod {
			parent, err := ensure(root, path.Dir(p), true)
			if err != nil {
				return err
			}
			// O_PATH parents cannot be used with mknodat: reopen.
			pd, err := sys.Openat(parent, "", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC|unix.AT_EMPTY_PATH, 0)
			if err != nil {
				pd, err = unix.Open("/proc/self/fd/"+strconv.Itoa(parent), unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
			}
			unix.Close(parent)
			if err != nil {
				return err
			}
			base := path.Base(p)
			_ = unix.Unlinkat(pd, base, 0) // replace what the rootfs had: ENOENT when it had nothing; any other failure makes Mknodat fail with EEXIST
			err = unix.Mknodat(pd, base, d.Type|(d.Mode&0o7777), int(unix.Mkdev(uint32(d.Major), uint32(d.Minor))))
			if err == nil {
				err = unix.Fchmodat(pd, base, d.Mode&0o7777, 0)
			}
			if err == nil {
				err = unix.Fchownat(pd, base, int(d.UID), int(d.GID), unix.AT_SYMLINK_NOFOLLOW)
			}
			unix.Close(pd)
			if err != nil {
				return &os.PathError{Op: "mknod", Path: p, Err: err}
			}
			continue
		}
		src, err := sys.OpenTree(unix.AT_FDCWD, p, unix.OPEN_TREE_CLONE)
		if err != nil {
			return fmt.Errorf("%s: no such device on the host to bind (a user namespace cannot mknod): %w", p, err)
		}
		// Read-only, as mountDev binds them: the device reads and writes
		// as before, but its inode is the host's, which a chmod, chown
		// or utimes through a writable bind would change wherever the
		// host's root is mapped in the container.
		if err := sys.SetAttr(src, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC, 0, false, p); err != nil {
			unix.Close(src)
			return err
		}
		if err := attach(root, src, p, false); err != nil {
			return err
		}
	}
	dev, err := sys.OpenInRoot(root, "/dev", unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil // no /dev: nothing to link
	}
	defer unix.Close(dev)
	for _, l := range [][2]string{{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}, {"/proc/kcore", "core"}, {"pts/ptmx", "ptmx"}} {
		if l[1] == "core" {
			continue
		}
		err := unix.Symlinkat(l[0], dev, l[1])
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return &os.PathError{Op: "symlink", Path: "/dev/" + l[1], Err: err}
		}
	}
	return nil
}

// ociConsole opens a pty in the container's devpts, sends its master
// over the console socket (as runc does: the name as data, the fd as
// SCM_RIGHTS), binds its peer onto /dev/console and returns the peer.
func ociConsole(sock int, rows, cols uint16) (*os.File, error) {
	if sock < 0 {
		return nil, errors.New("terminal requested but no console socket given")
	}
	m, s, err := openPty(rows, cols)
	if err != nil {
		return nil, err
	}
	defer func() { _ = m.Close() }() // our copy of the master: the runtime gets its own over sock
	name, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(s.Fd())))
	if err != nil {
		_ = s.Close() // the pty's peer, unused: the console setup fails
		return nil, err
	}
	if err := unix.Sendmsg(sock, []byte(name), unix.UnixRights(int(m.Fd())), nil, 0); err != nil {
		_ = s.Close() // the pty's peer, unused: the console setup fails
		return nil, fmt.Errorf("send the pty master: %w", err)
	}
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == nil {
		defer unix.Close(root)
		if src, err := sys.OpenTree(unix.AT_FDCWD, name, unix.OPEN_TREE_CLONE); err == nil {
			if err := attach(root, src, "/dev/console", false); err != nil {
				fmt.Fprintf(os.Stderr, "lightbox init: bind /dev/console: %v\n", err)
			}
		}
	}
	return s, nil
}

// ociCgroupNS is the container's cgroup namespace (OCIConfig.CgroupNS),
// which the thread that starts a process joins: a namespace is a
// thread's, and the Go runtime makes threads from one cloned before the
// init unshared it. -1: none of its own.
var ociCgroupNS = -1

// spawnOCI starts p from a new locked thread that takes the process's
// capability bounding and inheritable sets, no_new_privs and seccomp
// filter first (a child inherits them from the thread that forks it);
// the uid, gids and ambient capabilities are set in the child by
// ForkExec. The thread dies with its goroutine. With pids (the
// container's cgroup, v1) the thread first joins it (see ociPids).
func spawnOCI(r *reaper, p *OCIProcess, filter []unix.SockFilter, pids *pidsCgroup, oom int, limits []OCIRlimit, argv0 string, env []string, files []uintptr) (int, chan syscall.WaitStatus, error) {
	type result struct {
		pid  int
		done chan syscall.WaitStatus
		err  error
	}
	res := make(chan result, 1)
	var spawn func()
	spawn = func() {
		runtime.LockOSThread() // never unlocked: the thread's credentials are the process's
		if unix.Gettid() == unix.Getpid() {
			// The main thread, which does not exit when its goroutine
			// ends locked to it (it would stay parked, in the
			// container's cgroup): kept while another does the spawn.
			done := make(chan struct{})
			go func() {
				defer close(done)
				spawn()
			}()
			<-done
			runtime.UnlockOSThread()
			return
		}
		if ociCgroupNS >= 0 {
			if err := unix.Setns(ociCgroupNS, unix.CLONE_NEWCGROUP); err != nil {
				res <- result{err: fmt.Errorf("join the container's cgroup namespace: %w", err)}
				return
			}
		}
		if pids != nil {
			leave, err := pids.join()
			if err != nil {
				res <- result{err: err}
				return
			}
			defer leave()
		}
		if err := processCreds(p, filter); err != nil {
			res <- result{err: err}
			return
		}
		sp := &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: p.UID, Gid: p.GID, Groups: p.AdditionalGids},
		}
		if b, err := os.ReadFile("/proc/self/setgroups"); err == nil && string(b) == "deny\n" {
			sp.Credential.NoSetGroups = true
		}
		if p.Caps != nil {
			sp.AmbientCaps = p.Caps.Ambient
		}
		if p.Terminal {
			sp.Setsid, sp.Setctty, sp.Ctty = true, true, 0
		}
		attr := &syscall.ProcAttr{Dir: firstNonEmpty(p.Cwd, "/"), Env: env, Files: files, Sys: sp}
		var done chan syscall.WaitStatus
		pid, err := ociFork.forkAs(oom, limits, p.UID, p.GID, func() (int, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			if ociExits.stopping {
				return 0, errOCIStopping
			}
			pid, err := syscall.ForkExec(argv0, p.Args, attr)
			if err == nil {
				done = make(chan syscall.WaitStatus, 1)
				r.waiters[pid] = done
				ociExits.pending.Add(1)
			}
			return pid, err
		})
		res <- result{pid, done, err}
	}
	go spawn()
	out := <-res
	if out.err != nil && out.done != nil {
		// Forked, then killed (its limits could not be set): its status
		// is no one's to send.
		ociExits.pending.Done()
	}
	if errors.Is(out.err, unix.EAGAIN) {
		// fork's EAGAIN: the container's pids limit (its cgroup's, or
		// RLIMIT_NPROC).
		out.err = fmt.Errorf("%w: the container is at its pids limit", out.err)
	}
	return out.pid, out.done, out.err
}

// pidsCgroup is the container's pids cgroup (v1), which the init's
// threads are not in but its main thread: counted there, they died with
// the Go runtime's "failed to create new OS thread" whenever the
// container's processes held pids.max (podman run --pids-limit 10 with
// a fork burst killed the init, and the container, 9 runs in 50). The
// main thread stays, passive (EnvOCIInit), so that /proc/PID/cgroup of
// the init names the container's cgroup, where engines and
// runtime-tools look for it; it takes one place of the limit. v1 has
// no CLONE_INTO_CGROUP: the thread that forks a process must be in the
// cgroup, where it counts too. So, one spawn at a time, it joins
// (tasks), raises pids.max by two (itself and the main thread), forks,
// puts pids.max back while still in, and exits. While the limit is
// raised the thread is counted: the container's processes never get
// more than the limit; an exec or the start gets them to it, their own
// forks to one less (the main thread's place). A process forking in the
// moment the limit is put back may be refused, as at the limit. An
// update of the limit in that moment is kept: the limit is put back
// only if it still reads what the thread set.
type pidsCgroup struct {
	mu    sync.Mutex // one spawn's thread at a time
	tasks int        // the cgroup's tasks file (write)
	max   int        // its pids.max (read, write)
	last  int        // the thread id of the last spawn's thread, 0: none
}

// pidsGoneTimeout bounds the wait for the last spawn's thread to have
// left the cgroup (microseconds, normally).
const pidsGoneTimeout = 10 * time.Second

// join moves this (locked) thread into the cgroup with room for it and
// the main thread;
// leave, called before the thread ends, puts the limit back. The lock is
// held from join to leave.
func (c *pidsCgroup) join() (leave func(), err error) {
	c.mu.Lock()
	defer func() {
		if err != nil {
			c.mu.Unlock()
		}
	}()
	// The last spawn's thread exited once done: it is uncharged when it
	// is gone (tgkill's ESRCH), and its place would be missed.
	if c.last != 0 {
		deadline := time.Now().Add(pidsGoneTimeout)
		for unix.Tgkill(unix.Getpid(), c.last, 0) == nil {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("the init's thread %d that forked the last process did not exit", c.last)
			}
			time.Sleep(20 * time.Microsecond)
		}
	}
	c.last = unix.Gettid()
	if err := joinWorkload(c.tasks); err != nil {
		return nil, err
	}
	limit, err := c.read()
	if err != nil || limit == "max" {
		return func() { c.mu.Unlock() }, err
	}
	n, err := strconv.ParseInt(limit, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("pids.max %q: %w", limit, err)
	}
	raised := strconv.FormatInt(n+2, 10)
	if err := c.write(raised); err != nil {
		return nil, err
	}
	return func() {
		defer c.mu.Unlock()
		if now, err := c.read(); err == nil && now == raised {
			if err := c.write(limit); err != nil {
				fmt.Fprintf(os.Stderr, "lightbox init: put back pids.max %s: %v\n", limit, err)
			}
		}
	}, nil
}

func (c *pidsCgroup) read() (string, error) {
	b := make([]byte, 32)
	n, err := unix.Pread(c.max, b, 0)
	if err != nil {
		return "", fmt.Errorf("read the container's pids.max: %w", err)
	}
	return strings.TrimSpace(string(b[:n])), nil
}

func (c *pidsCgroup) write(v string) error {
	if _, err := unix.Pwrite(c.max, []byte(v), 0); err != nil {
		return fmt.Errorf("write the container's pids.max %s: %w", v, err)
	}
	return nil
}

func processCreds(p *OCIProcess, filter []unix.SockFilter) error {
	if p.Caps != nil {
		keep := map[uintptr]bool{}
		for _, c := range p.Caps.Bounding {
			keep[c] = true
		}
		for c := uintptr(0); c <= lastCap(); c++ {
			if keep[c] {
				continue
			}
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
			}
		}
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			return fmt.Errorf("capget: %w", err)
		}
		data[0].Inheritable, data[1].Inheritable = 0, 0
		for _, c := range append(slices.Clone(p.Caps.Inheritable), p.Caps.Ambient...) {
			data[c/32].Inheritable |= 1 << (c % 32)
		}
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			return fmt.Errorf("capset: %w", err)
		}
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
		}
	}
	if len(filter) > 0 {
		if err := seccomp.LoadProgram(filter); err != nil {
			return err
		}
	}
	return nil
}

// ociServe serves exec and signal requests of ociruntime's exec.
func ociServe(l *net.UnixListener, r *reaper, oc *OCIConfig, pids *pidsCgroup) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		go ociServeConn(c, r, oc, pids)
	}
}

// readOCIRequest reads a request of an OCI exec's client into buf (a
// larger one comes in a memfd: ReadMsg).
func readOCIRequest(c *net.UnixConn, buf []byte) (OCIRequest, []int, error) {
	var req OCIRequest
	fds, err := ReadMsg(c, buf, MaxMsgFDs, &req)
	return req, fds, err
}

// ociServeConn starts one exec'd process and relays its life: signals
// in, its exit out. The process is killed when the connection closes
// before it ends (its relay in ociruntime was killed).
func ociServeConn(c *net.UnixConn, r *reaper, oc *OCIConfig, pids *pidsCgroup) {
	defer func() { _ = c.Close() }() // a request socket: every reply was sent (or its failure is the client's loss)
	req, fds, err := readOCIRequest(c, make([]byte, MaxInline))
	fail := func(code int, err error) {
		closeAll(fds)
		_ = send(c, Reply{Type: ReplyError, Code: code, Error: err.Error()}, nil) // the client may be gone: nobody to tell then
	}
	if err != nil {
		fail(0, err)
		return
	}
	if req.Op != OpOCIExec || req.Process == nil || len(req.Process.Args) == 0 {
		fail(0, fmt.Errorf("unknown request %q or no process", req.Op))
		return
	}
	p := req.Process
	env := ociEnv(p)
	dir := firstNonEmpty(p.Cwd, "/")
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		fail(0, fmt.Errorf("cwd %s: not a directory", dir))
		return
	}
	argv0, err := lookPath(p.Args[0], dir, env)
	if err != nil {
		var se *startError
		code := 0
		if errors.As(err, &se) {
			code = se.code
		}
		fail(code, err)
		return
	}
	var files []uintptr
	var master *os.File
	if p.Terminal {
		m, s, err := openPty(p.Rows, p.Cols)
		if err != nil {
			fail(0, err)
			return
		}
		defer func() { _ = s.Close() }() // the pty's peer: the process has its own copies
		if p.UID != 0 {
			// A terminal left root's would not be the user's to reopen:
			// the exec fails instead.
			if err := unix.Fchown(int(s.Fd()), int(p.UID), -1); err != nil {
				_ = m.Close() // a pty master never handed out: the exec fails
				fail(0, fmt.Errorf("exec: chown the terminal to %d: %w", p.UID, err))
				return
			}
		}
		master = m
		files = []uintptr{s.Fd(), s.Fd(), s.Fd()}
	} else {
		if len(fds) != 3 {
			fail(0, fmt.Errorf("exec: want 3 stdio fds, got %d", len(fds)))
			return
		}
		for _, fd := range fds {
			files = append(files, uintptr(fd))
		}
	}
	oom := ociFork.main
	if p.OOMScoreAdj != nil {
		oom = *p.OOMScoreAdj
	}
	// Set on the child after the fork, before it runs (the init's own
	// stay the container's): a process that execs a setuid binary at
	// once may run it with the init's limits.
	pid, done, err := spawnOCI(r, p, oc.Seccomp, pids, oom, execLimits(p, &oc.Process), argv0, env, files)
	closeAll(fds)
	fds = nil
	if err != nil {
		if master != nil {
			_ = master.Close() // a pty master never handed out: the exec fails
		}
		fail(execErrorCode(err), fmt.Errorf("exec %s: %w", p.Args[0], err))
		return
	}
	var mfds []int
	if master != nil {
		mfds = []int{int(master.Fd())}
	}
	_ = send(c, Reply{Type: ReplyStarted, Pid: pid}, mfds) // the client may be gone: nobody to tell then
	if master != nil {
		_ = master.Close() // the client has its own copy (sent above)
	}
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		buf := make([]byte, 4096) // signals only
		for {
			req, fds, err := readOCIRequest(c, buf)
			closeAll(fds)
			if err != nil {
				return
			}
			if req.Op == OpOCISignal {
				_ = unix.Kill(pid, syscall.Signal(req.Signal)) // ESRCH once it has exited: the exit reply follows
			}
		}
	}()
	select {
	case ws := <-done:
		code, sig := exitCode(ws)
		_ = send(c, Reply{Type: ReplyExit, Code: code, Signal: sig}, nil) // the client may be gone: nobody to tell then
	case <-gone:
		_ = unix.Kill(pid, unix.SIGKILL) // our child: fails only once it has exited
		<-done
	}
	ociExits.pending.Done()
}
