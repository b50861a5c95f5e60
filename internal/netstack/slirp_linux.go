package netstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/beamhop/lightbox/internal/procidmap"
	"github.com/beamhop/lightbox/internal/reexec/child"
)

// slirpDNS is slirp4netns's built-in DNS forwarder.
const slirpDNS = "10.0.2.3"

// slirpCaps are the capabilities slirp4netns keeps in the sandbox's user
// namespace when it runs as nobody there: to enter the sandbox's network
// namespace and make and configure the tap, and (--enable-sandbox) to
// pivot into an empty root of its own before it drops them all.
const slirpCaps = "+sys_admin,+net_admin"

// attachSlirp starts slirp4netns on the sandbox's network namespace, in
// its user namespace only (outside its pid namespace, as pasta), waits
// until it has configured the interface, and publishes ports through its
// API socket.
//
// nsenter execs it (through setpriv when it is to run as nobody), so it is
// a child of this process, which reaps it while it lives; it does not
// daemonize. It dies with the sandbox on its own: --exit-fd hangs up when
// the sandbox's init exits (Options.Exit; else a pidfd, once it is reaped).
// --enable-sandbox and --enable-seccomp confine it (an empty root, no
// capability, a syscall filter) before it reads a packet: the workload
// cannot name it (another pid namespace), and it owns sockets in the
// host's network namespace.
func attachSlirp(ctx context.Context, h helperStart, slirp string, ports []Port) (*Stack, error) {
	pid, log, logFile := h.pid, h.log, h.logFile
	fail := func(err error) (*Stack, error) {
		return nil, fmt.Errorf("attach slirp4netns to pid %d: %w", pid, err)
	}
	var args []string
	if !h.run.root() {
		// The sandbox's root is the host's root: become nobody, with
		// the capabilities slirp4netns needs in the sandbox's user
		// namespace only.
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			return nil, &unavailableError{cause: "setpriv not found in PATH", fix: "install Debian's util-linux package"}
		}
		groups := "--keep-groups"
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/setgroups", pid)); err == nil && strings.TrimSpace(string(b)) == "allow" {
			groups = "--clear-groups"
		}
		args = append(args, setpriv, "--reuid="+strconv.Itoa(h.run.uid), "--regid="+strconv.Itoa(h.run.gid), groups,
			"--inh-caps=-all,"+slirpCaps, "--ambient-caps="+slirpCaps, "--")
	}
	args = append(args, slirp, "--configure", "--mtu=65520", "--disable-host-loopback",
		"--netns-type=path", "--ready-fd=4", "--exit-fd=5")
	if h.run.root() {
		// Confined before it reads a packet. Not as nobody: its
		// sandbox needs to become root of the user namespace first.
		args = append(args, "--enable-sandbox", "--enable-seccomp")
	}
	var api string
	if len(ports) > 0 {
		// The API socket lives in a directory of its own, 0700, owned by
		// the id slirp4netns binds it as, and goes once the ports are
		// published (slirp4netns keeps the listening socket, which
		// nothing can reach by name then).
		apiDir, held, err := makeAPIDir()
		if err != nil {
			return fail(err)
		}
		defer func() { _ = held.Close() }() // releases the flock, after the removal below
		defer func() {
			// One left by a killed launch goes with SweepAPIDirs; one
			// that cannot be removed now is logged.
			if err := os.RemoveAll(apiDir); err != nil {
				h.log.Warn("network: cannot remove slirp4netns's API directory", "path", apiDir, "err", err)
			}
		}()
		if h.run.hostUID != os.Geteuid() {
			if err := os.Chown(apiDir, h.run.hostUID, h.run.hostGID); err != nil {
				return fail(err)
			}
		}
		api = filepath.Join(apiDir, "api.sock")
		args = append(args, "--api-socket", api)
	}
	args = append(args, "/proc/self/fd/3", "tap0")
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	defer func() { _ = readyR.Close() }() // the read end: what is unread once we stop waiting is of no use
	// --exit-fd: slirp4netns exits when it hangs up. The gone pipe
	// (Options.Exit) hangs up at the init's exit; a pidfd only once the
	// init is reaped.
	exitf := h.init
	if h.exit != nil {
		exitf = h.exit
	}
	cmd, err := h.start(Slirp4netns, args, []string{}, []*os.File{h.netns, readyW, exitf}, readyW)
	if err != nil {
		return nil, err
	}
	// Each connection of the sandbox's is a socket of slirp4netns's,
	// which would otherwise have the soft RLIMIT_NOFILE this process's
	// children get (1024 in a user's session; Go raised only its own):
	// past it, the sandbox's connections fail as "network is
	// unreachable". It gets the hard limit, before it is ready, so
	// before any traffic (pasta raises its own).
	if err := raiseNofile(cmd.Process.Pid, pid); err != nil {
		log.Warn("network: cannot raise slirp4netns's open-file limit: the sandbox's connections are limited by this process's", "pid", cmd.Process.Pid, "err", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	ready := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := io.ReadFull(readyR, b[:])
		ready <- err
	}()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // fails only when it is gone already
		select {
		case <-done:
			return
		case <-time.After(2 * time.Second):
		}
		_ = cmd.Process.Kill() // fails only when it is gone already
		<-done
	}
	select {
	case err := <-ready:
		if err != nil {
			// It exited before it was ready.
			werr := <-done
			return nil, helperFailed(ctx, Slirp4netns, pid, werr, helperOutput(logFile))
		}
	case <-ctx.Done():
		stop()
		return fail(ctx.Err())
	}
	for _, p := range ports {
		if err := slirpForward(ctx, api, p); err != nil {
			stop()
			return fail(forwardFailed(p, err))
		}
	}
	log.Debug("network helper ready", "helper", Slirp4netns, "target_pid", pid, "pid", cmd.Process.Pid)
	return &Stack{
		helper: Slirp4netns,
		dns:    slirpDNS,
		pids:   []int{cmd.Process.Pid},
		close: func() error {
			stop()
			return nil
		},
	}, nil
}

// slirpForward asks slirp4netns, through its API socket, to publish p.
func slirpForward(ctx context.Context, api string, p Port) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", api)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }() // the API connection, after the response was read (or the error that ended it)
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl) // fails only on a closed conn: its I/O then fails
	} else {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second)) // fails only on a closed conn: its I/O then fails
	}
	req := map[string]any{"execute": "add_hostfwd", "arguments": map[string]any{
		"proto": p.proto(), "host_addr": p.hostIP(), "host_port": p.HostPort, "guest_port": p.Port,
	}}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return err
	}
	_ = c.(*net.UnixConn).CloseWrite() // fails only on a closed conn: the read then fails
	var resp struct {
		Return map[string]any `json:"return"`
		Error  *struct {
			Desc string `json:"desc"`
		} `json:"error"`
	}
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return fmt.Errorf("slirp4netns API: %w", err)
	}
	if resp.Error != nil {
		return errors.New(resp.Error.Desc)
	}
	return nil
}

// forwardFailed is the error of a port slirp4netns could not publish.
// Its API says only "slirp_add_hostfwd failed"; the usual cause is a
// host port taken since checkPorts found it free (two launches racing
// for it), which probing it again names.
func forwardFailed(p Port, err error) error {
	if perr := checkPorts([]Port{p}); perr != nil {
		return perr
	}
	return fmt.Errorf("publish port %s: %w", p, err)
}

// findChild finds the one child of parent and its start time.
func findChild(parent int) (int, uint64, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, 0, err
	}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, err := procStatus(p); err != nil || ppid != parent {
			continue
		}
		start, err := startTime(p)
		if err != nil {
			continue
		}
		return p, start, nil
	}
	return 0, 0, fmt.Errorf("no child of pid %d", parent)
}

// raiseNofile sets the soft RLIMIT_NOFILE of process pid to the hard
// limit of this process (which it inherited). Changing another process's
// limits takes the same real ids as its, or CAP_SYS_RESOURCE in its user
// namespace, which a root that a container manager started may lack (its
// bounding set without it). The owner of a namespace has every
// capability in it, so the call is made as the owner of the sandbox's
// (sandbox is its init's pid; child.AsOwner keeps the real uid): allowed
// whether pid has entered that namespace yet (as the namespace's root)
// or not (as this process's ids).
func raiseNofile(pid, sandbox int) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	lim.Cur = lim.Max
	owner, err := procidmap.Owner(sandbox)
	if err != nil {
		return err
	}
	return child.AsOwner(owner, func() error { return unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lim, nil) })
}

// apiDirPrefix starts the names of the directories of slirp4netns's API
// sockets in the temporary directory.
const apiDirPrefix = "lightbox-net-"

// apiDirMinAge is how old a directory must be before SweepAPIDirs takes
// it for one a killed launch left: a younger one may not be locked yet.
const apiDirMinAge = time.Minute

// makeAPIDir makes a directory for slirp4netns's API socket and returns it
// with a flock held on it (by the returned file) while the launch uses it.
func makeAPIDir() (string, *os.File, error) {
	dir, err := os.MkdirTemp("", apiDirPrefix)
	if err != nil {
		return "", nil, err
	}
	f, err := os.Open(dir)
	if err == nil {
		err = flockRetry(int(f.Fd()), unix.LOCK_EX)
		if err != nil {
			_ = f.Close() // a directory opened read-only, for its lock
		}
	}
	if err != nil {
		_ = os.Remove(dir) // empty, just made: the error returned says why
		return "", nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return dir, f, nil
}

func flockRetry(fd, how int) error {
	for {
		if err := unix.Flock(fd, how); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// SweepAPIDirs removes the directories of slirp4netns's API sockets that
// launches killed while they published ports left in the temporary
// directory: older than a minute, held by no launch (its flock went with
// it). It returns the paths it removed; one it cannot remove is logged.
func SweepAPIDirs(log *slog.Logger) []string {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), apiDirPrefix+"*")) // the pattern is valid
	var removed []string
	for _, dir := range dirs {
		fi, err := os.Lstat(dir)
		if err != nil || !fi.IsDir() || time.Since(fi.ModTime()) < apiDirMinAge {
			continue
		}
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // another user's, or gone
		}
		if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil {
			if err := os.RemoveAll(dir); err != nil {
				log.Warn("network: cannot remove a stale API directory of slirp4netns", "path", dir, "err", err)
			} else {
				removed = append(removed, dir)
			}
		}
		_ = unix.Close(fd) // a directory opened read-only, for its lock
	}
	return removed
}
