package snapshot

import "io/fs"

// DirOwner is the owner and mode of a directory of a snapshot, in host
// ids: what a new volume mounted over it starts with.
type DirOwner struct {
	UID, GID int
	Mode     fs.FileMode // permission bits, setuid/setgid/sticky included
}
