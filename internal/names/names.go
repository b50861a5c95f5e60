// Package names validates the names of sandboxes, volumes and snapshots
// before they touch the disk.
package names

import (
	"errors"
	"fmt"
	"regexp"
)

// ErrInvalid is returned (wrapped) for a name outside
// [a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}.
var ErrInvalid = errors.New("invalid name")

var re = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

// Valid reports whether name is a valid lightbox name.
func Valid(name string) bool { return re.MatchString(name) }

// Check returns an error wrapping ErrInvalid when name is not valid; kind
// ("volume", "sandbox", "snapshot") names what it is in the message.
func Check(kind, name string) error {
	if Valid(name) {
		return nil
	}
	return fmt.Errorf("%s name %q: %w: must match [a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}", kind, name, ErrInvalid)
}
