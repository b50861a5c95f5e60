package lightbox

import (
	"context"
	"strings"
	"time"
)

// VolumeOptions apply when a volume is created; an existing volume is
// never changed.
type VolumeOptions struct {
	// QuotaMiB caps the volume's size; 0 = no quota.
	QuotaMiB int64
	// Labels are free-form key/value pairs (keys non-empty, without '=').
	Labels map[string]string
	// Owner, as root, names the user (name or uid) whose rootless store
	// this is: the volume's root directory is made theirs. "" = the
	// store's own root user.
	Owner string
}

// Volume describes a named volume.
type Volume struct {
	Name       string            `json:"name"`
	Labels     map[string]string `json:"labels"`
	CreatedAt  time.Time         `json:"createdAt"`
	LastUsedAt time.Time         `json:"lastUsedAt"`
	QuotaMiB   int64             `json:"quotaMiB"`
	UsedBytes  int64             `json:"usedBytes"`
	// UsageKnown is false when UsedBytes was not computed (list with Size
	// to compute it where the quota backend does not know it).
	UsageKnown bool `json:"usageKnown"`
	// Backend is how the quota is enforced: "dir" (none), "loop", "xfs".
	Backend string `json:"backend"`
	// UsedBy names the live sandboxes that have it mounted now.
	UsedBy []string `json:"usedBy"`
}

// MatchesLabels reports whether v has every label filter: "K" (any value)
// or "K=V".
func (v Volume) MatchesLabels(filters []string) bool {
	for _, f := range filters {
		k, want, hasV := strings.Cut(f, "=")
		got, ok := v.Labels[k]
		if !ok || (hasV && got != want) {
			return false
		}
	}
	return true
}

// ListVolumesOptions tune ListVolumesWith.
type ListVolumesOptions struct {
	// Size computes usage by walking the volume where the quota backend
	// does not know it.
	Size bool
}

// PruneVolumesOptions select the unused volumes PruneVolumes removes.
type PruneVolumesOptions struct {
	// Labels are filters as for Volume.MatchesLabels.
	Labels []string
	// Until, when set, keeps volumes created after it.
	Until time.Time
	// DryRun only reports what would be removed.
	DryRun bool
}

// EnsureVolume creates the volume with opts, or, if it exists, returns it
// as it is (its real quota and labels).
func (r *Runtime) EnsureVolume(ctx context.Context, name string, opts VolumeOptions) (*Volume, error) {
	return nil, errNotYet
}

// ListVolumes lists the volumes in the store.
func (r *Runtime) ListVolumes(ctx context.Context) ([]Volume, error) {
	return r.ListVolumesWith(ctx, ListVolumesOptions{})
}

// ListVolumesWith lists the volumes in the store.
func (r *Runtime) ListVolumesWith(ctx context.Context, opts ListVolumesOptions) ([]Volume, error) {
	return nil, errNotYet
}

// InspectVolume returns the named volume.
func (r *Runtime) InspectVolume(ctx context.Context, name string, opts ListVolumesOptions) (*Volume, error) {
	return nil, errNotYet
}

// RemoveVolume removes a volume and its contents. It fails with ErrInUse,
// naming the sandboxes, while a live sandbox has it mounted, and with
// ErrNotFound for an unknown name.
func (r *Runtime) RemoveVolume(ctx context.Context, name string) error { return errNotYet }

// PruneVolumes removes the unused volumes that match opts and returns
// their names.
func (r *Runtime) PruneVolumes(ctx context.Context, opts PruneVolumesOptions) ([]string, error) {
	return nil, errNotYet
}

// EnsureVolume acts on the default Runtime.
func EnsureVolume(ctx context.Context, name string, opts VolumeOptions) (*Volume, error) {
	r, err := Default()
	if err != nil {
		return nil, err
	}
	return r.EnsureVolume(ctx, name, opts)
}

// ListVolumes acts on the default Runtime.
func ListVolumes(ctx context.Context) ([]Volume, error) {
	r, err := Default()
	if err != nil {
		return nil, err
	}
	return r.ListVolumes(ctx)
}

// RemoveVolume acts on the default Runtime.
func RemoveVolume(ctx context.Context, name string) error {
	r, err := Default()
	if err != nil {
		return err
	}
	return r.RemoveVolume(ctx, name)
}
