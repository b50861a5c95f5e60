package overlay

import (
	"errors"
	"fmt"

	"github.com/beamhop/lightbox/internal/sys"
	"golang.org/x/sys/unix"
)

// Mount mounts s on target (a directory) in the caller's mount namespace.
// The caller needs CAP_SYS_ADMIN over it: real root, or root in a user
// namespace that owns the mount namespace.
//
// lightbox itself does not call it: a sandbox's root is mounted by nsinit
// with the same primitives and fallback (sys.FSMount, sys.MoveMount,
// sys.MountOverlayLegacy). It is kept as the host-side form of that mount
// for the tests that prove a Spec mounts on the kernel at hand (this
// package's, and vm_test.go's many-layer mount on a stock kernel in QEMU).
func Mount(s Spec, target string) error {
	if err := s.Validate(); err != nil {
		return err
	}
	mfd, err := sys.FSMount("overlay", s.Params(), 0, target)
	if errors.Is(err, unix.EINVAL) {
		// A kernel before 6.8, without "lowerdir+" (see the package doc).
		if lerr := mountLegacy(s, target); lerr != nil {
			return fmt.Errorf("mount overlay: %w; with a lowerdir= list (for kernels before 6.8): %w", err, lerr)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("mount overlay: %w", err)
	}
	defer unix.Close(mfd)
	tfd, err := sys.Openat(unix.AT_FDCWD, target, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("mount overlay: %w", err)
	}
	defer unix.Close(tfd)
	if err := sys.MoveMount(mfd, tfd, target); err != nil {
		return fmt.Errorf("mount overlay: %w", err)
	}
	return nil
}

// Unmount takes down the overlay at target (lazily when busy). A target
// that is not mounted is not an error.
func Unmount(target string) error {
	err := sys.Unmount(target, unix.UMOUNT_NOFOLLOW)
	if err == nil {
		return nil
	}
	switch {
	case isErrno(err, unix.EINVAL), isErrno(err, unix.ENOENT):
		return nil
	case isErrno(err, unix.EBUSY):
		return sys.Unmount(target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
	}
	return fmt.Errorf("unmount overlay: %w", err)
}

func isErrno(err error, e unix.Errno) bool { return errors.Is(err, e) }

// mountLegacy mounts s on target with mount(2) and the classic option
// string (see the package doc).
func mountLegacy(s Spec, target string) error {
	err := sys.MountOverlayLegacy(s.Params(), target)
	if errors.Is(err, unix.E2BIG) {
		return fmt.Errorf("%w even with layers named by descriptor: %w", ErrTooLong, err)
	}
	return err
}
