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
// gone. The reaper runs it (the runtime too, when a reaper could not be
// started); a small tree the runtime removes with RemoveSmall.
func Remove(ctx context.Context, s Spec) error {
	if err := s.checkDir(); err != nil {
		return err
	}
	if err := s.removeCgroups(); err != nil {
		return err
	}
	return rmtree.RemoveAll(ctx, s.Dir, s.Mapping)
}

// checkDir refuses a Dir that is not a directory set aside for removal.
func (s Spec) checkDir() error {
	if !filepath.IsAbs(s.Dir) || !strings.HasPrefix(filepath.Base(s.Dir), ".rm-") {
		return fmt.Errorf("reap: %q is not a directory set aside for removal", s.Dir)
	}
	return nil
}

// removeCgroups removes the cgroups, then the shared parents when empty.
func (s Spec) removeCgroups() error {
	if err := removeCgroups(s.Cgroups); err != nil {
		return err
	}
	for _, p := range s.Parents {
		_ = unix.Rmdir(p) // best effort: another sandbox may use it (a launch there tries again: runtime's retryParentGone)
	}
	return nil
}

// RemoveSmall is Remove for a tree of at most n entries: past n it stops
// with the cgroups removed and the rest of the tree in place, and returns
// an error that unwraps to rmtree.ErrTooLarge, for a reaper to finish (a
// reaper's start costs more than a small tree's unlinking). One walk
// counts and removes. The cgroups go in a goroutine of their own while
// the tree goes, all but s.Last (the lock and the state file, which names
// the cgroups for gc), removed once the cgroups are gone: a kill -9 at
// any point leaves a .rm- entry that gc can finish.
func RemoveSmall(ctx context.Context, s Spec, n int) error {
	if err := s.checkDir(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove %s: %w", s.Dir, err)
	}
	cg := make(chan error, 1)
	go func() { cg <- s.removeCgroups() }()
	err := rmtree.RemoveContents(s.Dir, n, s.Last...)
	if cerr := <-cg; cerr != nil {
		return cerr
	}
	if errors.Is(err, rmtree.ErrTooLarge) {
		return err
	}
	for _, name := range s.Last {
		if err != nil {
			break
		}
		if uerr := unix.Unlink(filepath.Join(s.Dir, name)); uerr != nil && !errors.Is(uerr, unix.ENOENT) {
			err = uerr
		}
	}
	if err == nil && unix.Rmdir(s.Dir) == nil {
		return nil
	}
	// What this process could not remove (rootless, files of other ids of
	// the mapping; a mode it could not fix): the whole removal, which may
	// use a user namespace, reports what stays.
	return rmtree.RemoveSmall(ctx, s.Dir, s.Mapping, n)
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
