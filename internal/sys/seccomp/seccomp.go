package seccomp

import (
	"errors"
	"fmt"
)

// ErrUnsupported is returned on architectures the profile does not cover.
var ErrUnsupported = fmt.Errorf("seccomp profile: %w: no syscall table for this architecture", errors.ErrUnsupported)

// Options vary the profile. The zero value is the default profile.
type Options struct {
	// AllowUserNamespaces lets workloads create user namespaces:
	// clone and unshare with CLONE_NEWUSER, and clone3. Off by default.
	AllowUserNamespaces bool
}
