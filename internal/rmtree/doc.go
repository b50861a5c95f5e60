// Package rmtree deletes directory trees that the calling process may not be
// able to delete on the host: trees holding unreadable or unwritable
// directories (an overlay work dir's work/work is mode 000) and, rootless
// with a subordinate id range, files owned by the other ids of that range
// (what apt or a non-root user wrote inside a sandbox or a volume).
//
// As root, or rootless with a single id, it removes in-process, making
// directories searchable and writable as it goes. Rootless with a range it
// first does the same and, if anything is left, re-executes the binary in
// the rmtree role inside a user namespace with the store's mapping, where
// the caller is root over every id of the range. The embedding program's
// lightbox.Init (and every TestMain that removes such trees) dispatches
// that role: if reexec.Role() == rmtree.Role { rmtree.Main() }.
//
// Its one other job is Chown: giving a new directory (a volume's root) to
// another id of the range, which needs the same user namespace.
//
// rmtree never crosses into what it cannot delete: a mount point under
// the tree makes the removal fail with EBUSY, and symlinks are removed,
// never followed.
package rmtree

// Role is the re-exec role of the remover run inside a user namespace.
const Role = "rmtree"
