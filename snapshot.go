package lightbox

import (
	"context"
	"fmt"
	"time"

	"github.com/beamhop/lightbox/runtime"
	"github.com/beamhop/lightbox/snapshot"
)

// Snapshot describes an immutable snapshot in the store.
type Snapshot struct {
	// Name is the snapshot's name (its tag in the store's OCI layout).
	Name string `json:"name"`
	// Digest is the digest of its OCI manifest.
	Digest string `json:"digest"`
	// Layers is how many layers it has.
	Layers int `json:"layers"`
	// Size is its unpacked size in bytes: the sum of its layers'
	// uncompressed sizes (their tar streams), the same whether it was
	// imported from a directory or from a tarball. `lightbox snapshot ls`
	// shows it.
	Size int64 `json:"size"`
	// StoredSize is what its blobs take in the store, as stored
	// (compressed or not), manifest and config included.
	StoredSize int64 `json:"storedSize"`
	// CreatedAt is when it was imported.
	CreatedAt time.Time `json:"createdAt"`
	// Config is the image config a launch applies.
	Config SnapshotConfig `json:"config"`
}

// SnapshotConfig is the part of an OCI image config that a launch applies.
type SnapshotConfig struct {
	Env        []string          `json:"env,omitempty"`
	WorkingDir string            `json:"workingDir,omitempty"`
	User       string            `json:"user,omitempty"`
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Cmd        []string          `json:"cmd,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	// StopSignal is the image's STOPSIGNAL as written ("" = none, which
	// is SIGTERM).
	StopSignal string `json:"stopSignal,omitempty"`
}

// Command is the main process the image config names: its Entrypoint
// followed by its Cmd, as docker runs it; nil when it names none.
func (c SnapshotConfig) Command() []string { return imageCommand(c.Entrypoint, c.Cmd) }

func imageCommand(entrypoint, cmd []string) []string {
	if len(entrypoint)+len(cmd) == 0 {
		return nil
	}
	return append(append([]string{}, entrypoint...), cmd...)
}

// mainCommand is the main process of a sandbox launched with opts from a
// snapshot whose config names entrypoint and cmd.
func (opts *SandboxOptions) mainCommand(entrypoint, cmd []string) []string {
	if len(opts.Command) > 0 || !opts.UseImageCommand {
		return opts.Command
	}
	return imageCommand(entrypoint, cmd)
}

// ImportOptions tune ImportSnapshot. The zero value detects the format and
// refuses to replace a snapshot.
type ImportOptions struct {
	// Format forces the source format: "oci", "oci-archive",
	// "docker-archive", "rootfs-dir" or "rootfs-tar"; "" = detect.
	Format string
	// Replace replaces an existing snapshot of the same name instead of
	// failing with ErrExists.
	Replace bool
}

// ImportSnapshot imports source as snapshot name. source is an OCI image
// layout directory (dir or dir:tag), an oci-archive tar (file or
// file:tag), a `docker save` tar, a root filesystem directory or a root
// filesystem tarball.
func (r *Runtime) ImportSnapshot(ctx context.Context, name, source string, opts ImportOptions) (*Snapshot, error) {
	if err := checkInit(); err != nil && r.mapping.Subordinate {
		return nil, err // a rootless unpack re-executes the binary
	}
	s, err := r.snaps.Import(ctx, name, source, snapshot.ImportOptions{Format: opts.Format, Replace: opts.Replace})
	if err != nil {
		return nil, err
	}
	return toSnapshot(s), nil
}

// InspectSnapshot returns the named snapshot.
func (r *Runtime) InspectSnapshot(ctx context.Context, name string) (*Snapshot, error) {
	s, err := r.snaps.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	return toSnapshot(s), nil
}

// ListSnapshots lists the snapshots in the store, by name.
func (r *Runtime) ListSnapshots(ctx context.Context) ([]Snapshot, error) {
	list, err := r.snaps.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Snapshot, len(list))
	for i := range list {
		out[i] = *toSnapshot(&list[i])
	}
	return out, nil
}

// RemoveSnapshot removes a snapshot and frees the layers no other snapshot
// uses. It fails with ErrInUse while a sandbox uses the snapshot: a
// running one (it holds a lease), or an exited one kept for commit or logs
// (`run --keep`), as docker's rmi refuses an image a stopped container
// uses: its layers are what that sandbox's changes are over.
func (r *Runtime) RemoveSnapshot(ctx context.Context, name string) error {
	list, err := r.mgr.List(ctx)
	if err != nil {
		return fmt.Errorf("remove snapshot %s: %w", name, err)
	}
	for _, in := range list {
		if in.Snapshot == name && in.Status == runtime.StatusExited {
			return fmt.Errorf("remove snapshot %s: sandbox %s (exited) uses it; remove the sandbox first: %w", name, in.Name, ErrInUse)
		}
	}
	return r.snaps.Remove(ctx, name)
}

func toSnapshot(s *snapshot.Snapshot) *Snapshot {
	c := s.Config
	return &Snapshot{
		Name: s.Name, Digest: s.Digest, Layers: s.LayerCount, Size: s.Size, StoredSize: s.StoredSize, CreatedAt: s.CreatedAt,
		Config: SnapshotConfig{Env: c.Env, WorkingDir: c.WorkingDir, User: c.User, Entrypoint: c.Entrypoint, Cmd: c.Cmd, Labels: c.Labels, StopSignal: c.StopSignal},
	}
}

// ExportOptions tune ExportSnapshot. The zero value writes an OCI image
// layout directory with the snapshot's name as its tag.
type ExportOptions struct {
	// Format is "oci" (an OCI image layout directory, created if missing,
	// other images in it kept) or "oci-archive" (a tar file that must not
	// exist); "" = "oci".
	Format string
	// Tag is the image's tag in the destination; "" = the snapshot's name.
	Tag string
}

// ExportSnapshot writes the named snapshot to dst as an OCI image, in a
// form ImportSnapshot (and skopeo, podman, umoci) read back.
func (r *Runtime) ExportSnapshot(ctx context.Context, name, dst string, opts ExportOptions) error {
	return r.snaps.Export(ctx, name, dst, snapshot.ExportOptions{Format: opts.Format, Tag: opts.Tag})
}
