// Package names validates the names of sandboxes, volumes and snapshots
// before they touch the disk.
package names

import (
	"errors"
	"fmt"
)

// ErrInvalid is returned (wrapped) for a name outside
// [a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}.
var ErrInvalid = errors.New("invalid name")

// Valid reports whether name is a valid lightbox name. (A loop, not a
// regexp: a package-level regexp is compiled in every process start,
// every sandbox's init included.)
func Valid(name string) bool {
	if len(name) == 0 || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// Check returns an error wrapping ErrInvalid when name is not valid; kind
// ("volume", "sandbox", "snapshot") names what it is in the message.
func Check(kind, name string) error {
	if Valid(name) {
		return nil
	}
	return fmt.Errorf("%s name %q: %w: must match [a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}", kind, name, ErrInvalid)
}
