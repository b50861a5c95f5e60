package reap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/beamhop/lightbox/internal/rmtree"
	"golang.org/x/sys/unix"
)

// InitGrace is how long the reaper waits for the init to exit before it
// kills it: the launcher closed the liveness pipe, so the init is on its
// way out already.
const InitGrace = 30 * time.Second

// cgroupGrace bounds the wait for a cgroup to empty.
const cgroupGrace = 10 * time.Second

// Main runs the reaper role (see the package doc) and exits: 0 when all
// is removed, 1 otherwise (gc removes what is left).
func Main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "lightbox reap:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func run() error {
	if len(os.Args) < 2 {
		return errors.New("no spec argument")
	}
	var s Spec
	if err := json.Unmarshal([]byte(os.Args[1]), &s); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	if !filepath.IsAbs(s.Dir) || !strings.HasPrefix(filepath.Base(s.Dir), ".rm-") {
		return fmt.Errorf("spec: %q is not a directory set aside for removal", s.Dir)
	}
	if s.Pidfd {
		if err := waitInit(4); err != nil {
			return err
		}
	}
	if err := removeCgroups(s.Cgroups); err != nil {
		return err
	}
	for _, p := range s.Parents {
		_ = unix.Rmdir(p) // best effort: another sandbox may use it
	}
	return rmtree.RemoveAll(context.Background(), s.Dir, s.Mapping) // a process of its own: no caller's context to honour
}

// waitInit waits until the process of the pidfd has exited, killing it
// after InitGrace.
func waitInit(pidfd int) error {
	defer unix.Close(pidfd)
	killed := false
	deadline := time.Now().Add(InitGrace)
	for {
		ms := int(time.Until(deadline).Milliseconds())
		if ms < 0 {
			ms = 0
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}, ms)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return fmt.Errorf("wait for the init: poll: %w", err)
		case n > 0:
			return nil
		case killed:
			return errors.New("wait for the init: still there after SIGKILL")
		}
		if err := unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("kill the init: %w", err)
		}
		killed, deadline = true, time.Now().Add(cgroupGrace)
	}
}

// removeCgroups removes each directory in turn (children first). One
// that still has processes (the init's pid namespace still going down, or
// what escaped it) has them killed — cgroup.kill where the kernel has it
// (v2), else SIGKILL to each pid in cgroup.procs (v1) — until it is empty.
func removeCgroups(dirs []string) error {
	for _, d := range dirs {
		deadline := time.Now().Add(cgroupGrace)
		for {
			err := unix.Rmdir(d)
			if err == nil || errors.Is(err, unix.ENOENT) {
				break
			}
			if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
				return &os.PathError{Op: "rmdir", Path: d, Err: err}
			}
			killAll(d)
			time.Sleep(5 * time.Millisecond) // the killed take a moment to exit: rmdir says when
		}
	}
	return nil
}

func killAll(dir string) {
	if os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0) == nil {
		return
	}
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return // gone meanwhile: rmdir tells
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			_ = unix.Kill(pid, unix.SIGKILL) // best effort: it may be gone already
		}
	}
}
