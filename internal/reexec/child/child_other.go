//go:build !linux

package child

// WaitMapped has nothing to wait for off Linux: no process is re-executed
// into a user namespace there.
func WaitMapped() error { return nil }

// ReexecIfMappedLate has nothing to do off Linux (see WaitMapped).
func ReexecIfMappedLate() error { return nil }

// MapPending is false off Linux (see WaitMapped).
func MapPending() bool { return false }
