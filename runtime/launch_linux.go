package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/beamhop/lightbox/internal/lockfile"
	"github.com/beamhop/lightbox/internal/reexec"
	"github.com/beamhop/lightbox/nsinit"
	"github.com/beamhop/lightbox/overlay"
	"golang.org/x/sys/unix"
)

func overlaySpec(layers []string, dir string) overlay.Spec {
	// Volatile: the upper dir goes with the sandbox, which does not
	// outlive a crash of the host (gc removes it): no sync of the store's
	// filesystem at every sandbox's end (bench/NOTES.md).
	return overlay.Spec{Layers: layers, Upper: filepath.Join(dir, "upper"), Work: filepath.Join(dir, "work"), Volatile: true}
}

// initFDSlack is how many descriptors an init may open during its setup
// beside those it inherits and is sent: the Go runtime's poller, the
// mounts' contexts and detached trees, its /proc files.
const initFDSlack = 32

// initTableFor returns the number the init's Passer socket takes when the
// init inherits n descriptors (0..n-1) and is then sent passed more: n
// when they fit the 64 slots a descriptor table starts with, else one
// high enough that the table is born big enough for them all.
//
// The init's threads share its table, and the kernel grows a shared table
// only after an RCU grace period (expand_fdtable's synchronize_rcu: 3 to
// 15 ms here, in the recvmsg that delivers them), while a table that
// only one thread uses grows at once. A table never shrinks and exec
// keeps it, so a socket at a high number makes the clone's child, still
// one thread, grow it before the exec: a launch from a 50-layer snapshot
// went from ~20 to ~13.5 ms (bench/NOTES.md, 2026-12-01, fifth session).
// The Passer is closed once its descriptors are in; the gap below it is
// closed in the child.
//
// The number stays below this process's RLIMIT_NOFILE (Go raises the soft
// limit to the hard one at start; the child dups under it): a launch whose
// descriptors would fit below the limit is never refused for the socket.
func initTableFor(n, passed int) int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		rl.Cur = math.MaxInt32
	}
	return passerAt(n, passed, rl.Cur)
}

// passerAt is initTableFor's number under a descriptor limit.
func passerAt(n, passed int, limit uint64) int {
	want := n + passed + initFDSlack
	if want <= 64 {
		return n
	}
	if limit <= uint64(want) {
		return max(n, int(min(limit, math.MaxInt32))-1)
	}
	return want
}

// spawnInit starts the init, sends it cfg, and waits until it is ready.
func (m *Manager) spawnInit(ctx context.Context, name string, spec Spec, cfg nsinit.Config, st state, lk *lockfile.Lock, h *hostSide) (*Sandbox, error) {
	cg := st.Cgroup
	dir := m.dir(name)
	lnf, err := nsinit.ListenSock(dir)
	if err != nil {
		return nil, err
	}
	defer func() { _ = lnf.Close() }() // a listening socket, no data: the init has its own

	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer func() { _ = cfgR.Close() }() // the init's read end: closed already once started
	defer func() { _ = cfgW.Close() }() // closed and checked after WriteConfig; here only on an early failure
	repR, repW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer func() { _ = repR.Close() }() // the report's read end: we only read it
	defer func() { _ = repW.Close() }() // the init's write end: we never write it
	liveR, liveW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer func() { _ = liveR.Close() }() // the init's read end of the liveness pipe: no data ever
	goneR, goneW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer func() { _ = goneW.Close() }() // the init's write end: we never write it
	goneOwned := false
	defer func() {
		if !goneOwned {
			_ = goneR.Close() // no init to hear from
		}
	}()
	// The network stack's cue to exit (slirp4netns's --exit-fd): a copy
	// of the gone pipe's read end hangs up as soon as the init exits (it
	// holds the only write end), where a pidfd of the init hangs up only
	// once the init is reaped, which an orphaned init waits for from the
	// host's pid 1 (or a subreaper): never, from one that does not reap,
	// and the helper held the published ports until then.
	var netExit *os.File
	if spec.Network == NetworkPrivate {
		if netExit, err = dupFile(goneR, "gone"); err != nil {
			return nil, err
		}
		defer func() { _ = netExit.Close() }() // read-only, never read: the helper has its own copy
	}
	// The init's stdout and stderr go to the name lock's file, not to a
	// file of their own (one inode fewer a launch: bench/NOTES.md); the
	// init's final Status replaces them (nsinit.UnmarshalStatus).
	logf, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_WRONLY|os.O_APPEND|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer func() { _ = logf.Close() }() // our copy, never written: the init writes through its own

	// Each file the init inherits is numbered 3+its index in ExtraFiles
	// (runc's newParentProcess): its number is taken as it is added.
	var extra []*os.File
	child := func(f *os.File) int {
		extra = append(extra, f)
		return 3 + len(extra) - 1
	}
	cfgFD := child(cfgR)
	cfg.FDs = nsinit.FDs{Report: child(repW), Liveness: child(liveR), Listener: child(lnf), Lock: child(lk.File()), Exe: -1, Passer: -1}
	cfg.FDs.Gone = child(goneW)
	if cfg.SyncOnEnd && spec.WritableDir != "" {
		uf, err := openUpperFS(spec.WritableDir, dir)
		if err != nil {
			return nil, err
		}
		if uf != nil {
			defer func() { _ = uf.Close() }() // our copy, read-only: the init has its own
			cfg.FDs.UpperFS = child(uf)
		}
	}
	wf, wmore, err := cg.openWorkload()
	if err != nil {
		return nil, err
	}
	if wf != nil {
		defer func() { _ = wf.Close() }() // our copy of the workload cgroup's threads file, never written: the init has its own
		cfg.FDs.Workload = child(wf)
	}
	defer closeFiles(wmore) // the same, in the other v1 hierarchies
	for _, f := range wmore {
		cfg.FDs.WorkloadV1 = append(cfg.FDs.WorkloadV1, child(f))
	}
	if spec.Limits.CPUs > 0 {
		cpu, err := cg.openCPUMax()
		if err != nil {
			return nil, err
		}
		defer closeFiles(cpu) // our copies, never written: the init has its own
		for _, f := range cpu {
			cfg.FDs.CPUMax = append(cfg.FDs.CPUMax, child(f))
		}
	}
	for _, l := range spec.Leases {
		cfg.FDs.Leases = append(cfg.FDs.Leases, child(l))
	}
	if slices.ContainsFunc(spec.Mounts, func(mt MountSpec) bool { return mt.FillLock != nil }) {
		cfg.Mounts = slices.Clone(cfg.Mounts) // the caller's, else
		for i, mt := range spec.Mounts {      // cfg.Mounts are spec.Mounts, in order
			if mt.FillLock != nil {
				cfg.Mounts[i].FillLock = child(mt.FillLock)
			}
		}
	}
	exe, exePath := m.exe()
	if exe != nil {
		cfg.FDs.Exe = child(exe)
		exePath = "/proc/self/fd/" + strconv.Itoa(cfg.FDs.Exe)
	}
	if h.sock != nil { // made with the binds (Manager.start): as real root only
		passed := h.toSend(&cfg)
		if spec.Takeable {
			passed += nsinit.MaxFDsPerMessage
		}
		for at := initTableFor(3+len(extra), passed); 3+len(extra) < at; {
			extra = append(extra, nil) // closed in the child: a gap below the socket
		}
		cfg.FDs.Passer = child(h.peer)
	}
	flags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP)
	if spec.Network != NetworkHost {
		flags |= unix.CLONE_NEWNET
	}
	cmd := reexec.Command(exePath, "init", m.mapping, flags, strconv.Itoa(cfgFD))
	cmd.ExtraFiles = extra
	cmd.Stdout, cmd.Stderr = logf, logf
	// The init is small and mostly waits: one P, and no GC during setup
	// (nsinit turns it back on once ready).
	cmd.Env = []string{"GOMAXPROCS=1", "GOGC=off"}
	var cgf *os.File
	if cg != nil && cg.Version == 2 {
		cgf, err = cg.openDir() // the init is cloned into its cgroup
		if err != nil {
			return nil, err
		}
		defer func() { _ = cgf.Close() }() // a cgroup directory fd, only read by clone3
	}
	var tasks []*os.File
	var ctrls []string
	if cg != nil && cg.Version == 1 {
		tasks, ctrls, err = cg.openTasks()
		if err != nil {
			return nil, err
		}
		defer closeFiles(tasks)
	}
	var start func() error
	switch {
	case largeLauncher():
		// The clone through a small intermediate: this process's own
		// fork would copy the page tables of all its memory.
		viaLaunches.Add(1)
		start = onLockedThread(withInitSlack(func() error { return cmd.StartVia(tasks, cgf) }))
	case tasks != nil:
		// Cloned from a thread that joined the sandbox's cgroups: the
		// init is born in them, as CLONE_INTO_CGROUP does on v2.
		start = func() error { return startInCgroupsV1(withInitSlack(cmd.StartFork), tasks, ctrls) }
	default:
		if cgf != nil {
			cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(cgf.Fd())
		}
		start = onLockedThread(withInitSlack(cmd.StartFork))
	}
	if err := start(); err != nil {
		_ = liveW.Close() // the liveness pipe carries no data: closing it only tells a started init to go
		if cmd.Process != nil {
			// Started, but the launcher thread could not leave the
			// sandbox's cgroups: the launch fails, the init goes.
			_ = cmd.Process.Kill() // our child: fails only when it is gone already; Wait reaps either way
			_ = cmd.Wait()         // killed above: the status says so
		}
		return nil, fmt.Errorf("start init: %w", err)
	}
	pid := cmd.Process.Pid
	gone := &gonePipe{f: goneR}
	initDone := make(chan struct{})
	var initErr error
	go func() {
		// Waits in the poller, then reaps at once: a goroutine blocked
		// in waitid would hold an OS thread of this process for the
		// sandbox's whole life (one per live sandbox in an embedding
		// program or a warm pool).
		awaitExit(pid)
		initErr = cmd.Wait()
		close(initDone)
		gone.release() // unless a Destroy reads it
	}()
	goneOwned = true
	_ = cfgR.Close()  // the init's copy: read by the init only
	_ = repW.Close()  // the init's copy: we never write it
	_ = liveR.Close() // the init's copy: no data on the liveness pipe
	_ = goneW.Close() // the init's copy: we only read the gone pipe
	sb := &Sandbox{m: m, name: name, dir: dir, pid: pid, live: liveW, initDone: initDone, goneP: gone, writable: spec.WritableDir, stopSig: spec.StopSignal, stopKnown: true}
	sb.cgOnce.Do(func() { sb.cg = cg }) // known here: a command's start need not read the state for it
	launched.Store(liveW, struct{}{})
	fail := func(err error) (*Sandbox, error) {
		closeLive(liveW)
		_ = cmd.Process.Kill() // our child: fails only when it is gone already, and <-initDone waits for that
		<-initDone
		return nil, err
	}
	if h.sock != nil {
		n, err := sendForInit(pid, &cfg, h)
		if err != nil {
			return fail(err)
		}
		cfg.Passed = n
		h.close() // sendForInit returned: the descriptors are in the init's queue
	}
	if err := nsinit.WriteConfig(cfgW, &cfg); err != nil {
		return fail(err)
	}
	if err := cfgW.Close(); err != nil {
		return fail(fmt.Errorf("send config to init: %w", err))
	}

	_ = lnf.Close() // the init has its own: a request queued for a dead init fails

	// Without a private network to attach first, the main command's
	// request is queued on the exec socket now, while the init sets
	// itself up: the init starts it as soon as it serves, with no round
	// trip after its ready report (bench/NOTES.md).
	var mainDone chan error
	if spec.Command != nil && spec.Network != NetworkPrivate {
		mainDone = make(chan error, 1)
		go func() { mainDone <- sb.startMain(ctx, spec) }()
	}
	// The state names the init while it sets itself up, not after: the
	// write is off the launch's critical path (bench/NOTES.md).
	// st is what createState wrote: nothing else writes the state while
	// we hold the name lock.
	stateDone := make(chan error, 1)
	go func() {
		st.Pid = pid
		st.PidStart, _ = pidStart(pid) // a pid gone meanwhile: setup fails, and the state with it
		stateDone <- updateState(dir, st)
	}()
	failSet := func(err error) (*Sandbox, error) {
		<-stateDone // no write into a directory the caller removes
		sb, err := fail(err)
		if mainDone != nil {
			<-mainDone // the init is gone: its queued request failed
		}
		return sb, err
	}
	rep, err := nsinit.WaitReady(ctx, repR)
	if err != nil {
		if errors.Is(err, nsinit.ErrNoReport) {
			<-initDone
			err = fmt.Errorf("init exited during setup (%v): %s", initErr, tail(filepath.Join(dir, "lock")))
		}
		return failSet(err)
	}
	if spec.Filled != nil && len(rep.Filled) > 0 {
		spec.Filled(rep.Filled)
	}
	if err := <-stateDone; err != nil {
		stateDone <- nil
		return failSet(err)
	}
	if spec.Network == NetworkPrivate {
		// Hook for the user-mode network stack (Options.AttachNetwork):
		// the main command starts only once it is attached.
		na, err := m.opts.AttachNetwork(ctx, pid, spec.Ports, spec.NetworkHelper, netExit)
		if err != nil {
			return fail(fmt.Errorf("attach network: %w", err))
		}
		sb.net = na
		if h, ok := na.(interface{ Pids() []int }); ok {
			for _, p := range h.Pids() {
				if start, err := pidStart(p); err == nil {
					st.NetPids = append(st.NetPids, procRef{Pid: p, Start: start})
				}
			}
			if err := writeState(dir, st); err != nil {
				// A helper that will not stop is not in the state: it is reported.
				return fail(errors.Join(fmt.Errorf("attach network: %w", err), na.Close()))
			}
		}
		if _, err := sb.call(ctx, nsinit.Request{Op: nsinit.OpEtc, Etc: []nsinit.File{{Target: "/etc/resolv.conf", Data: na.ResolvConf()}}}); err != nil {
			return fail(errors.Join(fmt.Errorf("attach network: %w", err), na.Close()))
		}
	}
	// The init holds the name lock from here on (the same open file: a
	// lock held by both). With DetachedTeardown we keep our hold, for the
	// reaper Destroy starts.
	detached := spec.DetachedTeardown && spec.Command != nil && sb.net == nil && spec.WritableDir == ""
	if !detached {
		lk.Close()
	}
	if spec.Command != nil {
		var err error
		if mainDone != nil {
			err = <-mainDone
		} else {
			err = sb.startMain(ctx, spec)
		}
		if err != nil {
			lk.Close() // Destroy takes the name lock once the init is gone
			err = fmt.Errorf("start main command: %w", Unnamed(err, name))
			// A sandbox that will not go is left for gc: it is reported.
			if derr := sb.destroy(context.WithoutCancel(ctx), 0); derr != nil {
				err = errors.Join(err, derr)
			}
			return nil, err
		}
	}
	if detached {
		sb.held = lk
	}
	m.log.Debug("sandbox launched", "sandbox", name, "pid", pid)
	return sb, nil
}

// awaitExit returns once the process pid, an unreaped child of ours (so
// the pid names no other process meanwhile), has exited: it waits in Go's
// poller on a pidfd, which no OS thread blocks on. It returns at once
// when it cannot watch (no pidfd), and the caller's wait then blocks.
func awaitExit(pid int) {
	f, err := openPidfd(pid)
	if err != nil {
		return
	}
	defer func() { _ = f.Close() }() // a pidfd: close cannot lose anything
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool { // an error ends the watch only: the caller's wait follows
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		return n > 0 || (err != nil && !errors.Is(err, unix.EINTR))
	})
}

// tail returns the last lines of a log file, for errors.
func tail(p string) string {
	b, _ := os.ReadFile(p)
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	if s == "" {
		return "no output"
	}
	return s
}

// startMain starts the main command, connected to the caller's streams or
// to the log files.
func (s *Sandbox) startMain(ctx context.Context, spec Spec) error {
	c := s.Command(spec.Command[0], spec.Command[1:]...)
	c.main = true
	c.Tty, c.TtySize = spec.Tty, spec.TtySize
	if spec.Stdin == nil && spec.Stdout == nil && spec.Stderr == nil {
		var files []*os.File
		flags := os.O_WRONLY | os.O_APPEND
		if spec.Limits.LogBytes > 0 {
			// The init relays the output and keeps the newest
			// LogBytes of each stream (it rewrites the files in place);
			// with Tty it copies the pty into stdout.log the same way.
			flags, c.logMax = os.O_RDWR, spec.Limits.LogBytes
		}
		for _, n := range []string{"stdout.log", "stderr.log"} {
			f, err := os.OpenFile(filepath.Join(s.dir, n), flags|os.O_CREATE|unix.O_CLOEXEC, 0o600)
			if err != nil {
				return err
			}
			defer func() { _ = f.Close() }() // our copy, unwritten: the init (or a pty copy below) writes through its own
			if c.logMax > 0 {
				// The init marks dropped output with an xattr on the
				// file: it must be the file's owner (the sandbox's root;
				// with a private range that is not host root).
				if err := s.m.chownToRoot(f.Name()); err != nil {
					return err
				}
			}
			files = append(files, f)
		}
		c.Stdout, c.Stderr, c.logs = files[0], files[1], true
		if spec.Tty {
			// The init copies the pty's output into stdout.log
			// (capped): a detached command's terminal outlives us.
			c.Stdout, c.Stderr, c.ttyLog = nil, nil, files[0]
		}
	} else {
		c.Stdin, c.Stdout, c.Stderr = spec.Stdin, spec.Stdout, spec.Stderr
	}
	// The launch's context bounds the launch, not the main command's life:
	// a detached sandbox's main command outlives the launcher's context.
	if err := c.start(ctx, context.WithoutCancel(ctx), false); err != nil {
		return err
	}
	s.mu.Lock()
	s.main = c
	s.mu.Unlock()
	return nil
}

// createState writes a new sandbox's first state.json straight into its
// fresh directory, with no temporary file: every inode a launch makes and
// its teardown frees slows the next allocations down on an ext4 without a
// journal (bench/NOTES.md). While the launcher holds the name lock,
// readers take a state.json that does not parse yet for a starting
// sandbox (no pid); a crash mid-write leaves a torn file in a dead
// sandbox (tornState), written before anything it records was made.
func createState(dir string, st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, "state.json"), os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close() // the write failed: that error is returned
		return err
	}
	return f.Close()
}

// updateState rewrites state.json in place with st, which only adds
// fields at the end of what the file holds (the init's pid, the last
// fields): no new inode, and a reader sees the old state, the new one, or
// — only while the bytes are copied — a state that does not parse, which
// a running sandbox's readers take as the old one's "starting".
func updateState(dir string, st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, "state.json"), os.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		_ = f.Close() // the write failed: that error is returned
		return err
	}
	if fi, err := f.Stat(); err == nil && fi.Size() > int64(len(b)) {
		err = f.Truncate(int64(len(b)))
		if err != nil {
			_ = f.Close() // the truncate failed: that error is returned
			return err
		}
	}
	return f.Close()
}

func writeState(dir string, st state) error {
	// Readers see the old or the new file (rename), but there is no
	// fsync: a sandbox does not survive a reboot, and GC removes what a
	// crash left, so durability would only slow every launch down.
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	p := filepath.Join(dir, "state.json")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// forceVia makes every launch go through the intermediate, and
// viaLaunches counts those that did (tests).
var (
	forceVia    bool
	viaLaunches atomic.Int64
)

// largeLauncher says whether the init is cloned through reexec's StartVia
// (reexec.Large: this process holds much memory).
func largeLauncher() bool { return forceVia || reexec.Large() }

// initTimerSlack is the timer slack (ns) of the init's threads: they
// inherit it from the launcher's thread that clones the init (through
// the intermediate too), and the spawner gives workloads the kernel's
// default back. The Go runtime's sysmon sleeps 20 µs at a time while a
// process is busy (~100 µs with the default 50 µs of slack here), its
// wake-ups a third of the init's context switches; the init's own
// timers are for seconds. 1 ms for the init's threads: a launch's CPU
// ×0.95, its context switches 249 → 202, an exec ×0.93 (bench/NOTES.md,
// 2026-12-01 threads).
const initTimerSlack = 1_000_000

// withInitSlack runs start, which clones the init, with the calling
// thread's timer slack at initTimerSlack, and gives the thread its own
// back. The caller's goroutine must be locked to its thread.
func withInitSlack(start func() error) func() error {
	return func() error {
		old, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
		if err != nil || unix.Prctl(unix.PR_SET_TIMERSLACK, initTimerSlack, 0, 0, 0) != nil {
			return start() // no slack to set: the init starts with ours
		}
		defer func() { _ = unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(old), 0, 0, 0) }() // the value the kernel gave this thread: taken back as given
		return start()
	}
}

// onLockedThread runs start with the calling goroutine locked to its
// thread.
func onLockedThread(start func() error) func() error {
	return func() error {
		goruntime.LockOSThread()
		defer goruntime.UnlockOSThread()
		return start()
	}
}

// startInCgroupsV1 runs start (a fork) from a locked thread that first
// joins the cgroups whose tasks files are given, so that the child is
// born in them, and then goes back to its own: cgroup v1 has no
// CLONE_INTO_CGROUP, and moving the child after the clone (a write of
// its pid to cgroup.procs) waits for an RCU grace period on the first
// write, milliseconds on every launch, where a thread moving itself ("0"
// to tasks) takes no global lock. A thread that could not go back stays
// locked: it ends with the goroutine (the main thread, which cannot end,
// is then parked for good) instead of serving the program from the
// sandbox's cgroups.
func startInCgroupsV1(start func() error, tasks []*os.File, ctrls []string) error {
	errc := make(chan error, 1)
	ownCgroupMu.RLock() // no read of the process's own cgroups while this thread is in the sandbox's
	defer ownCgroupMu.RUnlock()
	go func() {
		goruntime.LockOSThread()
		back, err := ownTasks(ctrls)
		if err != nil {
			goruntime.UnlockOSThread()
			errc <- err
			return
		}
		defer closeFiles(back)
		for _, f := range tasks {
			if err = writeRetry(int(f.Fd()), "0"); err != nil {
				err = fmt.Errorf("join cgroup: write %s: %w", f.Name(), err)
				break
			}
		}
		if err == nil {
			err = start()
		}
		for _, f := range back {
			if werr := writeRetry(int(f.Fd()), "0"); werr != nil {
				errc <- errors.Join(err, fmt.Errorf("leave the sandbox's cgroups: write %s: %w", f.Name(), werr))
				return // still locked: see above
			}
		}
		goruntime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// ownTasks opens, for each v1 controller named, the tasks file of the
// calling thread's own cgroup in it.
func ownTasks(ctrls []string) ([]*os.File, error) {
	b, err := os.ReadFile("/proc/thread-self/cgroup")
	if err != nil {
		return nil, err
	}
	var out []*os.File
	for _, c := range ctrls {
		var p string
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.SplitN(line, ":", 3)
			if len(f) == 3 && slices.Contains(strings.Split(f[1], ","), c) {
				p = f[2]
				break
			}
		}
		if p == "" {
			closeFiles(out)
			return nil, fmt.Errorf("join cgroup: no %s hierarchy in /proc/thread-self/cgroup", c)
		}
		full := filepath.Join(unifiedMount, c, p, "tasks")
		f, err := os.OpenFile(full, os.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			closeFiles(out)
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

func writeRetry(fd int, s string) error {
	for {
		_, err := unix.Write(fd, []byte(s))
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		_ = f.Close() // cgroup tasks files: the join's writes were checked where made
	}
}

// dupFile returns a close-on-exec copy of f's descriptor, made without
// taking f out of the poller (as f.Fd would).
func dupFile(f *os.File, name string) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("dup %s: %w", name, derr)
	}
	return os.NewFile(uintptr(nfd), name), nil
}

// upperFSFile is the empty file in a sandbox's writable dir (Spec.
// WritableDir) that its init syncs the dir's filesystem through
// (nsinit.FDs.UpperFS).
const upperFSFile = "syncfs"

// openUpperFS opens, read-only, a file on the filesystem of the writable
// dir rw when that is not the filesystem of the sandbox's directory dir,
// which holds its lock file (a capped layer on a loop-mounted image: the
// store's syncfs does not write what the sandbox wrote there to the
// image); nil when they are one (an XFS project dir, no cap). A regular
// file, for nsinit.FDs.UpperFS: syncfs refuses an O_PATH descriptor, and
// the init holds no directory of the host.
func openUpperFS(rw, dir string) (*os.File, error) {
	var a, b unix.Stat_t
	if err := unix.Stat(rw, &a); err != nil {
		return nil, &os.PathError{Op: "stat", Path: rw, Err: err}
	}
	if err := unix.Stat(dir, &b); err != nil {
		return nil, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	if a.Dev == b.Dev {
		return nil, nil
	}
	// rw is the caller's, never the sandbox's (which reaches its upper
	// dir only): no symlink is expected here, and none is followed.
	return os.OpenFile(filepath.Join(rw, upperFSFile), os.O_RDONLY|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o400)
}
