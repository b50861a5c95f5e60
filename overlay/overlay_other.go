//go:build !linux

package overlay

import (
	"errors"
	"fmt"
)

// Mount is unsupported off Linux.
func Mount(s Spec, target string) error {
	return fmt.Errorf("mount overlay: %w", errors.ErrUnsupported)
}

// Unmount is unsupported off Linux.
func Unmount(target string) error {
	return fmt.Errorf("unmount overlay: %w", errors.ErrUnsupported)
}
