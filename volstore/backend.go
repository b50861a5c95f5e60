package volstore

import "context"

// Backend stores one volume's data directory and enforces (or refuses) its
// size limit. Implementations: "dir" (plain directory, no quota), "loop"
// (a sparse ext4 image loop-mounted on the data directory, root only),
// "xfs" (XFS project quota on the data directory, root on an XFS store
// mounted with prjquota). All pass the conformance suite in
// volstore/backendtest.
type Backend interface {
	// Name is recorded in the volume's meta.json and shown by inspect.
	Name() string
	// Create makes dataDir (which does not exist yet) able to hold at most
	// limitBytes (0 = no limit), owned by uid:gid with mode perm.
	Create(ctx context.Context, dataDir string, limitBytes int64, uid, gid int, perm uint32) error
	// Activate makes an existing volume usable (e.g. mounts its image after
	// a reboot); a no-op when it already is.
	Activate(ctx context.Context, dataDir string) error
	// Remove deletes dataDir with everything in it and frees what Create
	// allocated (mounts, images, project ids).
	Remove(ctx context.Context, dataDir string) error
	// Usage reports the bytes used under dataDir; known is false when the
	// backend cannot tell cheaply (the caller may walk the tree instead).
	Usage(ctx context.Context, dataDir string) (used int64, known bool, err error)
}
