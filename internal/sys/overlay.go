package sys

import "strings"

// The overlay legacy-mount fallback, shared by package overlay (host-side
// mounts) and nsinit (a sandbox's root), which may not import each other.
//
// A root's parameters name one "lowerdir+" per layer, which only Linux 6.8
// and later take. Older kernels refuse it (6.5-6.7 at fsconfig, before 6.5
// — the legacy mount context — at create, or at fsconfig once the options
// pass a page), always with EINVAL; the same overlay is then mounted with
// mount(2) and the classic "lowerdir=top:...:bottom" option string
// (MountOverlayLegacy) — decided by trying, never by the kernel's version.

// OptionsMax bounds a mount(2) option string: the kernel copies at most a
// page of it, NUL included.
const OptionsMax = 4096

// HasLowerdirPlus reports whether overlay params add layers one by one.
func HasLowerdirPlus(params []Param) bool {
	for _, p := range params {
		if p.Key == "lowerdir+" {
			return true
		}
	}
	return false
}

// OverlayData turns overlay fsconfig parameters into a mount(2) option
// string: the other parameters as they are, in order, and the "lowerdir+"
// values (top first) joined into one lowerdir= where the first of them
// stood, each named by lower(i, path) (i counts from the top).
func OverlayData(params []Param, lower func(i int, path string) string) string {
	var opts, lowers []string
	at := -1
	for _, p := range params {
		switch {
		case p.Key == "lowerdir+":
			if at < 0 {
				at = len(opts)
				opts = append(opts, "")
			}
			lowers = append(lowers, lower(len(lowers), p.Value))
		case p.Value == "":
			opts = append(opts, p.Key)
		default:
			opts = append(opts, p.Key+"="+p.Value)
		}
	}
	if at < 0 {
		return strings.Join(opts, ",")
	}
	opts[at] = "lowerdir=" + strings.Join(lowers, ":")
	return strings.Join(opts, ",")
}
