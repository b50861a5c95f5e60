package nsinit

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/beamhop/lightbox/internal/environ"
	"github.com/beamhop/lightbox/internal/procidmap"
	"github.com/beamhop/lightbox/internal/sys"
	"github.com/beamhop/lightbox/internal/sys/seccomp"
	"golang.org/x/sys/unix"
)

// defaultCaps is podman's default capability set: what workloads running
// as root inside keep (bounding, permitted, effective).
var defaultCaps = []uintptr{
	unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_FSETID,
	unix.CAP_KILL, unix.CAP_NET_BIND_SERVICE, unix.CAP_SETFCAP, unix.CAP_SETGID,
	unix.CAP_SETPCAP, unix.CAP_SETUID, unix.CAP_SYS_CHROOT,
}

// reaper is PID 1's single wait4(-1) loop: statuses go to the waiter
// registered for the pid; orphans are reaped and forgotten. The spawner
// registers a pid under mu before the reaper can look, so no status is
// lost (os/exec's own pidfd waiting would race with it).
type reaper struct {
	mu      sync.Mutex
	waiters map[int]chan syscall.WaitStatus
	idle    []chan struct{} // closed when wait4 finds no child left
}

// newReaper starts the reaper; the statuses of keep (children a handover
// passed on) wait in r.waiters for their readers.
func newReaper(keep ...int) *reaper {
	r := &reaper{waiters: map[int]chan syscall.WaitStatus{}}
	for _, pid := range keep {
		r.waiters[pid] = make(chan syscall.WaitStatus, 1)
	}
	// Notify in the goroutine, not before it returns: the first Notify
	// of the process starts os/signal's thread and waits for it (~0.15
	// ms on a setup's way). Reaping first thing after it finds a child
	// that ended before it, and every later end sends the signal.
	go func() {
		ch := make(chan os.Signal, 16)
		signal.Notify(ch, unix.SIGCHLD)
		for {
			r.reap()
			<-ch
		}
	}()
	return r
}

func (r *reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := sys.Wait4(-1, &ws, unix.WNOHANG)
		if errors.Is(err, unix.ECHILD) {
			for _, ch := range r.idle {
				close(ch)
			}
			r.idle = nil
		}
		if err != nil || pid <= 0 {
			return
		}
		if ch, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			ch <- syscall.WaitStatus(ws)
		}
	}
}

// noChildren returns a channel closed once PID 1 has no child left: in a
// pid namespace every process is PID 1's descendant and orphans are
// reparented to it, so that is when no other process is left. It is told
// by the SIGCHLD that ends the last one, not by scanning /proc.
func (r *reaper) noChildren() <-chan struct{} {
	ch := make(chan struct{})
	r.mu.Lock()
	r.idle = append(r.idle, ch)
	r.mu.Unlock()
	r.reap() // perhaps none is left already
	return ch
}

// workloadTimerSlack is the timer slack (ns) workloads start with: the
// kernel's default for a thread that is not real-time.
const workloadTimerSlack = 50_000

// processSignals are the signals the spawner thread blocks while it waits
// (see spawner.loop): every signal sent to a process rather than raised
// by a thread's own fault, but SIGURG (the Go runtime's preemption, sent
// to a thread) and SIGKILL and SIGSTOP (which cannot be blocked).
var processSignals = []unix.Signal{
	unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGABRT, unix.SIGUSR1, unix.SIGUSR2,
	unix.SIGPIPE, unix.SIGALRM, unix.SIGTERM, unix.SIGSTKFLT, unix.SIGCHLD, unix.SIGCONT,
	unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU, unix.SIGXCPU, unix.SIGXFSZ, unix.SIGVTALRM,
	unix.SIGPROF, unix.SIGWINCH, unix.SIGIO, unix.SIGPWR,
}

// spawnReq is a fork+exec for the spawner thread.
type spawnReq struct {
	argv0 string
	attr  *syscall.ProcAttr
	argv  []string
	reply chan spawnResult
}

type spawnResult struct {
	pid  int
	done chan syscall.WaitStatus
	err  error
}

// spawner forks every workload from one locked OS thread whose
// credentials are those of a workload: no_new_privs, podman's capability
// set and the seccomp profile of internal/seccomp (all three are per
// thread, and a child inherits those of the thread that forked it).
type spawner struct {
	reqs     chan spawnReq
	r        *reaper
	cgroupNS bool
	workload []int // FDs.Workload and FDs.WorkloadV1, those not 0
}

// startSpawner starts the spawner thread; it is ready to fork when the
// returned channel yields nil.
// With cgroupNS it first makes its cgroup the root of a new cgroup
// namespace (see unshareCgroupNS); with workload fds (0: none) it then
// moves into the workloads' cgroups (see joinWorkload).
func startSpawner(r *reaper, prof seccomp.Options, cgroupNS bool, workload ...int) (*spawner, <-chan error) {
	s := &spawner{reqs: make(chan spawnReq), r: r, cgroupNS: cgroupNS}
	for _, fd := range workload {
		if fd > 0 {
			s.workload = append(s.workload, fd)
		}
	}
	ready := make(chan error, 1)
	go s.loop(ready, prof)
	return s, ready
}

func (s *spawner) loop(ready chan<- error, prof seccomp.Options) {
	// Never unlocked: this thread's credentials are no longer the init's,
	// so it must die with the goroutine rather than go back to the pool.
	runtime.LockOSThread()
	// The init's threads run with the large timer slack the launcher
	// gave them (fewer wake-ups of the Go runtime's sysmon); workloads
	// inherit this thread's: the kernel's default.
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, workloadTimerSlack, 0, 0, 0); err != nil {
		ready <- fmt.Errorf("spawner: prctl(PR_SET_TIMERSLACK): %w", err)
		return
	}
	if s.cgroupNS {
		if err := unshareCgroupNS(); err != nil {
			ready <- err
			return
		}
	}
	for _, fd := range s.workload {
		if err := joinWorkload(fd); err != nil {
			ready <- err
			return
		}
	}
	if err := dropPrivileges(prof); err != nil {
		ready <- err
		return
	}
	// While it waits for requests, this thread blocks the signals sent
	// to the whole process (SIGCHLD, those PID 1 forwards), so that the
	// kernel never picks it to take one: it lives in the workloads'
	// cgroup, and when they keep their CPU limit busy it may not run for
	// many seconds, while a signal the kernel gave it waits there unseen
	// by the init's other threads (a main command's SIGCHLD waited a
	// minute, until another thread woke, under 50 busy loops at --cpus
	// 0.01). The mask it forks with, which each workload starts with, is
	// the one it had before.
	var idle, forkMask unix.Sigset_t
	for _, sig := range processSignals {
		idle.Val[(sig-1)/64] |= 1 << ((uint(sig) - 1) % 64)
	}
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &idle, &forkMask); err != nil {
		ready <- fmt.Errorf("spawner: block signals: %w", err)
		return
	}
	ready <- nil
	for req := range s.reqs {
		s.r.mu.Lock()
		_ = unix.PthreadSigmask(unix.SIG_SETMASK, &forkMask, nil) // EINVAL only for a bad how
		pid, err := syscall.ForkExec(req.argv0, req.argv, req.attr)
		_ = unix.PthreadSigmask(unix.SIG_BLOCK, &idle, nil) // as above
		var done chan syscall.WaitStatus
		if err == nil {
			done = make(chan syscall.WaitStatus, 1)
			s.r.waiters[pid] = done
		}
		s.r.mu.Unlock()
		req.reply <- spawnResult{pid: pid, done: done, err: err}
	}
}

func (s *spawner) spawn(argv0 string, argv []string, attr *syscall.ProcAttr) (int, chan syscall.WaitStatus, error) {
	reply := make(chan spawnResult, 1)
	s.reqs <- spawnReq{argv0: argv0, argv: argv, attr: attr, reply: reply}
	r := <-reply
	if errors.Is(r.err, unix.EAGAIN) {
		// fork's EAGAIN here is the sandbox's pids limit (its
		// cgroup's, or RLIMIT_NPROC): say so.
		r.err = fmt.Errorf("%w: the sandbox is at its pids limit", r.err)
	}
	return r.pid, r.done, r.err
}

func dropPrivileges(prof seccomp.Options) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("spawner: prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	last := lastCap()
	keep := map[uintptr]bool{}
	for _, c := range defaultCaps {
		keep[c] = true
	}
	for c := uintptr(0); c <= last; c++ {
		if keep[c] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("spawner: drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("spawner: clear ambient capabilities: %w", err)
	}
	var data [2]unix.CapUserData
	for _, c := range defaultCaps {
		data[c/32].Effective |= 1 << (c % 32)
		data[c/32].Permitted |= 1 << (c % 32)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("spawner: capset: %w", err)
	}
	// Last: the filter applies to this thread's own syscalls from now on.
	if err := seccomp.Load(prof); err != nil && !errors.Is(err, seccomp.ErrUnsupported) {
		return fmt.Errorf("spawner: %w", err)
	}
	return nil
}

func lastCap() uintptr {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return uintptr(n)
		}
	}
	return unix.CAP_LAST_CAP
}

// user is a resolved "uid[:gid]" or "name[:group]".
type user struct {
	uid, gid uint32
	groups   []uint32
	home     string
}

// lookupUser resolves spec against the sandbox's /etc/passwd and
// /etc/group ("" = root). Both are the workload's to write: see scanDB.
func lookupUser(spec string) (user, error) {
	u := user{home: "/root"}
	if spec == "" {
		return u, nil
	}
	name, group, hasGroup := strings.Cut(spec, ":")
	found := false
	var err error
	if n, perr := strconv.ParseUint(name, 10, 32); perr == nil {
		u.uid, u.home = uint32(n), "/"
		err = scanDB("/etc/passwd", func(e []string) bool {
			if len(e) >= 6 && e[2] == name {
				name, found = e[0], true
				u.gid = parseID(e[3])
				u.home = e[5]
			}
			return found
		})
	} else {
		err = scanDB("/etc/passwd", func(e []string) bool {
			if len(e) >= 6 && e[0] == name {
				found = true
				u.uid, u.gid, u.home = parseID(e[2]), parseID(e[3]), e[5]
			}
			return found
		})
		if err == nil && !found {
			return u, fmt.Errorf("user %q: no such user in the sandbox's /etc/passwd", name)
		}
	}
	if err != nil {
		return u, fmt.Errorf("user %q: %w", spec, err)
	}
	if hasGroup {
		if n, err := strconv.ParseUint(group, 10, 32); err == nil {
			u.gid = uint32(n)
		} else {
			ok := false
			err := scanDB("/etc/group", func(e []string) bool {
				if len(e) >= 3 && e[0] == group {
					u.gid, ok = parseID(e[2]), true
				}
				return ok
			})
			if err != nil {
				return u, fmt.Errorf("user %q: %w", spec, err)
			}
			if !ok {
				return u, fmt.Errorf("group %q: no such group in the sandbox's /etc/group", group)
			}
		}
	}
	u.groups = []uint32{u.gid}
	if found && !hasGroup {
		err := scanDB("/etc/group", func(e []string) bool {
			if len(e) < 4 {
				return false
			}
			for _, m := range strings.Split(e[3], ",") {
				if m == name {
					if g := parseID(e[2]); g != u.gid {
						u.groups = append(u.groups, g)
					}
				}
			}
			return false
		})
		if err != nil {
			return u, fmt.Errorf("user %q: %w", spec, err)
		}
	}
	return u, nil
}

// checkMapped says which of u's ids the sandbox's user namespace does not
// map (from uid_map and gid_map, where the ranges are those of the
// store's mapping): for the bare EINVAL of setresuid or setgroups,
// which read as "exec: invalid argument".
func checkMapped(spec string, u user) error {
	for _, c := range []struct {
		kind, file string
		ids        []uint32
	}{{"uid", "/proc/self/uid_map", []uint32{u.uid}}, {"gid", "/proc/self/gid_map", append([]uint32{u.gid}, u.groups...)}} {
		m, err := procidmap.Read(c.file)
		if err != nil {
			continue // unreadable: the exec's own error says what went wrong
		}
		for _, id := range c.ids {
			if !m.Maps(id) {
				return fmt.Errorf("user %q: %s %d is not mapped in the sandbox (its %ss are %s)", spec, c.kind, id, c.kind, m)
			}
		}
	}
	return nil
}

func parseID(s string) uint32 {
	n, _ := strconv.ParseUint(s, 10, 32)
	return uint32(n)
}

// maxDB is the largest /etc/passwd or /etc/group PID 1 reads (real ones
// are kilobytes).
const maxDB = 16 << 20

// scanDB calls fn with the fields of each entry of the sandbox's
// colon-separated database p until fn returns true; a missing file has no
// entries. PID 1 reads it, and the workload may have made it anything:
// it is opened inside the root with no magic link followed, never from
// /proc or /sys (not the init's own /proc/self/…), without blocking (a FIFO would hold the
// request for ever), and read only when it is a regular file of at most
// maxDB bytes, line by line (/dev/urandom made the init's memory grow
// without bound).
func scanDB(p string, fn func(e []string) bool) error {
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: "/", Err: err}
	}
	fd, err := sys.OpenInRoot(root, p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	unix.Close(root)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), p)
	defer func() { _ = f.Close() }() // opened read-only
	st, err := sys.Fstat(fd, p)
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s: not a regular file", p)
	}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return &os.PathError{Op: "fstatfs", Path: p, Err: err}
	}
	if sfs.Type == unix.PROC_SUPER_MAGIC || sfs.Type == unix.SYSFS_MAGIC {
		// /proc/self/… is PID 1's own: not the workload's to read
		// through it.
		return fmt.Errorf("%s: a file of /proc or /sys", p)
	}
	if st.Size > maxDB {
		return fmt.Errorf("%s: %d bytes, more than the %d read", p, st.Size, maxDB)
	}
	sc := bufio.NewScanner(io.LimitReader(f, maxDB))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if fn(strings.Split(line, ":")) {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	return nil
}

// errNotFound and errNotExec carry the shell's exit codes.
type startError struct {
	code int
	err  error
}

func (e *startError) Error() string { return e.err.Error() }

// lookPath finds file in PATH (of env) the way a shell does; a name with a
// slash is taken as it is (relative to dir).
func lookPath(file, dir string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		p := file
		if !path.IsAbs(p) {
			p = path.Join(dir, p)
		}
		st, err := os.Stat(p)
		if err != nil {
			return "", &startError{127, fmt.Errorf("exec %q: %w", file, err)}
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			// Said now, as runc does at create (os/exec's LookPath: not
			// a regular file with an execute bit), not by the exec at
			// start: podman run -d /etc/passwd started a container that
			// exited 126, and the message reached only its log.
			return "", &startError{126, fmt.Errorf("exec %q: permission denied", file)}
		}
		return file, nil
	}
	pathEnv, ok := environ.Lookup(env, "PATH")
	if !ok {
		pathEnv = environ.DefaultPath
	}
	var denied error
	for _, d := range strings.Split(pathEnv, ":") {
		if !path.IsAbs(d) {
			continue
		}
		p := path.Join(d, file)
		st, err := os.Stat(p)
		if err != nil || st.IsDir() {
			continue
		}
		if st.Mode()&0o111 == 0 {
			if denied == nil {
				denied = &startError{126, fmt.Errorf("exec %q: %s: permission denied", file, p)}
			}
			continue
		}
		return p, nil
	}
	if denied != nil {
		return "", denied
	}
	return "", &startError{127, fmt.Errorf("exec %q: executable file not found in $PATH", file)}
}

// capNames are the capabilities by number, as capabilities(7) names them.
var capNames = []string{
	"chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill",
	"setgid", "setuid", "setpcap", "linux_immutable", "net_bind_service",
	"net_broadcast", "net_admin", "net_raw", "ipc_lock", "ipc_owner",
	"sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
	"sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time",
	"sys_tty_config", "mknod", "lease", "audit_write", "audit_control",
	"setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm",
	"block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
}

// fileCapsHint explains an exec of p (relative to dir) that failed with
// EPERM because p carries file capabilities with the effective bit that
// the sandbox's bounding set cannot grant (Debian's ping:
// cap_net_raw=ep): the kernel refuses to run such a program rather than
// run it without them. "" when p carries none of those.
func fileCapsHint(p, dir string) string {
	if !path.IsAbs(p) {
		p = path.Join(dir, p)
	}
	buf := make([]byte, 24)
	n, err := unix.Getxattr(p, "security.capability", buf)
	if err != nil || n < 12 {
		return ""
	}
	magic := binary.LittleEndian.Uint32(buf)
	if magic&1 == 0 { // VFS_CAP_FLAGS_EFFECTIVE: without it the program runs, with fewer capabilities
		return ""
	}
	perm := uint64(binary.LittleEndian.Uint32(buf[4:]))
	if n >= 20 { // revision 2 and 3: a second word of each set
		perm |= uint64(binary.LittleEndian.Uint32(buf[12:])) << 32
	}
	for _, c := range defaultCaps {
		perm &^= 1 << c
	}
	var missing []string
	for c := 0; c < 64; c++ {
		if perm&(1<<c) == 0 {
			continue
		}
		if c < len(capNames) {
			missing = append(missing, "cap_"+capNames[c])
		} else {
			missing = append(missing, "capability "+strconv.Itoa(c))
		}
	}
	if len(missing) == 0 {
		return ""
	}
	return fmt.Sprintf("%s has file capabilities the sandbox does not grant (%s; its processes get podman's default set), and the kernel runs no such program without them", p, strings.Join(missing, ", "))
}

// execErrorCode maps an exec failure to the shell's code.
func execErrorCode(err error) int {
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
		return 127
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM), errors.Is(err, unix.ENOEXEC), errors.Is(err, unix.EISDIR), errors.Is(err, unix.ETXTBSY):
		return 126
	}
	return 0
}

// openPty allocates a pty in the sandbox's devpts: the master, and the
// peer for the workload (TIOCGPTPEER, no path lookup).
func openPty(rows, cols uint16) (master, slave *os.File, err error) {
	m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, &os.PathError{Op: "open", Path: "/dev/ptmx", Err: err}
	}
	if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(m)
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	s, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(m), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		unix.Close(m)
		return nil, nil, fmt.Errorf("open pty peer: %w", errno)
	}
	if rows > 0 && cols > 0 {
		_ = unix.IoctlSetWinsize(m, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}) // a fresh pty master: fails only for a bad fd; the size then stays 0x0, which the client's resize fixes
	}
	return os.NewFile(uintptr(m), "ptmx"), os.NewFile(s, "pty"), nil
}
