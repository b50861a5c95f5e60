package child

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// MapPending says whether this process was started before its id map was
// written and has not yet waited for it (WaitMapped will block): until
// then every id, ours and every file's, reads as the overflow id.
func MapPending() bool { return os.Getenv(EnvSync) != "" }

// WaitMapped is the child's side of the handshake: when the parent writes
// the maps with newuidmap/newgidmap it blocks until they are written, then
// becomes root in the namespace. It returns at once otherwise.
func WaitMapped() error {
	s := os.Getenv(EnvSync)
	if s == "" {
		return nil
	}
	_ = os.Unsetenv(EnvSync) // a set variable's name is valid: cannot fail
	mappedLate = true
	fd, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("bad %s=%q", EnvSync, s)
	}
	f := os.NewFile(uintptr(fd), "mapsync")
	defer func() { _ = f.Close() }() // read-only
	var b [1]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("parent did not write the id map")
		}
		return fmt.Errorf("wait for id map: %w", err)
	}
	// The uid/gid were unmapped when we were started; now that they map to
	// 0 the credentials already read as root, but drop the launcher's
	// supplementary groups. On every thread: syscall's Setgroups, not
	// unix's, which sets only the calling thread's, and the Go runtime's
	// threads started before this one would keep the caller's groups
	// (and pass them to the threads they start, and to a handover's exec).
	if err := syscall.Setgroups(nil); err != nil && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("setgroups: %w", err)
	}
	return nil
}

// mappedLate is set by WaitMapped when this process started before its id
// map was written.
var mappedLate bool

// ReexecIfMappedLate re-executes the running binary in place (same
// arguments, environment and open descriptors) when this process started
// before its id map was written, so that package-level state computed at
// start sees the map: umoci decides once, at init, whether it runs in a
// user namespace (and so whether a refused mknod is fatal). It returns nil
// at once when no re-exec is needed. Call it after WaitMapped.
func ReexecIfMappedLate() error {
	if !mappedLate {
		return nil
	}
	return fmt.Errorf("re-exec after the id map was written: %w", unix.Exec("/proc/self/exe", os.Args, os.Environ()))
}
