// Package overlay describes overlayfs roots made from unpacked layer
// directories: it turns a stack of layers plus an upper and a work
// directory into the parameters of an overlay mount, and can mount and take
// one down. It does not decide where layers or upper dirs live (the
// snapshot store and the runtime do), and it mounts only when asked: a
// sandbox's root is mounted by nsinit, inside the sandbox's namespaces,
// from the parameters this package builds.
//
// Every overlay it describes uses the options DESIGN.md pins: userxattr
// (the overlay is always mounted inside a user namespace, so whiteouts are
// user.overlay.* xattrs), no redirects and metacopy=off (an upper dir is
// then a plain diff of the root). "No redirects" is spelled
// redirect_dir=nofollow: the kernel turns "off" into "follow" when it is
// built with redirect_always_follow, and refuses that with userxattr.
//
// Layers are passed one fsconfig "lowerdir+" parameter each, so a stack of
// any depth mounts: the legacy mount(2) option string is limited to a
// page. Only Linux 6.8 and later take "lowerdir+" (Debian 12 runs 6.1).
// When the kernel refuses it (EINVAL: at fsconfig on 6.5-6.7, at create or
// once the options pass a page on the legacy mount context before 6.5),
// the overlay is mounted with mount(2) and the classic
// "lowerdir=top:...:bottom" string instead — decided by trying, never by
// the kernel's version. Where the layers' paths would not fit a page,
// each layer is opened O_PATH and named by its descriptor's number, with
// /proc/self/fd as the working directory while the kernel parses the
// options: 4-5 bytes a layer, no privilege needed beyond the mount (so it
// works in a user namespace), nothing left on disk. nsinit, which mounts a
// sandbox's root from Params and may not import this package, uses the
// same fallback (internal/sys.MountOverlayLegacy).
package overlay

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/beamhop/lightbox/internal/sys"
)

// Spec is an overlayfs root.
type Spec struct {
	// Layers are the lower directories, bottom first (the order of an OCI
	// manifest's layers). At least one.
	Layers []string
	// Upper and Work are the writable directory and overlayfs's scratch
	// directory; both on the same filesystem, neither on overlayfs.
	Upper, Work string
	// Volatile mounts with overlayfs's "volatile": syncfs and fsync of
	// the overlay no longer reach the upper dir's filesystem, and above
	// all its unmount no longer syncs that whole filesystem (every dirty
	// inode of the store's disk, at every sandbox's end). For an upper
	// dir thrown away with its sandbox, which never outlives a crash of
	// the host, as podman does for --rm containers and CRI-O and buildah
	// for all of theirs. Such a work dir is never mounted again.
	Volatile bool
}

// ErrTooLong is returned by Data when the option string would not fit the
// page that mount(2) accepts.
var ErrTooLong = errors.New("overlay options longer than a page")

// Validate checks that the paths are absolute and usable as overlay
// options.
func (s Spec) Validate() error {
	if len(s.Layers) == 0 {
		return errors.New("overlay: no layers")
	}
	check := func(what, p string) error {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return fmt.Errorf("overlay: %s %q: not a clean absolute path", what, p)
		}
		if strings.ContainsAny(p, ",:\n\\") {
			return fmt.Errorf("overlay: %s %q: contains a character overlayfs cannot take (, : \\ or newline)", what, p)
		}
		return nil
	}
	for _, l := range s.Layers {
		if err := check("layer", l); err != nil {
			return err
		}
	}
	if err := check("upper dir", s.Upper); err != nil {
		return err
	}
	return check("work dir", s.Work)
}

// Params returns the fsconfig(2) parameters of the mount, layers top first
// as overlayfs wants them.
func (s Spec) Params() []sys.Param {
	ps := []sys.Param{{Key: "userxattr"}, {Key: "redirect_dir", Value: "nofollow"}, {Key: "metacopy", Value: "off"}}
	if s.Volatile {
		ps = append(ps, sys.Param{Key: "volatile"})
	}
	for i := len(s.Layers) - 1; i >= 0; i-- {
		ps = append(ps, sys.Param{Key: "lowerdir+", Value: s.Layers[i]})
	}
	return append(ps, sys.Param{Key: "upperdir", Value: s.Upper}, sys.Param{Key: "workdir", Value: s.Work})
}

// CopyOnWrite returns the fsconfig(2) parameters of a copy-on-write bind
// (podman's -v SRC:DST:O): an overlay whose only lower layer is lower, a
// host directory the mount never writes, and whose changes go to upper.
// lower is named as overlayfs should resolve it; callers pass the
// descriptor of the directory they opened ("/proc/self/fd/N"), so that a
// path holding ':' or ',' (which the "lowerdir" value would split) is
// never an issue and no newer kernel's "lowerdir+" is needed. The options
// are the ones Params pins, volatile (the changes are thrown away with
// the mount: see Spec.Volatile).
func CopyOnWrite(lower, upper, work string) []sys.Param {
	return []sys.Param{
		{Key: "userxattr"}, {Key: "redirect_dir", Value: "nofollow"}, {Key: "metacopy", Value: "off"}, {Key: "volatile"},
		{Key: "lowerdir", Value: lower}, {Key: "upperdir", Value: upper}, {Key: "workdir", Value: work},
	}
}

// Data returns the legacy mount(2) option string, or ErrTooLong when it
// would not fit a page.
func (s Spec) Data() (string, error) {
	d := sys.OverlayData(s.Params(), func(_ int, p string) string { return p })
	if len(d) >= sys.OptionsMax {
		return "", fmt.Errorf("%w (%d bytes for %d layers)", ErrTooLong, len(d), len(s.Layers))
	}
	return d, nil
}
