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
	"time"
)

// slirpDNS is slirp4netns's built-in DNS forwarder.
const slirpDNS = "10.0.2.3"

// attachSlirp starts slirp4netns through nsenter (nsArgs end with its
// path) on the network namespace netns of pid, waits until it has
// configured the interface, and publishes ports through its API socket.
//
// Unlike pasta it does not daemonize: nsenter stays its parent until it
// exits, and a goroutine of ours reaps nsenter. It runs without
// --enable-sandbox on purpose: that option drops all its capabilities in
// the sandbox's user namespace, after which a workload with the default
// capabilities could ptrace it and use its sockets in the host's network
// namespace.
func attachSlirp(ctx context.Context, log *slog.Logger, pid, uid, gid int, nsenter string, nsArgs []string, netns, logFile *os.File, ports []Port) (*Stack, error) {
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer func() { _ = readyR.Close() }() // pipe end: nothing buffered to lose
	args := []string{"--configure", "--mtu=65520", "--disable-host-loopback", "--netns-type=path", "--ready-fd=4"}
	var apiDir, api string
	if len(ports) > 0 {
		if apiDir, err = os.MkdirTemp("", "lightbox-net-"); err != nil {
			_ = readyW.Close() // pipe end: nothing buffered to lose
			return nil, err
		}
		defer func() { _ = os.RemoveAll(apiDir) }() // best effort cleanup
		if uid != os.Geteuid() {
			// slirp4netns runs as the sandbox's root (a subordinate id
			// when real root uses a private range): it binds the socket.
			if err := os.Chown(apiDir, uid, gid); err != nil {
				_ = readyW.Close() // pipe end: nothing buffered to lose
				return nil, err
			}
		}
		api = filepath.Join(apiDir, "api.sock")
		args = append(args, "--api-socket", api)
	}
	args = append(args, "/proc/self/fd/3", "tap0")
	// Not CommandContext: once started, the helper belongs to the sandbox.
	cmd := exec.Command(nsenter, append(nsArgs, args...)...)
	cmd.ExtraFiles = []*os.File{netns, readyW}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	log.Debug("start network helper", "helper", Slirp4netns, "target_pid", pid, "args", strings.Join(cmd.Args, " "))
	err = cmd.Start()
	_ = readyW.Close() // pipe end: nothing buffered to lose
	if err != nil {
		return nil, fmt.Errorf("attach slirp4netns to pid %d: %w", pid, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	ready := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := io.ReadFull(readyR, b[:])
		ready <- err
	}()
	fail := func(err error) (*Stack, error) {
		if hpid, start, ferr := findChild(cmd.Process.Pid); ferr == nil {
			_ = stopHelper(hpid, start) // best effort: the start failed, that error is returned
		}
		_ = cmd.Process.Kill() // best effort: it may be gone already
		return nil, err
	}
	select {
	case err := <-ready:
		if err != nil {
			// It exited before it was ready.
			werr := <-done
			return nil, helperFailed(ctx, Slirp4netns, pid, werr, helperOutput(logFile))
		}
	case <-ctx.Done():
		return fail(fmt.Errorf("attach slirp4netns to pid %d: %w", pid, ctx.Err()))
	}
	hpid, start, err := findChild(cmd.Process.Pid)
	if err != nil {
		return fail(fmt.Errorf("attach slirp4netns to pid %d: %w", pid, err))
	}
	for _, p := range ports {
		if err := slirpForward(ctx, api, p); err != nil {
			return fail(fmt.Errorf("attach slirp4netns to pid %d: publish port %s: %w", pid, p, err))
		}
	}
	log.Debug("network helper ready", "helper", Slirp4netns, "target_pid", pid, "pid", hpid)
	return &Stack{
		helper: Slirp4netns,
		dns:    slirpDNS,
		pids:   []int{hpid, cmd.Process.Pid},
		close: func() error {
			err := stopHelper(hpid, start)
			select {
			case <-done:
			case <-time.After(2 * time.Second):
			}
			return err
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
	defer func() { _ = c.Close() }() // socket/pty: nothing buffered to lose
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
