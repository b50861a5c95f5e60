package reap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/beamhop/lightbox/internal/rmtree"
	"golang.org/x/sys/unix"
)

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
	return Remove(context.Background(), s) // a process of its own: no caller's context to honour
}

// Remove removes what s names: the cgroups (children first), the shared
// parents when empty, then the directory. The sandbox's init must be
// gone. The reaper runs it; so does the runtime itself for a small tree,
// where starting a reaper would cost more than the removal.
func Remove(ctx context.Context, s Spec) error {
	if !filepath.IsAbs(s.Dir) || !strings.HasPrefix(filepath.Base(s.Dir), ".rm-") {
		return fmt.Errorf("reap: %q is not a directory set aside for removal", s.Dir)
	}
	if err := removeCgroups(s.Cgroups); err != nil {
		return err
	}
	for _, p := range s.Parents {
		_ = unix.Rmdir(p) // best effort: another sandbox may use it
	}
	return rmtree.RemoveAll(ctx, s.Dir, s.Mapping)
}

// Small reports whether the tree at dir holds at most n entries (it stops
// counting past n) that the caller may read: small enough to remove at
// once.
func Small(dir string, n int) bool {
	left := n
	return small(unix.AT_FDCWD, dir, &left)
}

func small(dirfd int, name string, left *int) bool {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EACCES) {
		// A file, a symlink, gone, or the overlay's work/work (mode
		// 000, empty once unmounted; rmtree makes it readable): counted
		// by the caller.
		return true
	}
	if err != nil {
		return false
	}
	f := os.NewFile(uintptr(fd), name)
	defer func() { _ = f.Close() }() // read-only (a directory)
	names, err := f.Readdirnames(*left + 1)
	if err != nil && !errors.Is(err, io.EOF) {
		return false
	}
	*left -= len(names)
	if *left < 0 {
		return false
	}
	for _, n := range names {
		if !small(fd, n, left) {
			return false
		}
	}
	return true
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
