package nsinit

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/beamhop/lightbox/internal/sys"
	"golang.org/x/sys/unix"
)

// unshareCgroupNS makes the cgroup the runtime put us in the root of a
// new cgroup namespace for the calling thread, which must be locked and
// never unlocked: the spawner thread (so every workload it forks) and the
// thread that mounts /sys/fs/cgroup. (The runtime clones the init into
// its cgroup, so the clone's own namespace has that root already; this
// keeps an init started otherwise, such as an OCI container's, right.)
func unshareCgroupNS() error {
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return fmt.Errorf("unshare(CLONE_NEWCGROUP): %w", err)
	}
	return nil
}

// joinWorkload moves the calling thread (the spawner's, locked and never
// unlocked) into the workloads' cgroup through fd, the file the runtime
// opened (cgroup.threads on v2, tasks on v1; "0" is the writing thread).
// The children it forks are born there, under the workloads' pids limit,
// while the init's other threads stay in the sandbox's cgroup, with room
// to spare. fd stays open (close-on-exec) for the spawner of a handover's
// new init.
func joinWorkload(fd int) error {
	for {
		_, err := unix.Write(fd, []byte("0"))
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("spawner: join the workloads' cgroup: write %q: %w", "/proc/self/fd/"+strconv.Itoa(fd), err)
		}
	}
}

// setNproc sets RLIMIT_NPROC for the init and all it starts. Linux 5.14+
// counts it per user namespace (ucounts), so it bounds the sandbox's
// processes and leaves the caller's own count alone.
func setNproc(n int64) error {
	var cur unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NPROC, &cur); err != nil {
		return fmt.Errorf("getrlimit(RLIMIT_NPROC): %w", err)
	}
	if uint64(n) > cur.Max {
		return fmt.Errorf("pids limit %d: above this process's hard RLIMIT_NPROC %d", n, cur.Max)
	}
	if err := unix.Setrlimit(unix.RLIMIT_NPROC, &unix.Rlimit{Cur: uint64(n), Max: uint64(n)}); err != nil {
		return fmt.Errorf("setrlimit(RLIMIT_NPROC, %d): %w", n, err)
	}
	return nil
}

// mountCgroup puts the sandbox's own cgroup, read-only, on /sys/fs/cgroup
// (mounted in our cgroup namespace, its root is the sandbox's cgroup):
// the unified hierarchy for "cgroup2", else a read-only tmpfs holding the
// listed v1 controllers' hierarchies. With no controllers it is an empty
// read-only tmpfs, over whatever a bind of the host's /sys brought.
func mountCgroup(root int, ctrls []string) error {
	if len(ctrls) == 0 {
		return mountCgroupIn(root, nil)
	}
	// The filesystems take the cgroup namespace of the thread that
	// creates them. The runtime clones the init into its cgroups with a
	// new cgroup namespace, whose root they are already: then this
	// thread mounts them as it is (a thread of its own cost a clone, two
	// handoffs and the thread's end: 0.31 against 0.20 ms, bench/NOTES.md).
	runtime.LockOSThread()
	if rooted, err := cgroupNSRooted(ctrls); err == nil && rooted {
		err = mountCgroupIn(root, ctrls)
		runtime.UnlockOSThread() // this thread's namespaces are untouched
		return err
	}
	runtime.UnlockOSThread() // this thread's namespaces are untouched
	// Else (an init started otherwise) a thread of its own makes its
	// cgroup the root of a new namespace, and ends with the goroutine.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread's cgroup namespace is not the others'
		if err := unshareCgroupNS(); err != nil {
			errc <- err
			return
		}
		errc <- mountCgroupIn(root, ctrls)
	}()
	return <-errc
}

// cgroupNSRooted reports whether the calling thread's cgroup namespace
// is rooted at its own cgroup in each hierarchy ctrls names ("cgroup2":
// the unified one): /proc/thread-self/cgroup then reads "/" for each.
func cgroupNSRooted(ctrls []string) (bool, error) {
	b, err := os.ReadFile("/proc/thread-self/cgroup")
	if err != nil {
		return false, err
	}
	return rootedIn(string(b), ctrls), nil
}

// rootedIn reports whether the /proc/PID/cgroup text procCgroup has
// the path "/" in every hierarchy ctrls names (see cgroupNSRooted).
func rootedIn(procCgroup string, ctrls []string) bool {
	lines := strings.Split(strings.TrimSpace(procCgroup), "\n")
	for _, c := range ctrls {
		found := false
		for _, l := range lines {
			// hierarchy-ID:controller-list:path
			f := strings.SplitN(l, ":", 3)
			if len(f) != 3 {
				continue
			}
			if (c == "cgroup2" && f[0] == "0" && f[1] == "") || slices.Contains(strings.Split(f[1], ","), c) {
				found = true
				if f[2] != "/" {
					return false
				}
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func mountCgroupIn(root int, ctrls []string) error {
	const target = "/sys/fs/cgroup"
	const ro = unix.MOUNT_ATTR_RDONLY | nosuidNodevNoexec
	if len(ctrls) == 1 && ctrls[0] == "cgroup2" {
		mfd, err := sys.FSMount("cgroup2", nil, ro, target)
		if err != nil {
			return err
		}
		return attach(root, mfd, target, true)
	}
	mfd, err := sys.FSMount("tmpfs", []sys.Param{{Key: "mode", Value: "755"}, {Key: "size", Value: "4k"}}, nosuidNodevNoexec, target)
	if err != nil {
		return err
	}
	if err := attach(root, mfd, target, true); err != nil {
		return err
	}
	dir, err := sys.OpenInRoot(root, target, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	for _, c := range ctrls {
		if strings.ContainsAny(c, "/,") || c == "" || c == "." || c == ".." {
			return fmt.Errorf("cgroup controller %q: bad name", c)
		}
		cfd, err := sys.FSMount("cgroup", []sys.Param{{Key: c}}, ro, target+"/"+c)
		if err != nil {
			return err
		}
		if err := attach(dir, cfd, "/"+c, true); err != nil {
			return err
		}
	}
	return sys.SetAttr(dir, unix.MOUNT_ATTR_RDONLY, 0, false, target)
}

// setOOMScore sets a workload's oom_score_adj (see
// Config.WorkloadOOMScore). Raising a score needs no privilege; a
// workload that already exited has nothing to set.
func setOOMScore(pid, score int) {
	// Plain system calls: os.WriteFile's file would also try the poller
	// (three more calls on every exec).
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/oom_score_adj", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return // it exited
	}
	_, _ = unix.Write(fd, strconv.AppendInt(nil, int64(score), 10)) // error: it exited (the runtime only raises the score, which needs no privilege)
	unix.Close(fd)
}

// liftCPULimit lifts the sandbox's CPU limit through FDs.CPUMax, just
// before the init kills every process of the sandbox (see FDs.CPUMax):
// "max" (v2's cpu.max), or "-1" where the kernel refuses that (v1's
// cpu.cfs_quota_us). Best effort: a limit left in place only makes the
// end slower.
func liftCPULimit(fds []int) {
	for _, fd := range fds {
		if _, err := unix.Write(fd, []byte("max")); err != nil {
			_, _ = unix.Write(fd, []byte("-1")) // best effort, as above
		}
	}
}
