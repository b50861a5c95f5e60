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
// message saying how an administrator can create the volume. The backend
// of each volume is recorded in its meta.json. Every Backend passes the
// conformance suite in volstore/backendtest.
//
// An administrator (root) may create a quota'd volume in a rootless
// user's store; everything it creates there is given to the store's owner
// so the user's own processes can lease and use the volume (mounting a
// loop image again after a reboot, and removing it, stay root's job).
//
// Contents owned by other ids of a rootless subordinate range are removed
// with internal/rmtree (so the embedding program's Init must dispatch its
// role). volstore does not know sandboxes: the caller names the users of a
// volume it cannot remove.
package volstore
