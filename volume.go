package lightbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/beamhop/lightbox/internal/names"
	"github.com/beamhop/lightbox/volstore"
)

// VolumeOptions apply when a volume is created; an existing volume is
// never changed.
type VolumeOptions struct {
	// QuotaMiB caps the volume's size; 0 = no quota.
	QuotaMiB int64
	// Labels are key/value pairs, checked by CheckVolumeLabels before
	// anything touches the disk.
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

// ErrInvalidVolumeOption: a bad quota or label in VolumeOptions (or a bad
// label filter); nothing was touched.
var ErrInvalidVolumeOption = volstore.ErrInvalidOption

// CheckVolumeLabels checks labels as EnsureVolume does: at most 64; keys
// of 1 to 128 bytes without '=' or space; values of at most 1024 bytes;
// both valid UTF-8 of printable characters only (no control characters,
// tabs or invisible format characters). The error wraps
// ErrInvalidVolumeOption.
func CheckVolumeLabels(labels map[string]string) error { return volstore.CheckLabels(labels) }

// CheckLabelFilter checks a label filter ("K" or "K=V") by the rules of
// CheckVolumeLabels.
func CheckLabelFilter(f string) error { return volstore.CheckLabelFilter(f) }

// MatchesLabels reports whether v has every label filter: "K" (any value)
// or "K=V".
func (v Volume) MatchesLabels(filters []string) bool { return volstore.MatchLabels(v.Labels, filters) }

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
	if err := names.Check("volume", name); err != nil {
		return nil, err
	}
	if err := volstore.CheckLabels(opts.Labels); err != nil {
		return nil, fmt.Errorf("volume %s: %w", name, err)
	}
	co := volstore.CreateOptions{QuotaMiB: opts.QuotaMiB, Labels: opts.Labels, UID: -1, GID: -1}
	if opts.Owner != "" {
		uid, gid, err := r.ownerIDs(opts.Owner)
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", name, err)
		}
		co.UID, co.GID = uid, gid
	}
	v, _, err := r.vols.Ensure(ctx, name, co)
	if err != nil {
		return nil, err
	}
	return r.toVolume(ctx, v, nil), nil
}

// ownerIDs resolves --owner: as root, the user's own uid and primary gid,
// which is what root inside their rootless sandboxes maps to.
func (r *Runtime) ownerIDs(owner string) (int, int, error) {
	if os.Geteuid() != 0 {
		return 0, 0, fmt.Errorf("owner %s: only root can create a volume for another user", owner)
	}
	u, err := user.Lookup(owner)
	if err != nil {
		if u, err = user.LookupId(owner); err != nil {
			return 0, 0, fmt.Errorf("owner %s: no such user", owner)
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// ListVolumes lists the volumes in the store.
func (r *Runtime) ListVolumes(ctx context.Context) ([]Volume, error) {
	return r.ListVolumesWith(ctx, ListVolumesOptions{})
}

// ListVolumesWith lists the volumes in the store.
func (r *Runtime) ListVolumesWith(ctx context.Context, opts ListVolumesOptions) ([]Volume, error) {
	list, err := r.vols.List(ctx, opts.Size)
	if err != nil {
		return nil, err
	}
	users := r.volumeUsers(ctx)
	out := make([]Volume, len(list))
	for i := range list {
		out[i] = *r.toVolume(ctx, &list[i], users)
	}
	return out, nil
}

// InspectVolume returns the named volume.
func (r *Runtime) InspectVolume(ctx context.Context, name string, opts ListVolumesOptions) (*Volume, error) {
	v, err := r.vols.Inspect(ctx, name, opts.Size)
	if err != nil {
		return nil, err
	}
	return r.toVolume(ctx, v, nil), nil
}

// RemoveVolume removes a volume and its contents. It fails with ErrInUse,
// naming the sandboxes, while a live sandbox has it mounted, and with
// ErrNotFound for an unknown name.
func (r *Runtime) RemoveVolume(ctx context.Context, name string) error {
	if err := names.Check("volume", name); err != nil {
		return err
	}
	err := r.vols.Remove(ctx, name)
	if errors.Is(err, ErrInUse) {
		if users := r.volumeUsers(ctx)[name]; len(users) > 0 {
			return fmt.Errorf("volume %s is mounted by sandbox %s: %w", name, strings.Join(users, ", "), ErrInUse)
		}
	}
	return err
}

// PruneVolumes removes the unused volumes that match opts and returns
// their names.
func (r *Runtime) PruneVolumes(ctx context.Context, opts PruneVolumesOptions) ([]string, error) {
	return r.vols.Prune(ctx, volstore.PruneFilter{Labels: opts.Labels, Until: opts.Until}, opts.DryRun)
}

// volumeUsers maps volume names to the live sandboxes that mount them.
func (r *Runtime) volumeUsers(ctx context.Context) map[string][]string {
	users := map[string][]string{}
	list, err := r.ListSandboxes(ctx)
	if err != nil {
		return users
	}
	for _, s := range list {
		if s.Status != "running" {
			continue
		}
		for _, v := range s.Volumes {
			users[v] = append(users[v], s.Name)
		}
	}
	return users
}

func (r *Runtime) toVolume(ctx context.Context, v *volstore.Volume, users map[string][]string) *Volume {
	if users == nil {
		users = r.volumeUsers(ctx)
	}
	used := users[v.Name]
	if used == nil {
		used = []string{}
	}
	labels := v.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	return &Volume{
		Name: v.Name, Labels: labels, CreatedAt: v.CreatedAt, LastUsedAt: v.LastUsedAt,
		QuotaMiB: v.QuotaMiB, UsedBytes: v.UsedBytes, UsageKnown: v.UsageKnown, Backend: v.Backend, UsedBy: used,
	}
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
