package lightbox

import (
	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/names"
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrNotFound: no snapshot, sandbox or volume of that name.
	ErrNotFound = errdefs.ErrNotFound
	// ErrExists: the name is already taken.
	ErrExists = errdefs.ErrExists
	// ErrInUse: a live sandbox uses the snapshot or volume.
	ErrInUse = errdefs.ErrInUse
	// ErrInvalidName: a name outside [a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}.
	ErrInvalidName = names.ErrInvalid
	// ErrQuotaUnsupported: the store cannot enforce a quota here (it wraps
	// errors.ErrUnsupported); the message says why and what to do.
	ErrQuotaUnsupported = errdefs.ErrQuotaUnsupported
)
