package netstack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// tunPath is the tun device the helper opens; a variable for tests.
var tunPath = "/dev/net/tun"

// lookTools finds the helper (helper "" = slirp4netns, else pasta: see
// Options.Helper) and nsenter in PATH; it returns the helper's name and
// path.
func lookTools(helper string) (name, path, nsenter string, err error) {

	switch helper {
	case "":
		if path, err = exec.LookPath(Slirp4netns); err == nil {
			name = Slirp4netns
		} else if path, err = exec.LookPath(Pasta); err == nil {
			name = Pasta
		} else {
			return "", "", "", &unavailableError{cause: "no user-mode network stack: neither pasta nor slirp4netns is in PATH", fix: fixPasta}
		}
	case Pasta, Slirp4netns:
		if path, err = exec.LookPath(helper); err != nil {
			return "", "", "", &unavailableError{cause: helper + " not found in PATH", fix: fixPasta}
		}
		name = helper
	default:
		return "", "", "", fmt.Errorf("network helper %q: not %s or %s", helper, Pasta, Slirp4netns)
	}
	if nsenter, err = exec.LookPath("nsenter"); err != nil {
		return "", "", "", &unavailableError{cause: "nsenter not found in PATH", fix: "install Debian's util-linux package"}
	}
	return name, path, nsenter, nil
}

// Check reports whether private networking can work for this process: the
// helper (slirp4netns or pasta) and nsenter are installed, and the tun device can be
// opened by the user the helper will run as (this process's user). The
// error matches ErrUnavailable and says what to do.
func Check() error {
	if _, _, _, err := lookTools(""); err != nil {
		return err
	}
	groups, _ := os.Getgroups()
	return checkTun(tunPath, os.Geteuid(), os.Getegid(), groups, os.Geteuid() != 0)
}

// checkTun checks that a process with uid, gid and groups (ids in this
// process's user namespace, with no capability over the device, as the
// helper has none in the host's user namespace) can open path read-write.
// With tryOpen (the helper will run as this process's unprivileged user)
// it opens the device; otherwise it judges by the mode bits.
func checkTun(path string, uid, gid int, groups []int, tryOpen bool) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &unavailableError{cause: "no " + path, fix: "load the tun kernel module (modprobe tun) or create the device (mknod -m 0666 " + path + " c 10 200)"}
	}
	if err != nil {
		return &unavailableError{cause: "cannot stat the tun device", err: err, fix: fixTun}
	}
	if fi.Mode()&fs.ModeCharDevice == 0 {
		return &unavailableError{cause: path + " is not a character device", fix: "recreate it (mknod -m 0666 " + path + " c 10 200)"}
	}
	st := fi.Sys().(*syscall.Stat_t)
	perm := uint32(fi.Mode().Perm())
	if tryOpen {
		// The helper is this process's user: opening the device is
		// the answer (it also honours ACLs and a missing driver).
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err == nil {
			return f.Close()
		}
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			return &unavailableError{
				cause: fmt.Sprintf("%s is mode %04o (owner %d, group %d), so the network helper running as uid %d cannot open it", path, perm, st.Uid, st.Gid, uid),
				err:   err,
				fix:   fixTun,
			}
		}
		return &unavailableError{cause: "cannot open the tun device", err: err, fix: "load the tun kernel module (modprobe tun)"}
	}
	var bits uint32
	switch {
	case int(st.Uid) == uid:
		bits = perm >> 6
	case int(st.Gid) == gid || slices.Contains(groups, int(st.Gid)):
		bits = perm >> 3
	default:
		bits = perm
	}
	if bits&6 != 6 {
		return &unavailableError{
			cause: fmt.Sprintf("%s is mode %04o (owner %d, group %d), so the network helper running as uid %d cannot open it", path, perm, st.Uid, st.Gid, uid),
			fix:   fixTun,
		}
	}
	return nil
}

// Attach attaches a user-mode network stack (slirp4netns, or pasta when
// slirp4netns is not installed) to the user and network namespaces of pid, the
// sandbox's init, and returns once the interface inside has its address
// and default route and the published ports are bound on the host (and
// reach the sandbox from the first connection), so the caller can then
// let the workload start. The init must be pid 1 of its own pid
// namespace. Pasta's keeper is this binary re-executed: the program must
// run KeeperMain when reexec.Role() is KeeperRole (lightbox.Init does).
// See the package doc for the helper's lifetime and ids.
//
// A failure that Check would report matches ErrUnavailable; a bad port
// matches ErrInvalidPort. When ctx ends during setup the helper may be
// left attached; it dies with the sandbox like any helper.
func Attach(ctx context.Context, pid int, opts Options) (*Stack, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := ValidatePorts(opts.Ports); err != nil {
		return nil, err
	}
	helper, path, nsenter, err := lookTools(opts.Helper)
	if err != nil {
		return nil, err
	}
	if err := portsFor(helper, opts.Ports); err != nil {
		return nil, err
	}
	if err := ownUserns(pid); err != nil {
		return nil, fmt.Errorf("attach network to pid %d: %w", pid, err)
	}
	uid, err := rootID(pid, "uid_map")
	if err != nil {
		return nil, fmt.Errorf("attach network to pid %d: %w", pid, err)
	}
	gid, err := rootID(pid, "gid_map")
	if err != nil {
		return nil, fmt.Errorf("attach network to pid %d: %w", pid, err)
	}
	var groups []int
	if uid == os.Geteuid() {
		// nsenter --preserve-credentials keeps our supplementary groups.
		groups, _ = os.Getgroups()
	} else if os.Geteuid() != 0 {
		return nil, fmt.Errorf("attach network to pid %d: its root is uid %d, not this process's uid %d", pid, uid, os.Geteuid())
	}
	// Who the helper runs as: the sandbox's root, unless that is the
	// host's root (a store that maps ids to themselves); then nobody.
	run, err := helperIDs(pid, uid, gid)
	if err != nil {
		return nil, fmt.Errorf("attach %s to pid %d: %w", helper, pid, err)
	}
	if run.hostUID != uid {
		groups = nil // dropped on the way to nobody
	}
	if err := checkTun(tunPath, run.hostUID, run.hostGID, groups, run.hostUID == os.Geteuid() && run.hostUID != 0); err != nil {
		return nil, err
	}
	if err := checkPorts(opts.Ports); err != nil {
		return nil, err
	}
	// The helper drops capabilities before it opens the namespace it is
	// given, and then may not open /proc/PID/ns/net of a process with
	// more capabilities (the sandbox's init): hand it an open descriptor.
	netns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return nil, fmt.Errorf("attach network to pid %d: %w", pid, err)
	}
	defer func() { _ = netns.Close() }() // a namespace descriptor: nothing to flush; the helper has its own copy
	// The helper's lifetime: a pidfd of the init turns readable when it
	// is gone (slirp4netns's --exit-fd, pasta's keeper).
	initFD, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("attach network to pid %d: pidfd_open: %w", pid, err)
	}
	initf := os.NewFile(uintptr(initFD), "init")
	defer func() { _ = initf.Close() }() // a pidfd: nothing to flush; the helper has its own copy
	logFile, err := memfile(helper + "-log")
	if err != nil {
		return nil, err
	}
	defer func() { _ = logFile.Close() }() // a memfd: closing loses nothing, and the helper writes through its own copy
	// nsenter joins the sandbox's user namespace (the helpers' own attach
	// by pid cannot: they would try to join it again) and nothing else:
	// the helper stays in our pid, network and mount namespaces, out of
	// the workload's sight. It starts as root of the sandbox's user
	// namespace (this process's own user mapped in, or a subordinate id
	// when real root uses a sub-range), so it has no capability on the
	// host.
	nsArgs := []string{"--target", strconv.Itoa(pid), "--user"}
	if uid == os.Geteuid() {
		// Our ids are root inside. Keep them: nsenter's setgroups
		// would fail where the map was written without setgroups.
		nsArgs = append(nsArgs, "--preserve-credentials")
	} else {
		// Real root with a sandbox mapped to subordinate ids: become
		// its root, or exec would drop the capabilities in there.
		nsArgs = append(nsArgs, "--setuid", "0", "--setgid", "0")
	}
	h := helperStart{log: log, pid: pid, nsenter: nsenter, nsArgs: nsArgs, run: run, netns: netns, init: initf, exit: opts.Exit, logFile: logFile}
	// The host's search domains and resolver options, for the sandbox's
	// resolv.conf; the forwarder reads the same file for the nameserver.
	// None when it cannot be read (neither can the forwarder).
	conf, _ := os.ReadFile(resolvConfPath)
	attach := attachPasta
	if helper == Slirp4netns {
		attach = attachSlirp
	}
	st, err := attach(ctx, h, path, opts.Ports)
	if err != nil {
		return nil, err
	}
	st.search = resolvSearch(conf)
	return st, nil
}

// resolvConfPath is the host's resolver configuration, which both
// helpers' forwarders read.
const resolvConfPath = "/etc/resolv.conf"

// helperStart is what Attach found out for starting the helper.
type helperStart struct {
	log     *slog.Logger
	pid     int      // the sandbox's init
	nsenter string   // nsenter's path
	nsArgs  []string // nsenter's options that join the sandbox's user namespace as its root
	run     runAs    // who the helper runs as
	netns   *os.File // the sandbox's network namespace
	init    *os.File // pidfd of the sandbox's init
	exit    *os.File // Options.Exit: hangs up at the init's exit; nil for none
	logFile *os.File // the helper's output
}

// start starts nsenter with h.nsArgs, then args (the program and its
// arguments), with env, files as descriptors 3 and on, and output to
// h.logFile; it closes w, the write end of a pipe the child holds, once
// the child has its copy.
func (h helperStart) start(helper string, args, env []string, files []*os.File, w *os.File) (*exec.Cmd, error) {
	// Not CommandContext: once started, the helper belongs to the sandbox.
	cmd := exec.Command(h.nsenter, append(append(h.nsArgs[:len(h.nsArgs):len(h.nsArgs)], "--"), args...)...)
	cmd.ExtraFiles = files
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = h.logFile, h.logFile
	h.log.Debug("start network helper", "helper", helper, "target_pid", h.pid, "args", strings.Join(cmd.Args, " "))
	err := cmd.Start()
	_ = w.Close() // our copy of the child's write end: nothing written through it
	if err != nil {
		return nil, fmt.Errorf("attach %s to pid %d: %w", helper, h.pid, err)
	}
	return cmd, nil
}

// helperFailed is the error for a helper that exited with err, having
// printed out.
func helperFailed(ctx context.Context, helper string, pid int, err error, out string) error {
	if strings.Contains(out, "/dev/net/tun") || strings.Contains(out, "tun socket") || strings.Contains(out, "tun device") {
		// pasta says "Failed to open tun socket in namespace" when
		// it cannot open the device (or make a tap there).
		return &unavailableError{cause: helper + " cannot create the sandbox's tap interface (" + out + ")", fix: fixTun}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("attach %s to pid %d: %w", helper, pid, ctx.Err())
	}
	if out == "" {
		return fmt.Errorf("attach %s to pid %d: %w", helper, pid, err)
	}
	return fmt.Errorf("attach %s to pid %d: %w: %s", helper, pid, err, out)
}

// pastaArgs are the options of pasta (Debian 12's passt 2023-03-09 and
// later) for netns (a path), a pid file, the ids it runs as, the MAC
// address of the sandbox's interface and the published ports.
func pastaArgs(netns, pidFile string, uid, gid int, mac string, ports []Port) []string {
	args := []string{
		// The ids it already has (see KeeperMain): the default would
		// be nobody when they are 0 in the sandbox's namespace.
		"--runas", strconv.Itoa(uid) + ":" + strconv.Itoa(gid),
		"--config-net", // configure the interface, then daemonize
		// Pasta 2023-03-09 does not read back the MAC address of the tap
		// it brings up with --config-net: it sends frames to
		// 00:00:00:00:00:00, which the sandbox's kernel drops, until the
		// sandbox sends a frame of its own (an IPv6 router solicitation
		// or MLD report, up to a second or so after the link comes up).
		// A connection to a published port on a non-loopback address in
		// that window got a SYN the sandbox never saw, and pasta does not
		// retransmit it for 10 s. Naming the MAC makes pasta set it on
		// the tap and use it from the first frame.
		"--ns-mac-addr", mac,
		"--quiet",
		"--netns", netns,
		// The path is a descriptor of ours, not a bind mount to watch:
		// the helper's lifetime comes from the pid namespace instead.
		"--no-netns-quit",
		"--pid", pidFile,
		// Host loopback stays out of reach: no gateway-to-127.0.0.1
		// mapping and no forwarding of ports bound on the host.
		"--no-map-gw",
		"-T", "none", "-U", "none",
		"--dns-forward", DNSForwarder,
	}
	var tcp, udp []string
	for _, p := range ports {
		spec := p.hostIP() + "/" + strconv.Itoa(p.HostPort) + ":" + strconv.Itoa(p.Port)
		if p.proto() == "udp" {
			udp = append(udp, spec)
		} else {
			tcp = append(tcp, spec)
		}
	}
	for _, x := range []struct {
		flag  string
		specs []string
	}{{"-t", tcp}, {"-u", udp}} {
		if len(x.specs) == 0 {
			args = append(args, x.flag, "none")
		}
		for _, s := range x.specs {
			args = append(args, x.flag, s)
		}
	}
	return args
}

// guestMAC is a random locally administered unicast MAC address for the
// sandbox's interface.
func guestMAC() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random MAC address: %w", err)
	}
	b[0] = b[0]&^1 | 2 // unicast, locally administered
	return net.HardwareAddr(b[:]).String(), nil
}

// ownUserns checks that pid is in a user namespace other than ours: the
// helper runs as its root, which must not be ours.
func ownUserns(pid int) error {
	theirs, err := os.Stat(fmt.Sprintf("/proc/%d/ns/user", pid))
	if err != nil {
		return err
	}
	ours, err := os.Stat("/proc/self/ns/user")
	if err != nil {
		return err
	}
	if os.SameFile(theirs, ours) {
		return errors.New("it shares this process's user namespace: a sandbox needs its own")
	}
	return nil
}

// portsFor refuses the ports helper cannot publish, before it starts:
// slirp4netns (1.2.0, Debian 12's) knows no IPv6 host address, and would
// only answer "bad arguments.host_addr" once attached.
func portsFor(helper string, ports []Port) error {
	if helper != Slirp4netns {
		return nil
	}
	for _, p := range ports {
		if a, err := netip.ParseAddr(p.hostIP()); err == nil && a.Is6() {
			return fmt.Errorf("publish port %s: %w: slirp4netns cannot publish a port on an IPv6 host address: use --network private:pasta (NetworkPrivatePasta), or an IPv4 host address", p, ErrInvalidPort)
		}
	}
	return nil
}

// checkPorts catches the usual reasons a port cannot be published before
// the helper starts (which would only warn): a port in use, an address
// not on this host, a privileged port.
func checkPorts(ports []Port) error {
	start := 1024
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			start = n
		}
	}
	for _, p := range ports {
		if p.HostPort < start {
			// The helper binds from inside the sandbox's user
			// namespace, without privileges on the host, even for root.
			return fmt.Errorf("publish port %s: %w: host port %d is privileged (below net.ipv4.ip_unprivileged_port_start=%d): pick a host port of %d or above", p, ErrInvalidPort, p.HostPort, start, start)
		}
		addr := net.JoinHostPort(p.hostIP(), strconv.Itoa(p.HostPort))
		var c io.Closer
		var err error
		if p.proto() == "udp" {
			c, err = net.ListenPacket("udp", addr)
		} else {
			c, err = net.Listen("tcp", addr)
		}
		if err != nil {
			switch {
			case errors.Is(err, unix.EADDRINUSE):
				return fmt.Errorf("publish port %s: %s is already in use", p, addr)
			case errors.Is(err, unix.EADDRNOTAVAIL):
				return fmt.Errorf("publish port %s: %w: %s is not an address of this host", p, ErrInvalidPort, p.hostIP())
			}
			return fmt.Errorf("publish port %s: %w", p, err)
		}
		_ = c.Close() // a probe listener that accepted nothing: the port is free again either way
	}
	return nil
}

// memfile is an anonymous file for the helper's output or pid file.
func memfile(name string) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// helperOutput is what the helper printed, without its complaints about
// a missing syslog.
func helperOutput(f *os.File) string {
	b, _ := io.ReadAll(io.NewSectionReader(f, 0, 1<<20))
	var keep []string
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" || (strings.HasPrefix(line, "Failed to send ") && strings.HasSuffix(line, " to syslog")) {
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "; ")
}

func readPidFile(f *os.File) (int, error) {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 64))
	if err != nil {
		return 0, fmt.Errorf("read pasta's pid file: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("pasta's pid file holds %q, not a pid", b)
	}
	return n, nil
}

// procStatus reads the PPid and NSpid lines of /proc/PID/status.
func procStatus(pid int) (ppid int, nspid []int, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = f.Close() }() // /proc/PID/status opened read-only: nothing to flush
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch k {
		case "PPid":
			ppid, _ = strconv.Atoi(strings.TrimSpace(v))
		case "NSpid":
			for _, s := range strings.Fields(v) {
				n, _ := strconv.Atoi(s)
				nspid = append(nspid, n)
			}
		}
	}
	return ppid, nspid, sc.Err()
}

// startTime is field 22 of /proc/PID/stat: with the pid, it names one
// process for good.
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// stopHelper sends SIGTERM to the helper (pid, started at start), then
// SIGKILL if it has not exited within two seconds, and waits for it to
// exit. It is not our child: its parent, the sandbox's init, reaps it.
func stopHelper(pid int, start uint64) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stop network helper %d: pidfd_open: %w", pid, err)
	}
	defer unix.Close(fd)
	if st, err := startTime(pid); err != nil || st != start {
		return nil // gone, and the pid reused
	}
	for _, sig := range []unix.Signal{unix.SIGTERM, unix.SIGKILL} {
		if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
			if errors.Is(err, unix.ESRCH) {
				return nil
			}
			return fmt.Errorf("stop network helper %d: %w", pid, err)
		}
		if exited(fd, 2*time.Second) {
			return nil
		}
	}
	return fmt.Errorf("stop network helper %d: still running after SIGKILL", pid)
}

// exited waits up to d for the process behind pidfd fd to exit.
func exited(fd int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left < 0 {
			left = 0
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(left/time.Millisecond))
		if err == nil {
			return n > 0
		}
		if !errors.Is(err, unix.EINTR) {
			return false
		}
	}
}
