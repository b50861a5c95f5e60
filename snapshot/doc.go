// Package snapshot is lightbox's store of immutable snapshots: root
// filesystems that sandboxes launch from.
//
// A Store keeps one OCI image layout (umoci's CAS) under <Root>/oci, in
// which every snapshot is a tagged manifest: the snapshot's name is the tag.
// Each layer blob is unpacked once per store, with umoci in the overlayfs
// on-disk format with user.overlay.* whiteouts, into <Root>/layers/<hex>
// (the blob digest's hex), and shared by every snapshot that has that
// layer; the overlay package stacks these directories as lower dirs.
//
// Import reads an OCI image layout directory (DIR or DIR:TAG), an
// oci-archive tar (FILE or FILE:TAG), a `docker save` tar (FILE or
// FILE:REPO:TAG), a root filesystem directory, or a root filesystem tarball
// (gzipped or not). The format is detected, or forced with
// ImportOptions.Format.
//
// Commit makes a snapshot from another plus a sandbox's overlayfs upper
// directory (its whiteouts become OCI whiteouts); Export writes a snapshot
// out as an OCI image layout or oci-archive. The upper directory is a tree
// the sandbox controls, so Commit reads it by descriptor only (openat2
// with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS per entry, fstat of what was
// opened), never by path: see upper_linux.go.
//
// Ownership. Files in a layer directory are owned by host ids that the
// store's id mapping maps into the sandbox. As real root that is the
// store's private range (umoci chowns each entry into it; directories the
// tar only implies are given to the range's root) or the identity;
// rootless with a subordinate id range the
// unpack (and the removal) of a layer runs in a re-executed child
// (HelperRole) inside a user namespace with the store's mapping, so owners,
// modes, xattrs and file capabilities survive; rootless with a single id,
// umoci's rootless mode unpacks everything as the caller.
//
// A root filesystem directory is imported as a tarball of it would be: its
// owners become the layer's ids, except that host ids the store's mapping
// covers become the ids they are inside (a rootless caller's own files are
// root's). Before anything is written the tree is walked, and a file or
// directory the importing process could not read fails the import with an
// error naming it (a rootless user importing a root-owned tree with a 0600
// file is told to import a tarball its owner made instead).
//
// Sizes. A Snapshot's Size is its unpacked size (the sum of its layers'
// regular file sizes, recorded per layer blob under <Root>/sizes), the same
// whichever form the tree came in; StoredSize is what its blobs take.
//
// Locks and crash safety. Every change to the OCI layout's index happens
// under the store's index lock (umoci rewrites index.json with no lock of
// its own). A layer is unpacked into a temporary directory under
// Options.TmpDir, under a per-layer lock, written to the disk (syncfs)
// and renamed into place, so concurrent imports sharing layers unpack
// each layer once, and a layer in place survives a power cut whole. A snapshot is
// tagged only after all its blobs are stored and its layers unpacked.
// Imports hold the GC lock shared; garbage collection (of blobs and layer
// directories no tagged snapshot uses, and of temporary directories that
// a killed process left unlocked) runs when it can take that lock
// exclusively: after Remove and at the end of every import. A killed
// import leaves at most unreferenced blobs, layers and unlocked temporary
// directories, which the next collection removes.
//
// Leases. A sandbox holds a Lease (a shared flock) on its snapshot for its
// whole life; Remove, and an Import that would replace the snapshot, fail
// with errdefs.ErrInUse while one is held.
//
// A Store is safe for concurrent use by many goroutines, and several
// processes may use one store directory at once.
package snapshot
