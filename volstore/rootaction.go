package volstore

import "fmt"

// RootAction is what only root can do for a rootless user's store: keep a
// volume with a quota for the user (or mount its image again after a
// restart), or remove a volume it keeps for them. The library describes
// it; a front end shows it as its own command (the CLI: `lightbox volume
// create --owner …`, `lightbox volume rm --owner …`).
type RootAction struct {
	// Op is RootCreate or RootRemove.
	Op string
	// AdminRoot is the store root keeps the volume in; "" = root's
	// default store.
	AdminRoot string
	// Owner is the user's name (or uid, when it has no name).
	Owner string
	// OwnerRoot is the user's store, which gets the reference (RootCreate).
	OwnerRoot string
	// Volume is the volume's name.
	Volume string
	// QuotaMiB is the quota to keep the volume with (RootCreate).
	QuotaMiB int64
}

// The operations of a RootAction.
const (
	RootCreate = "create"
	RootRemove = "remove"
)

// String names the action by the volstore call that does it, for the
// message of an error that no front end formats.
func (a RootAction) String() string {
	in := ""
	if a.AdminRoot != "" {
		in = ", root's store " + a.AdminRoot
	}
	if a.Op == RootRemove {
		return fmt.Sprintf("volstore.RemoveDelegated of volume %s for user %s%s", a.Volume, a.Owner, in)
	}
	return fmt.Sprintf("volstore.Delegate of volume %s for user %s (quota %d MiB, their store %s%s)", a.Volume, a.Owner, a.QuotaMiB, a.OwnerRoot, in)
}

// NeedsRootError is an error whose remedy is a RootAction. Its message is
// Err's, then the action (Format puts a front end's words for it there),
// then Then.
type NeedsRootError struct {
	Err    error
	Action RootAction
	Then   string
}

func (e *NeedsRootError) Error() string { return e.Format(e.Action.String()) }

// Format is the error's message with remedy in place of the action.
func (e *NeedsRootError) Format(remedy string) string { return e.Err.Error() + remedy + e.Then }

func (e *NeedsRootError) Unwrap() error { return e.Err }
