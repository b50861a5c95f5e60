package netstack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/beamhop/lightbox/internal/reexec"
	"golang.org/x/sys/unix"
)

// KeeperRole is the re-exec role of the process that keeps pasta: a
// program that calls Attach must run KeeperMain when it is started with
// this role (lightbox.Init does).
const KeeperRole = "netkeeper"

// keeperSpawn is the keeper's first argument when it is to start itself
// again as pid 1 of a new pid namespace.
const keeperSpawn = "spawn"

// Descriptors of the keeper (ExtraFiles of nsenter).
const (
	keeperNetns  = 3 // the sandbox's network namespace, for pasta
	keeperInit   = 4 // pidfd of the sandbox's init
	keeperStatus = 5 // "ready" or "error: ..." and a newline
	keeperExe    = 6 // the binary the keeper runs from
)

// attachPasta starts pasta under a keeper, outside the sandbox's pid
// namespace (see the package doc), and returns once pasta has bound the
// published ports and configured the sandbox's interface.
func attachPasta(ctx context.Context, h helperStart, pasta string, ports []Port) (*Stack, error) {
	pid, log, logFile := h.pid, h.log, h.logFile
	fail := func(err error) (*Stack, error) {
		return nil, fmt.Errorf("attach pasta to pid %d: %w", pid, err)
	}
	exe, err := os.Open("/proc/self/exe")
	if err != nil {
		return fail(err)
	}
	defer func() { _ = exe.Close() }() // /proc/self/exe opened read-only: nothing to flush; the spawner has its own copy
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	defer func() { _ = statusR.Close() }() // the read end: what is unread once we stop waiting is of no use
	mac, err := guestMAC()
	if err != nil {
		_ = statusW.Close() // the write end, not yet handed to any child: nothing written through it
		return fail(err)
	}
	run := h.run
	args := []string{"/proc/self/fd/" + strconv.Itoa(keeperExe), keeperSpawn,
		pasta, strconv.Itoa(run.uid), strconv.Itoa(run.gid), "--"}
	args = append(args, pastaArgs("/proc/self/fd/3", "/proc/self/fd/4", run.uid, run.gid, mac, ports)...)
	// nsenter execs the spawner, which starts the keeper and exits.
	cmd, err := h.start(Pasta, args, []string{reexec.EnvRole + "=" + KeeperRole, "GOMAXPROCS=1"},
		[]*os.File{h.netns, h.init, statusW, exe}, statusW)
	if err != nil {
		return nil, err
	}
	go func() { _ = cmd.Wait() }() // the spawner exits once the keeper is started
	// The spawner says "keeper PID", then the keeper "ready" or
	// "error: ..."; EOF when both are gone.
	status := make(chan string, 2)
	go func() {
		rd := bufio.NewReader(statusR)
		for range 2 {
			line, _ := rd.ReadString('\n')
			status <- strings.TrimSpace(line)
		}
	}()
	kpid, kstart := 0, uint64(0)
	kill := func() {
		if kpid > 0 {
			if err := stopHelper(kpid, kstart); err != nil {
				// The start's own error is returned; a keeper that
				// will not stop dies with the sandbox's init (its
				// pidfd), and until then it is logged.
				log.Warn("network: cannot stop the keeper of a failed start", "pid", kpid, "err", err)
			}
		}
		_ = cmd.Process.Kill() // our child (the spawner), reaped by the Wait above: fails only when it is gone already
	}
	for ready := false; !ready; {
		var line string
		select {
		case line = <-status:
		case <-ctx.Done():
			kill()
			return fail(ctx.Err())
		}
		if n, ok := strings.CutPrefix(line, "keeper "); ok && kpid == 0 {
			if kpid, err = strconv.Atoi(n); err != nil || kpid <= 0 {
				kpid = 0
				kill()
				return fail(fmt.Errorf("keeper said %q", line))
			}
			if kstart, err = startTime(kpid); err != nil {
				kill()
				return fail(fmt.Errorf("keeper %d: %w", kpid, err))
			}
			continue
		}
		if ready = line == "ready"; !ready {
			kill()
			out := helperOutput(logFile)
			msg := strings.TrimPrefix(line, "error: ")
			if msg == "" {
				msg = "the keeper exited"
			}
			return nil, helperFailed(ctx, Pasta, pid, errors.New(msg), out)
		}
	}
	if out := helperOutput(logFile); out != "" {
		log.Warn("network helper", "helper", Pasta, "target_pid", pid, "output", out)
	}
	hpid, hstart, err := findChild(kpid)
	if err != nil {
		kill()
		return fail(fmt.Errorf("pasta exited right after it started: %w", err))
	}
	log.Debug("network helper ready", "helper", Pasta, "target_pid", pid, "pid", hpid, "keeper", kpid)
	return &Stack{
		helper: Pasta,
		dns:    DNSForwarder,
		pids:   []int{hpid, kpid},
		close: func() error {
			fd, err := unix.PidfdOpen(hpid, 0)
			if err == nil {
				defer unix.Close(fd)
				if st, err := startTime(hpid); err != nil || st != hstart {
					unix.Close(fd)
					fd = -1
				}
			}
			// pasta dies with its pid namespace, whose init is the keeper.
			err = stopHelper(kpid, kstart)
			if fd >= 0 && !exited(fd, 2*time.Second) {
				return errors.Join(err, fmt.Errorf("stop network helper %d: still running after its keeper exited", hpid))
			}
			return err
		},
	}, nil
}

// KeeperMain runs the keeper of pasta; it never returns. nsenter starts it
// in the sandbox's user namespace as its root, as "spawn PASTA UID GID --
// ARGS...": it starts itself again without "spawn" as pid 1 of a new pid
// namespace, says "keeper PID" and exits. It starts
// pasta as UID:GID (ids of the sandbox's user namespace) with the
// capabilities pasta needs there and no others, waits until pasta has
// daemonized (its ports bound and the sandbox's interface configured),
// drops its own ids and capabilities, says "ready", then stays until the
// sandbox's init exits (its pidfd is descriptor 4) or pasta does. Its exit
// ends the pid namespace, and with it pasta.
func KeeperMain() {
	os.Exit(keeperMain(os.Args[1:]))
}

func keeperMain(args []string) int {
	status := os.NewFile(keeperStatus, "status")
	report := func(format string, a ...any) {
		fmt.Fprintf(status, format+"\n", a...)
	}
	unix.Close(keeperExe) // /proc/self/exe is the same binary
	if len(args) > 0 && args[0] == keeperSpawn {
		// The keeper proper is pid 1 of a new pid namespace (a child
		// of the caller's, owned by the sandbox's user namespace, in
		// which this process is root): when it exits, the kernel kills
		// pasta with it.
		cmd := exec.Command("/proc/self/exe", args[1:]...)
		cmd.ExtraFiles = []*os.File{os.NewFile(keeperNetns, "netns"), os.NewFile(keeperInit, "init"), status}
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWPID}
		if err := cmd.Start(); err != nil {
			report("error: keeper: %v", err)
			return 1
		}
		report("keeper %d", cmd.Process.Pid)
		return 0 // the keeper is reparented to the caller's reaper
	}
	if len(args) < 4 || args[3] != "--" {
		report("error: keeper: bad arguments %q", args)
		return 2
	}
	uid, err1 := strconv.Atoi(args[1])
	gid, err2 := strconv.Atoi(args[2])
	if err1 != nil || err2 != nil {
		report("error: keeper: bad ids %q:%q", args[1], args[2])
		return 2
	}
	pidFile, err := memfile("pasta-pid")
	if err != nil {
		report("error: %v", err)
		return 1
	}
	cmd := exec.Command(args[0], args[4:]...)
	cmd.ExtraFiles = []*os.File{os.NewFile(keeperNetns, "netns"), pidFile}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Env = []string{}
	setgroups := setgroupsAllowed()
	if uid != 0 || gid != 0 {
		// Becoming a non-root id drops every capability; pasta needs
		// these three in the sandbox's user namespace: to enter its
		// network namespace and make the tap there, and to splice
		// connections to low ports.
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Credential:  &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: !setgroups},
			AmbientCaps: []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN, unix.CAP_NET_BIND_SERVICE},
		}
	}
	if err := noDAD(keeperNetns); err != nil {
		report("error: keeper: %v", err)
		return 1
	}
	// pasta's parent exits once the ports are bound and the interface is
	// configured, after the daemon is forked: that is the readiness.
	if err := cmd.Run(); err != nil {
		report("error: %v", err)
		return 1
	}
	if _, err := readPidFile(pidFile); err != nil {
		report("error: %v", err)
		return 1
	}
	_ = pidFile.Close() // a memfd pasta wrote and readPidFile read: pasta's copy closed with it
	if err := dropPrivileges(uid, gid, setgroups); err != nil {
		report("error: keeper: %v", err)
		return 1
	}
	report("ready")
	_ = status.Close() // the status pipe's write end, after its last line: a pipe write is in the kernel once write returns
	unix.Close(keeperNetns)
	go func() {
		fds := []unix.PollFd{{Fd: keeperInit, Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); !errors.Is(err, unix.EINTR) {
				break
			}
		}
		os.Exit(0) // the sandbox's init exited: pasta goes with us
	}()
	for {
		// Reap pasta's daemon (ours once its parent exited) and any
		// orphan; no child left means pasta is gone.
		var ws unix.WaitStatus
		if _, err := unix.Wait4(-1, &ws, 0, nil); errors.Is(err, unix.ECHILD) {
			return 0
		}
	}
}

// noDAD turns off IPv6 duplicate address detection for the interfaces
// made from now on in the network namespace netns (a descriptor), that
// is the one pasta makes there. A connection from one of the host's own
// addresses to a port pasta publishes reaches the sandbox from and to
// link-local addresses (the sandbox has copies of the host's addresses),
// and pasta 2023-03-09 learns the sandbox's link-local address only from
// a frame the sandbox sends from it: until then it sends such a
// connection's SYN to its own link-local address, the sandbox drops it,
// and the client waits 10 s for a reset. Detection would keep that
// address tentative for a second or more after the link is up; without
// it the address is usable at once, and the kernel sends its router
// solicitation from it right as pasta brings the link up (from a work
// item the kernel queues then), well before the launch returns; the
// frame waits on pasta's tap descriptor until pasta reads it (measured:
// TestPublishHostAddress). The only
// other node on the sandbox's link is pasta, which duplicates no address
// (it adds the copied global addresses with detection off itself). A
// host without IPv6 has nothing to turn off.
func noDAD(netns int) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine, in the sandbox's network namespace
		if err := unix.Setns(netns, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("join the sandbox's network namespace: %w", err)
			return
		}
		// /proc/sys/net is the calling thread's network namespace's.
		err := os.WriteFile("/proc/sys/net/ipv6/conf/default/accept_dad", []byte("0\n"), 0)
		if errors.Is(err, os.ErrNotExist) {
			err = nil // IPv6 is off (ipv6.disable=1): no address to detect
		}
		errc <- err
	}()
	return <-errc
}

// setgroupsAllowed reports whether this process's user namespace allows
// setgroups (a map written by root) or not (one written by its owner).
func setgroupsAllowed() bool {
	b, err := os.ReadFile("/proc/self/setgroups")
	return err == nil && strings.TrimSpace(string(b)) == "allow"
}

// dropPrivileges becomes uid:gid (of the sandbox's user namespace) with no
// capability, in every thread.
func dropPrivileges(uid, gid int, setgroups bool) error {
	if uid == 0 && gid == 0 {
		return dropCaps()
	}
	if setgroups {
		if err := syscall.Setgroups(nil); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid %d: %w", uid, err)
	}
	if uid == 0 {
		return dropCaps()
	}
	return nil // leaving uid 0 cleared every capability
}
