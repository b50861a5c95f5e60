package nsinit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/beamhop/lightbox/internal/sys"
	"golang.org/x/sys/unix"
)

// The root's parameters come from package overlay: one "lowerdir+" per
// layer, which only Linux 6.8 and later take. Older kernels refuse it
// (6.5-6.7 at fsconfig, before 6.5 — the legacy mount context — at
// create, or at fsconfig once the options pass a page), always with
// EINVAL; mountRoot then mounts the same overlay with mount(2) and the
// classic "lowerdir=top:...:bottom" option string (mountOverlayLegacy).
// Package overlay's Mount carries the same fallback for host-side mounts;
// nsinit may not import it (see TestDeps).

// pageSize bounds a mount(2) option string: the kernel copies at most a
// page of it, NUL included.
const pageSize = 4096

// hasLowerdirPlus reports whether params add layers one by one.
func hasLowerdirPlus(params []sys.Param) bool {
	for _, p := range params {
		if p.Key == "lowerdir+" {
			return true
		}
	}
	return false
}

// legacyOverlayData turns overlay fsconfig parameters into a mount(2)
// option string: the other parameters as they are, in order, and the
// "lowerdir+" values (top first) joined into one lowerdir=, named by
// lower(i, path).
func legacyOverlayData(params []sys.Param, lower func(i int, path string) string) string {
	var opts, lowers []string
	for _, p := range params {
		switch {
		case p.Key == "lowerdir+":
			lowers = append(lowers, lower(len(lowers), p.Value))
		case p.Value == "":
			opts = append(opts, p.Key)
		default:
			opts = append(opts, p.Key+"="+p.Value)
		}
	}
	return strings.Join(append(opts, "lowerdir="+strings.Join(lowers, ":")), ",")
}

// mountOverlayLegacy mounts the overlay params describe on target with
// mount(2). When the option string with the layers' own paths would not
// fit a page (100+ layers named by 64-hex-digit digests), each layer is
// opened O_PATH and named by its descriptor's number relative to
// /proc/self/fd, the working directory while the kernel parses the
// options (overlayfs resolves lower dirs when mounting, following the
// magic links): 4-5 bytes a layer, so overlayfs's own limit of 500 layers
// fits. That needs no privilege beyond the mount itself, so it works in a
// user namespace, and leaves nothing on disk.
func mountOverlayLegacy(params []sys.Param, target string) error {
	data := legacyOverlayData(params, func(_ int, p string) string { return p })
	if len(data) < pageSize {
		return sys.Mount("overlay", target, "overlay", 0, data)
	}
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	var openErr error
	data = legacyOverlayData(params, func(_ int, p string) string {
		fd, err := sys.Openat(unix.AT_FDCWD, p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
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
	if len(data) >= pageSize {
		return fmt.Errorf("overlay options of %d layers are %d bytes even with short names, over a page: %w", len(fds), len(data), unix.E2BIG)
	}
	return sys.MountIn("/proc/self/fd", "overlay", target, "overlay", 0, data)
}
