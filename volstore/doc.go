// Package volstore is lightbox's store of named volumes: directories that
// outlive sandboxes (package caches, model weights, build artifacts) and
// are mounted into them by name.
//
// On disk, under Options.Root ($ROOT/volumes):
//
//	<name>/meta.json   labels, createdAt, lastUsedAt, quotaMiB, backend
//	<name>/lease       flocked shared by every sandbox using the volume
//	<name>/data/       the volume's contents (a mount point for "loop")
//	<name>/data.img    the ext4 image of a "loop" volume
//	.locks/<name>.lock per-name lock serializing create, lease and remove
//
// Labels are checked by CheckLabels before anything touches the disk: at
// most MaxLabels, keys of 1 to MaxLabelKey bytes without '=' or space,
// values of at most MaxLabelValue bytes, all valid UTF-8 of printable
// characters. What is read back from meta.json is not checked again: a
// program that prints labels must escape them.
//
// Lifecycle. Ensure creates a volume, or returns an existing one unchanged;
// Acquire does the same and then takes a lease: a shared flock on the
// volume's lease file whose *os.File the caller hands to the sandbox's
// init, so the lease lives exactly as long as the sandbox (a kill -9'd
// sandbox holds nothing). Remove takes the per-name lock, fails with
// errdefs.ErrInUse while any lease is held, else renames the volume out of
// the namespace into Options.TmpDir before deleting it, so no sandbox can
// ever mount a half-deleted volume. A volume is built in TmpDir and renamed
// into place complete; what a kill -9 leaves in TmpDir is cleaned by the
// next operation on that name (or by Open).
//
// Quotas are enforced by a Backend, chosen once when the store is opened:
// "xfs" (project quotas; the store's filesystem is XFS mounted with
// prjquota and the caller is root), "loop" (a sparse ext4 image per
// quota'd volume, loop-mounted once on data/; root only) or none. A volume
// without a quota always uses the "dir" backend. Where no quota backend is
// available a quota request fails with errdefs.ErrQuotaUnsupported and a
// message naming the command with which root keeps such a volume for the
// user (see Delegated volumes). The backend
// of each volume is recorded in its meta.json. Every Backend passes the
// conformance suite in volstore/backendtest.
//
// Delegated volumes (as root, under Options.DelegateDir, $ROOT/delegated).
// A rootless store cannot enforce a quota, so root
// keeps one for the user (Delegate, lightbox volume create --owner): the
// quota'd backing (a loop image or an XFS project directory) lives in
// root's own area, DelegateDir/<uid>/<name>/ (record.json, data.img root's
// and 0600, data/; every directory root-owned 0711, only the volume's root
// directory the user's), keyed by (uid, name). The user's store gets only
// a reference, volumes/<name>/ with meta.json (backend "delegated", the
// backing's data directory) and lease, owned by the user; the user's own
// lightbox resolves it when it mounts the volume.
//
// Root never follows a path the user controls: it opens the user's store
// (checked by fstat to be a directory the user owns, wherever the path
// led), then every entry below it relative to a descriptor with openat2
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_XDEV; it creates with
// mkdirat and O_CREAT|O_EXCL on those descriptors, writes through them and
// gives what it made to the user with fchown, and never fchowns what it
// did not just make. It never reads a meta.json of the user's store: what
// root mounts, unmounts and removes comes from its own record. A forged
// reference can at most make the user's own lightbox bind, with the
// user's rights, something the user can already reach. Root never
// loop-mounts an image a user could write: the image is root's, and the
// user writes only files through the mounted filesystem.
//
// Removal is root's (RemoveDelegated, volume rm --owner): it takes the
// user's own per-name lock and the reference's lease exclusively (refused
// with errdefs.ErrInUse while a sandbox of the user holds it), removes
// the reference when it holds nothing but meta.json and lease, then frees
// the backing. The user's Remove of a reference is refused, naming that
// command, while root still keeps the backing, and removes a dangling one.
// After a restart a loop image is not mounted: the user's launch fails
// naming the root command that mounts it again (Delegate of the existing
// volume: volume create --owner), which also writes the reference again if
// the user's store lost it.
//
// Contents owned by other ids of a rootless subordinate range are removed
// with internal/rmtree (so the embedding program's Init must dispatch its
// role). volstore does not know sandboxes: the caller names the users of a
// volume it cannot remove.
package volstore
