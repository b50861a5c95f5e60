package child

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// AsOwner runs f on the calling thread with that thread's effective uid
// set to owner, and gives the thread its own credentials back afterwards.
// f is a clone of a child into a new user namespace, which owner is to
// own, or a call that needs a capability in a namespace owner owns.
//
// The kernel makes the effective uid of the cloning thread the new
// namespace's owner, and charges the per-user counts of everything made
// inside it (inotify instances and watches, user namespaces, POSIX
// message queue bytes, pending signals, locked memory) to the owner at
// the parent namespace's level as well (kernel/ucount.c walks up through
// each namespace's owner). A sandbox cloned by real root was owned by
// uid 0: one that held 128 inotify instances made host root's
// inotify_init fail, and every other root-run program's with it. Owned
// by the store's range root, a sandbox can spend only what that uid,
// which no host process runs as, has.
//
// The owner has every capability in the namespaces it owns, whatever its
// bounding set: host root without CAP_SYS_RESOURCE (a container manager's
// root often lacks it) had it in a sandbox's namespace as its owner, and
// has it now through AsOwner.
//
// Only the calling thread changes: the raw setresuid, not Go's, which
// changes every thread of the process. The thread keeps its capabilities
// (the real uid stays 0, so the permitted set does; the effective set,
// which the kernel clears as the effective uid leaves 0, is raised again)
// because the clone's parent side writes the child's id maps, which
// needs CAP_SETUID and CAP_SETGID. owner 0, or a process that is not
// real root, runs f as it is.
func AsOwner(owner int, f func() error) error {
	if owner <= 0 || unix.Getuid() != 0 || unix.Geteuid() != 0 {
		return f()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var caps [2]unix.CapUserData
	if err := unix.Capget(&hdr, &caps[0]); err != nil {
		return fmt.Errorf("read the launching thread's capabilities: %w", err)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(owner), ^uintptr(0)); e != 0 {
		return fmt.Errorf("become uid %d to own the sandbox's user namespace: %w", owner, e)
	}
	defer func() {
		// The effective uid goes back to the real one, which is always
		// allowed; the kernel copies the permitted set to the effective
		// one as it returns to 0. A thread left with another uid would
		// go on serving this program as that uid: that must not be.
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), 0, ^uintptr(0)); e != 0 {
			panic(fmt.Sprintf("lightbox: cannot take back uid 0 on the launching thread: %v", e))
		}
	}()
	if err := unix.Capset(&hdr, &caps[0]); err != nil {
		return fmt.Errorf("raise the launching thread's capabilities as uid %d: %w", owner, err)
	}
	return f()
}
