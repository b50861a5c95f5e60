// Package errdefs holds the sentinel errors shared by every noun of
// lightbox (snapshots, sandboxes, volumes); the root package re-exports
// them so users match with errors.Is(err, lightbox.ErrNotFound) whatever
// package produced the error.
package errdefs

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound: the named snapshot, sandbox or volume does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: the name is taken.
	ErrExists = errors.New("already exists")
	// ErrInUse: a live sandbox uses it.
	ErrInUse = errors.New("in use")
	// ErrQuotaUnsupported: the store cannot enforce the quota asked for
	// here; it wraps errors.ErrUnsupported and the message says what to do.
	ErrQuotaUnsupported = fmt.Errorf("quota unsupported: %w", errors.ErrUnsupported)
)
