package snapshot

// CopyRequest asks CopyOut for paths of an image.
type CopyRequest struct {
	// Layers are the image's unpacked layers, bottom first
	// (Snapshot.Layers).
	Layers []string `json:"layers"`
	// Sources are paths in the image, relative to its root (a leading
	// "/" is the same). One that leaves the root through ".." or a
	// symlink is an error; the source itself is followed when it is a
	// symlink (inside the image), as docker does. A source with a
	// pattern (*, ?, [...]) copies what it matches into Dest.
	Sources []string `json:"sources"`
	// Dest is where they go (absolute). A directory's contents go into
	// Dest; a file goes to Dest, or into it when DestDir.
	Dest    string `json:"dest"`
	DestDir bool   `json:"destDir"`
	// MakeDest writes Dest itself, once, as the first directory source
	// is (mode, owner, time, xattrs): for a Dest the image being built
	// lacks, which COPY makes even for an empty directory, as docker
	// does. Without it Dest is left to the image, or made as a parent.
	MakeDest bool `json:"makeDest"`
}
