package sys

import (
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// MountOverlayLegacy mounts the overlay params describe on target with
// mount(2) (see OverlayData). When the option string with the layers' own
// paths would not fit a page (100+ layers named by 64-hex-digit digests),
// each layer is opened O_PATH and named by its descriptor's number
// relative to /proc/self/fd, the working directory while the kernel parses
// the options (overlayfs resolves lower dirs when mounting, following the
// magic links): 4-5 bytes a layer, so overlayfs's own limit of 500 layers
// fits. That needs no privilege beyond the mount itself, so it works in a
// user namespace, and leaves nothing on disk. The error for options that
// do not fit even so wraps E2BIG.
func MountOverlayLegacy(params []Param, target string) error {
	data := OverlayData(params, func(_ int, p string) string { return p })
	if len(data) < OptionsMax {
		return Mount("overlay", target, "overlay", 0, data)
	}
	var fds []int
	defer func() {
		for _, fd := range fds {
			_ = unix.Close(fd) // O_PATH descriptors: nothing to flush
		}
	}()
	var openErr error
	data = OverlayData(params, func(_ int, p string) string {
		fd, err := Openat(unix.AT_FDCWD, p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			openErr = errors.Join(openErr, err)
			return ""
		}
		fds = append(fds, fd)
		return strconv.Itoa(fd)
	})
	if openErr != nil {
		return fmt.Errorf("open layers: %w", openErr)
	}
	if len(data) >= OptionsMax {
		return fmt.Errorf("overlay options of %d layers are %d bytes even with short names, over a page: %w", len(fds), len(data), unix.E2BIG)
	}
	return MountIn("/proc/self/fd", "overlay", target, "overlay", 0, data)
}
