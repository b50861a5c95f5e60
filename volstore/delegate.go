package volstore

import (
	"context"
	"errors"
	"time"
)

// backendDelegated is the backend of a reference: a volume whose data root
// keeps in its own area for this store's user.
const backendDelegated = "delegated"

// Delegation names the rootless user for whom root keeps a quota'd volume,
// and that user's store.
type Delegation struct {
	// UID and GID own the volume's root directory: the user's own ids,
	// which root inside their rootless sandboxes maps to.
	UID, GID int
	// User is the user's name, for messages and records.
	User string
	// Store is the user's store root (their --root); the reference goes
	// into its volumes/ directory, which must already exist or be
	// creatable in a directory the user owns.
	Store string
}

// DelegatedVolume is root's record of a volume it keeps for a user.
type DelegatedVolume struct {
	Volume
	UID   int    `json:"uid"`
	GID   int    `json:"gid"`
	User  string `json:"user"`
	Store string `json:"store"`
}

// delegRef is what a reference's meta.json says of the volume root keeps.
// The user's own lightbox reads it and mounts DataDir with the user's own
// rights; root never reads it.
type delegRef struct {
	// Backend is how root enforces the quota: "loop" or "xfs".
	Backend string `json:"backend"`
	// DataDir is the directory root keeps for the volume, to mount.
	DataDir string `json:"dataDir"`
	// AdminRoot is root's store, for the commands messages name.
	AdminRoot string `json:"adminRoot"`
	// Owner is the user's name, as root's commands take it.
	Owner string `json:"owner"`
}

// delegRecord is root's own record of a delegated volume:
// <DelegateDir>/<uid>/<name>/record.json, root-owned like everything
// around it. Root decides what to mount, unmount and remove from this
// alone.
type delegRecord struct {
	Version   int               `json:"version"`
	Name      string            `json:"name"`
	UID       int               `json:"uid"`
	GID       int               `json:"gid"`
	User      string            `json:"user"`
	Store     string            `json:"store"`
	Labels    map[string]string `json:"labels"`
	CreatedAt time.Time         `json:"createdAt"`
	QuotaMiB  int64             `json:"quotaMiB"`
	Backend   string            `json:"backend"`
}

// refBackend stands for a reference in the user's store: it has no data of
// its own there (the data is root's), so removing it frees nothing.
type refBackend struct{}

func (refBackend) Name() string { return backendDelegated }
func (refBackend) Create(ctx context.Context, dataDir string, limitBytes int64, uid, gid int, perm uint32) error {
	return errors.New("a delegated volume is made by root: see Delegate")
}
func (refBackend) Activate(ctx context.Context, dataDir string) error { return nil }
func (refBackend) Remove(ctx context.Context, dataDir string) error   { return nil }
func (refBackend) Usage(ctx context.Context, dataDir string) (int64, bool, error) {
	return 0, false, nil
}

// createAction is root making (or mounting again), in the store that
// keeps the volume, the volume for the reference's owner.
func (r *delegRef) createAction(quotaMiB int64, name, userStore string) RootAction {
	return RootAction{Op: RootCreate, AdminRoot: r.AdminRoot, Owner: r.Owner, OwnerRoot: userStore, Volume: name, QuotaMiB: quotaMiB}
}

// removeAction is root removing the volume.
func (r *delegRef) removeAction(name string) RootAction {
	return RootAction{Op: RootRemove, AdminRoot: r.AdminRoot, Owner: r.Owner, Volume: name}
}
