//go:build linux

package lightbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/testutil"
	"golang.org/x/sys/unix"
)

// sandboxCgroups lists the cgroup directories of the sandbox whose init
// is pid (its own: lightbox makes them below a "lightbox" parent); none
// when the sandbox has no cgroup of its own (rootless on cgroup v1).
func sandboxCgroups(pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || !strings.Contains(f[2], "lightbox") {
			continue
		}
		ctrls := strings.Split(f[1], ",")
		if f[1] == "" || slices.ContainsFunc([]string{"pids", "memory", "cpu", "cpuacct"}, func(c string) bool { return slices.Contains(ctrls, c) }) {
			out = append(out, filepath.Join("/sys/fs/cgroup", f[1], f[2]))
		}
	}
	return out, nil
}

// leftInStore lists what a store's sandboxes directory holds besides its
// lock, the lean init's file and the shared layer of mount targets.
func leftInStore(t *testing.T, root string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(root, "sandboxes"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if n := e.Name(); n != ".lock" && n != ".targets" && !strings.HasPrefix(n, ".init-") {
			out = append(out, n)
		}
	}
	return out
}

// TestDestroyReturnsBeforeRemoval is Destroy as an embedding program
// sees it now that the directory and cgroup go in the background: the
// name is free at once (the same name launches right after), the volume
// the sandbox used is free at once (the next sandbox sees what the last
// wrote; RemoveVolume right after the last one succeeds), and after
// Close nothing is left: no directory, no cgroup.
func TestDestroyReturnsBeforeRemoval(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	r, err := Open(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			r.Close()
		}
	}()
	importBusybox(t, r)
	ctx := t.Context()
	opts := SandboxOptions{
		Snapshot: "busybox", Name: "again", Network: NetworkNone,
		Mounts: map[string]Mount{"/data": {Volume: "shared"}},
	}
	var cgroups []string
	for i := range 4 {
		err := r.RunInSandbox(ctx, opts, func(sb *Sandbox) error {
			cgs, err := sandboxCgroups(sb.rs.Pid())
			if err != nil {
				return err
			}
			cgroups = append(cgroups, cgs...)
			res, err := sb.Shell(ctx, fmt.Sprintf("cat /data/n 2>/dev/null; echo %d > /data/n", i))
			if err != nil {
				return err
			}
			if got, want := strings.TrimSpace(string(res.Stdout)), map[bool]string{true: "", false: strconv.Itoa(i - 1)}[i == 0]; got != want {
				t.Errorf("sandbox %d read %q from the volume, want %q (what the last one wrote)", i, got, want)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("RunInSandbox %d (name %q, reused at once): %v", i, opts.Name, err)
		}
		if _, err := os.Stat(filepath.Join(root, "sandboxes", opts.Name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after Destroy returned, the sandbox's directory is still under its name: %v", err)
		}
	}
	if err := r.RemoveVolume(ctx, "shared"); err != nil {
		t.Errorf("RemoveVolume right after the last sandbox using it was destroyed: %v", err)
	}
	if os.Geteuid() == 0 && len(cgroups) == 0 {
		t.Error("no cgroup of the sandbox found in /proc/PID/cgroup as root")
	}
	if err := r.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	closed = true
	if left := leftInStore(t, root); len(left) > 0 {
		t.Errorf("left in the store after Close: %v", left)
	}
	for _, cg := range cgroups {
		if _, err := os.Stat(cg); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s still there after Close (%v)", cg, err)
		}
	}
}

// fsImmutableFL is FS_IMMUTABLE_FL (linux/fs.h), which x/sys/unix does
// not name.
const fsImmutableFL = 0x10

// setImmutable sets or clears FS_IMMUTABLE_FL on the file at p.
func setImmutable(p string, on bool) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	flags, err := unix.IoctlGetInt(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		return err
	}
	if on {
		flags |= fsImmutableFL
	} else {
		flags &^= fsImmutableFL
	}
	return unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags)
}

// TestDestroyRemovalErrorReturnedByClose: a removal that fails after
// Destroy returned is not lost: Close returns it (and gc finishes the
// removal once the cause is gone).
func TestDestroyRemovalErrorReturnedByClose(t *testing.T) {
	testutil.RootOnly(t) // an immutable file (FS_IMMUTABLE_FL) needs CAP_LINUX_IMMUTABLE
	root := filepath.Join(t.TempDir(), "store")
	r, err := Open(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	importBusybox(t, r)
	ctx := t.Context()
	sb, err := r.LaunchSandbox(ctx, SandboxOptions{Snapshot: "busybox", Network: NetworkNone})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Shell(ctx, "echo x > /stuck"); err != nil {
		t.Fatal(err)
	}
	upper, err := sb.rs.UpperDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := setImmutable(filepath.Join(upper, "stuck"), true); err != nil {
		testutil.Need(t, false, fmt.Sprintf("FS_IMMUTABLE_FL on the store's filesystem: %v", err))
	}
	// Wherever the file is by then (set aside with its sandbox), it must
	// not outlive the test: t.TempDir could not remove it.
	unstick := func() error {
		return filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Name() == "stuck" && d.Type().IsRegular() {
				return setImmutable(p, false)
			}
			return nil // unreadable or gone: not the file
		})
	}
	t.Cleanup(func() { _ = unstick() }) // the test's own clear below reports a failure
	if err := sb.Destroy(ctx); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	cerr := r.Close()
	if cerr == nil || !strings.Contains(cerr.Error(), "remove sandbox "+sb.Name()) {
		t.Errorf("Close = %v, want the failed removal of sandbox %s", cerr, sb.Name())
	}
	var aside []string
	for _, n := range leftInStore(t, root) {
		if strings.HasPrefix(n, ".rm-"+sb.Name()+"-") {
			aside = append(aside, n)
		}
	}
	if len(aside) != 1 {
		t.Errorf("left in the store: %v, want the one .rm- entry of %s", leftInStore(t, root), sb.Name())
	}
	if err := unstick(); err != nil {
		t.Fatal(err)
	}
	r2, err := Open(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if err := r2.GC(ctx); err != nil {
		t.Errorf("GC: %v", err)
	}
	if left := leftInStore(t, root); len(left) > 0 {
		t.Errorf("left in the store after gc: %v", left)
	}
}

// TestDestroyKilledDuringRemoval: a process killed (SIGKILL) right after
// Destroy returned, while its background removal runs, leaves only what
// gc removes: the directory set aside and the sandbox's cgroups.
func TestDestroyKilledDuringRemoval(t *testing.T) {
	if root := os.Getenv("LIGHTBOX_TEST_DESTROY_CHILD"); root != "" {
		destroyChild(root)
		return
	}
	r, root := busyboxStore(t)
	cmd, line := startChild(t, "TestDestroyKilledDuringRemoval", "LIGHTBOX_TEST_DESTROY_CHILD", root)
	_ = cmd.Process.Kill() // SIGKILL, the moment Destroy returned
	_ = cmd.Wait()         // killed: the status says so
	var cgroups []string
	if f := strings.Fields(line); len(f) >= 2 && f[0] == "destroyed" {
		t.Logf("killed with %s set aside", f[1])
		cgroups = f[2:]
	} else {
		t.Fatalf("child said %q, want destroyed", line)
	}
	if os.Geteuid() == 0 && len(cgroups) == 0 {
		t.Error("no cgroup of the sandbox found in /proc/PID/cgroup as root")
	}
	// gc skips a .rm- entry whose lock a live process holds: the killed
	// one's descriptors close as it exits.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		if err := r.GC(ctx); err != nil {
			t.Fatalf("GC: %v", err)
		}
		if len(leftInStore(t, root)) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("left in the store after gc: %v", leftInStore(t, root))
		case <-time.After(20 * time.Millisecond):
		}
	}
	for _, cg := range cgroups {
		if _, err := os.Stat(cg); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s still there after gc (%v)", cg, err)
		}
	}
}

// destroyChild launches a sandbox that writes many files, destroys it,
// says "destroyed", what it set aside and the sandbox's cgroups, and
// waits to be killed (no Close: the removal is still running).
func destroyChild(root string) {
	fail := func(err error) {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	r, err := Open(Options{Root: root})
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	sb, err := r.LaunchSandbox(ctx, SandboxOptions{Snapshot: "busybox", Network: NetworkNone})
	if err != nil {
		fail(err)
	}
	if _, err := sb.Shell(ctx, `mkdir /many && cd /many && i=0; while [ $i -lt 4000 ]; do : > f$i; i=$((i+1)); done`); err != nil {
		fail(err)
	}
	cgs, err := sandboxCgroups(sb.rs.Pid())
	if err != nil {
		fail(err)
	}
	if err := sb.Destroy(ctx); err != nil {
		fail(err)
	}
	aside := "nothing"
	ents, _ := os.ReadDir(filepath.Join(root, "sandboxes"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".rm-") {
			aside = e.Name()
		}
	}
	fmt.Printf("destroyed %s %s\n", aside, strings.Join(cgs, " "))
	select {}
}

// TestHandleAfterDestroy: a handle of a sandbox destroyed (through it or
// through another handle) says the sandbox is not found: Wait said "its
// init died", Commit failed to open a freeze.lock in the removed
// directory.
func TestHandleAfterDestroy(t *testing.T) {
	r, _ := busyboxStore(t)
	ctx := t.Context()
	sb, err := r.LaunchSandbox(ctx, SandboxOptions{Snapshot: "busybox", Network: NetworkNone})
	if err != nil {
		t.Fatal(err)
	}
	other, err := r.AttachSandbox(ctx, sb.Name())
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sb.Destroy(ctx); err != nil {
		t.Errorf("Destroy of a sandbox another handle destroyed: %v, want nil", err)
	}
	for _, h := range []*Sandbox{sb, other} {
		if code, err := h.Wait(ctx); !errors.Is(err, ErrNotFound) {
			t.Errorf("Wait after Destroy = %d, %v; want ErrNotFound", code, err)
		}
		if _, err := h.Commit(ctx, "after"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Commit after Destroy = %v, want ErrNotFound", err)
		}
		if _, err := h.Shell(ctx, "true"); !errors.Is(err, ErrNotRunning) {
			t.Errorf("Shell after Destroy = %v, want ErrNotRunning", err)
		}
	}
	if _, err := r.InspectSandbox(ctx, sb.Name()); !errors.Is(err, ErrNotFound) {
		t.Errorf("InspectSandbox after Destroy = %v, want ErrNotFound", err)
	}
}
