package nsinit

import (
	"errors"
	"fmt"
	"os"
	goruntime "runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
	_ "unsafe" // go:linkname

	"github.com/beamhop/lightbox/internal/reexec/child"
	"github.com/beamhop/lightbox/internal/sys"
	"github.com/beamhop/lightbox/internal/sys/seccomp"
	"golang.org/x/sys/unix"
)

// Main runs the init role: os.Args[1] is the number of the config pipe.
// It never returns. A failure of setup is reported in one place: on the
// report pipe once the config has named it, else on stderr (the init's
// log), and the init exits 1.
func Main() {
	nameSelf()
	// What the sandbox makes, its commands and the init's own /etc files,
	// gets runc's and podman's default umask, not whatever the launcher
	// ran with (a launcher's 077 made /etc/hosts unreadable to a
	// sandbox's users). A handover's init inherits it; an OCI process
	// with its own umask sets that.
	unix.Umask(0o022)
	if resuming() {
		resume() // a handover's new init (handover_linux.go): never returns
	}
	report, s, err := setUp()
	if err != nil {
		fatal(report, err)
	}
	// Serve first, report next: a request queued during setup (the main
	// command's, sent with the launch) is accepted and its command
	// forked before the report and the collector's settings below,
	// which nothing waits for.
	go s.run()
	goruntime.Gosched()
	if err := WriteReport(report, Report{Type: ReportReady, Filled: s.cfg.filled}); err != nil {
		// The launcher is gone or gave up: it kills us or the liveness
		// pipe ends us; serve until then, as a detached sandbox would.
		fmt.Fprintln(os.Stderr, "lightbox init: report ready:", err)
	}
	_ = report.Close() // the report pipe's write end: the write was checked above, a pipe buffers nothing of ours
	close(s.reported)
	// The runtime starts us with GOGC=off (a launch allocates little and
	// collecting costs time); a long-lived init collects as usual.
	debug.SetGCPercent(100)
	// Give back what setup used, once the launch is over (not in the way
	// of the first commands).
	time.AfterFunc(2*time.Second, s.launchOver)
	select {} // s.run serves until the sandbox ends (it exits the process)
}

// nameSelf names this process lightbox-init, as ps, top and pgrep show it
// (/proc/PID/comm): the kernel names a process after the file it execs,
// and the runtime execs the init, and the init a handover's, through
// /proc/self/fd/N, which named every sandbox's PID 1 "N". /proc/self is
// the thread group's leader, whichever thread writes.
func nameSelf() {
	fd, err := unix.Open("/proc/self/comm", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return // no /proc: the name is cosmetic
	}
	_, _ = unix.Write(fd, []byte("lightbox-init")) // cosmetic, as above
	unix.Close(fd)
}

// fatal reports a failure of setup, on the report pipe once the config
// has named it (report != nil), else on stderr (the init's log), and exits
// 1. It is the init's one error reporter (the OCI init's too).
func fatal(report *os.File, err error) {
	if report == nil {
		fmt.Fprintln(os.Stderr, "lightbox init:", err)
	} else if werr := WriteReport(report, Report{Type: ReportError, Error: err.Error()}); werr != nil {
		fmt.Fprintln(os.Stderr, "lightbox init:", err, "(report:", werr, ")")
	}
	os.Exit(1)
}

// setUp does everything before the init serves: it returns the report
// pipe as soon as the config names it (nil before), and the server.
func setUp() (report *os.File, s *server, err error) {
	// Mapped late (rootless with a subordinate range), the launcher runs
	// newuidmap and newgidmap after our exec, ~1.5–2 ms: protectExe's
	// re-exec (a second start of this program) is made while they run
	// instead of after them. It acts on nothing but our own mount
	// namespace (its propagation, a detached clone of the binary's
	// mount) and our own image; the re-executed init waits for its map
	// here as this one would have.
	mapPending := child.MapPending()
	if mapPending {
		if err := protectExe(true); err != nil {
			return nil, nil, fmt.Errorf("init: protect the binary: %w", err)
		}
	}
	if err := child.WaitMapped(); err != nil {
		return nil, nil, fmt.Errorf("init: %w", err)
	}
	if !mapPending {
		if err := protectExe(false); err != nil {
			return nil, nil, fmt.Errorf("init: protect the binary: %w", err)
		}
	}
	cfg, err := readConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("init: %w", err)
	}
	report = os.NewFile(uintptr(cfg.FDs.Report), "report")
	if err := closeExtraFDs(cfg); err != nil {
		return report, nil, err
	}
	if cfg.OCI != nil {
		ociMain(cfg, report) // never returns
	}
	if cfg.Nproc > 0 {
		if err := setNproc(cfg.Nproc); err != nil {
			return report, nil, fmt.Errorf("init: %w", err)
		}
	}
	fds, err := receiveFDs(cfg)
	if err != nil {
		return report, nil, fmt.Errorf("init: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return report, nil, fmt.Errorf("init: prctl(PR_SET_DUMPABLE): %w", err)
	}
	// One P throughout (the runtime starts us with GOMAXPROCS=1), and
	// setup's steps in order on this goroutine: the loopback, PID 1's
	// signal handlers (each Notify a round trip to os/signal's thread)
	// and the codec's first uses, then the mounts. A second P that ran
	// the first three beside the mounts cost more CPU than it saved
	// wall time: its spinning thread, three more threads made through
	// the template thread for the locked ones, and hand-offs at every
	// mount's syscall (bench/NOTES.md, 2026-12-01 threads). What runs
	// beside the mounts is the spawner, which must drop its privileges
	// on a thread of its own, and the reaper's Notify of SIGCHLD.
	r := newReaper()
	sp, spReady := startSpawner(r, seccomp.Options{AllowUserNamespaces: cfg.AllowUserNamespaces}, len(cfg.Cgroup) > 0, append([]int{cfg.FDs.Workload}, cfg.FDs.WorkloadV1...)...)
	if cfg.Network != "host" {
		if err := loopbackUp(); err != nil {
			return report, nil, fmt.Errorf("bring up loopback: %w", err)
		}
	}
	sigs := notifySignals()
	warmCodec()
	if err := setup(cfg, fds); err != nil {
		return report, nil, err
	}
	if err := <-spReady; err != nil {
		return report, nil, err
	}
	s, err = newServer(cfg, r, sp)
	if s != nil {
		s.sigs = sigs
	}
	return report, s, err
}

// warmCodec decodes a request and encodes a status once, so that the
// first command's request and the main command's final status do not
// pay the codec's first use (encoding/json builds its tables for a type
// then: ~0.15 ms for a Request, bench/NOTES.md).
func warmCodec() {
	b, err := Marshal(&Request{Version: Version, Op: OpExec, Exec: &Exec{Args: []string{"true"}, Env: []string{"A=B"}, Dir: "/"}})
	if err == nil {
		_ = Unmarshal(b, &Request{}) // our own encoding: a failure only leaves the tables cold
	}
	_, _ = MarshalStatus(Status{Version: Version, FinishedAt: time.Now().UTC()}) // likewise
}

// protectExe makes sure the binary behind PID 1 cannot be written through
// /proc/1/exe (or by a workload that execs /proc/self/exe). As real root
// the runtime already started us from a read-only bind of the binary. When
// we run from a writable mount and the file's owner is mapped into our
// user namespace (rootless with a binary the caller owns), sandbox root
// could write it: re-exec once from a detached read-only bind that only
// this mount namespace sees. A binary owned by an id we do not map (the
// usual root-owned /usr/bin/lightbox) is already safe, and costs nothing.
// Before our map is written (unmapped) every owner reads as unmapped, so
// a binary on a writable mount is protected whoever owns it.
func protectExe(unmapped bool) error {
	const marker = "_LIGHTBOX_EXE_PROTECTED"
	if os.Getenv(marker) != "" {
		_ = os.Unsetenv(marker) // fails only on a malformed name: a constant
		return nil
	}
	var fst unix.Statfs_t
	if err := unix.Statfs("/proc/self/exe", &fst); err != nil {
		return &os.PathError{Op: "statfs", Path: "/proc/self/exe", Err: err}
	}
	if fst.Flags&unix.ST_RDONLY != 0 {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return &os.PathError{Op: "stat", Path: "/proc/self/exe", Err: err}
	}
	if !unmapped && st.Uid == overflowID() {
		return nil
	}
	// Unshared already: we are in our own mount namespace. The magic
	// link /proc/self/exe leads to the mount in the launcher's namespace,
	// which we may not clone: resolve its path again in ours.
	if err := sys.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return err
	}
	exePath, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return err
	}
	if strings.HasSuffix(exePath, " (deleted)") {
		// Replaced on disk since it started (an upgrade): nothing writes
		// to the old inode but processes that have it open, and PID 1 is
		// not dumpable, so /proc/1/exe is out of a workload's reach.
		fmt.Fprintf(os.Stderr, "lightbox init: %s: running from a deleted binary, not re-executing from a read-only bind\n", exePath)
		return nil
	}
	fd, err := sys.OpenTree(unix.AT_FDCWD, exePath, unix.OPEN_TREE_CLONE)
	if err != nil {
		return err
	}
	if err := sys.SetAttr(fd, unix.MOUNT_ATTR_RDONLY, 0, false, "/proc/self/exe"); err != nil {
		return err
	}
	_ = os.Setenv(marker, "1") // fails only on a malformed name: a constant
	// The fd is close-on-exec: execve resolves the path before closing it.
	exe := "/proc/self/fd/" + strconv.Itoa(fd)
	for {
		err = syscall.Exec(exe, os.Args, os.Environ())
		if !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("re-exec from a read-only bind: %w", err)
		}
	}
}

// overflowID is the uid that ids unmapped in our namespace show as.
func overflowID() uint32 {
	b, err := os.ReadFile("/proc/sys/kernel/overflowuid")
	if err != nil {
		return 65534
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		return 65534
	}
	return uint32(n)
}

func readConfig() (*Config, error) {
	if len(os.Args) < 2 {
		return nil, errors.New("no config fd argument")
	}
	fd, err := strconv.Atoi(os.Args[1])
	if err != nil {
		return nil, fmt.Errorf("config fd %q: %w", os.Args[1], err)
	}
	f := os.NewFile(uintptr(fd), "config")
	defer func() { _ = f.Close() }() // the config pipe's read end, read to its end
	return ReadConfig(f)
}

// closeExtraFDs closes the binary's fd and every other descriptor the
// init inherited that cfg does not name, and marks the named ones
// close-on-exec, so that no workload inherits one. The launcher's own
// descriptors are close-on-exec, but one that it inherited without the
// flag (a shell's, a CI runner's, make's jobserver pipe) is still open in
// the clone, and would stay open in the sandbox's PID 1 for its whole
// life: a host file or directory in the sandbox's only unprivileged
// process that holds any (runc closes them the same way since
// CVE-2024-21626). The Go runtime's own poller descriptors are kept.
func closeExtraFDs(cfg *Config) error {
	fds := cfg.FDs
	if fds.Exe >= 0 {
		unix.Close(fds.Exe)
	}
	keep := map[int]bool{fds.Report: true, fds.Liveness: true, fds.Listener: true, fds.Lock: true, fds.Passer: true}
	if fds.Workload > 0 {
		keep[fds.Workload] = true
	}
	for _, fd := range fds.WorkloadV1 {
		keep[fd] = true
	}
	for _, fd := range fds.CPUMax {
		keep[fd] = true
	}
	if fds.Gone > 0 {
		keep[fds.Gone] = true
	}
	if fds.UpperFS > 0 {
		keep[fds.UpperFS] = true
	}
	for _, fd := range fds.Leases {
		keep[fd] = true
	}
	for _, m := range cfg.Mounts {
		if m.FillLock > 0 {
			keep[m.FillLock] = true // closed once its mount is made
		}
	}
	if oc := cfg.OCI; oc != nil {
		for i := range oc.PreserveFDs {
			keep[3+i] = true
		}
		keep[oc.ExecFifoFD], keep[oc.Console] = true, true
		if oc.PidsMaxFD > 0 {
			keep[oc.PidsMaxFD] = true
		}
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		switch {
		case err != nil || fd < 3:
		case keep[fd]:
			unix.CloseOnExec(fd)
		case !isPollDescriptor(uintptr(fd)):
			// Not ours (ReadDir's own is closed already: EBADF).
			unix.Close(fd)
		}
	}
	return nil
}

// isPollDescriptor reports whether fd is one of the Go runtime's poller's
// own (its epoll and eventfd): internal/poll keeps it reachable by
// linkname for this use (runc's; go.dev/issue/67401).
//
//go:linkname isPollDescriptor internal/poll.IsPollDescriptor
func isPollDescriptor(fd uintptr) bool

// exitCode renders a wait status as a shell would: the exit status, or
// 128+N for a signal N.
func exitCode(ws syscall.WaitStatus) (code, sig int) {
	if ws.Signaled() {
		return 128 + int(ws.Signal()), int(ws.Signal())
	}
	return ws.ExitStatus(), 0
}
