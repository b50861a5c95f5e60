package lightbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/beamhop/lightbox/internal/names"
	"github.com/beamhop/lightbox/runtime"
	"github.com/beamhop/lightbox/volstore"
)

// NeedsRootError is returned (wrapped) when what a rootless store was
// asked for is root's to do for it (keep a volume with a quota, mount its
// image again, remove what root keeps): Action says what, for a front end
// to show as its own command (see VolumeOptions.Owner, RemoveVolumeOf).
type NeedsRootError = volstore.NeedsRootError

// RootAction is what a NeedsRootError asks root to do.
type RootAction = volstore.RootAction

// The operations of a RootAction.
const (
	RootCreate = volstore.RootCreate
	RootRemove = volstore.RootRemove
)

// VolumeOptions apply when a volume is created; an existing volume is
// never changed.
type VolumeOptions struct {
	// QuotaMiB caps the volume's size; 0 = no quota.
	QuotaMiB int64
	// Labels are key/value pairs, checked by CheckVolumeLabels before
	// anything touches the disk.
	Labels map[string]string
	// Owner, as root, names a rootless user (name or uid) for whom root
	// keeps a volume with a quota (which a rootless store cannot
	// enforce): root keeps the quota'd data in its own store (this
	// Runtime's, under $ROOT/delegated/<uid>/<name>/, root-owned, the
	// volume's root directory the user's) and writes into the user's
	// store, OwnerRoot, only a reference that the user's own lightbox
	// resolves when it mounts the volume. Root never follows a path in
	// the user's store (see volstore.Store.Delegate). EnsureVolume with
	// an existing such volume mounts it again after a restart. "" = a
	// volume of this store.
	Owner string
	// OwnerRoot is Owner's store (their --root); "" = the default store
	// of that user, ~/.local/share/lightbox in their home directory.
	OwnerRoot string
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
	// Backend is how the quota is enforced: "dir" (none), "loop", "xfs";
	// "delegated" in a rootless store for a volume root keeps for its
	// user (see VolumeOptions.Owner).
	Backend string `json:"backend"`
	// Owner and OwnerRoot are set on a volume root keeps for a user: the
	// user's name and store.
	Owner     string `json:"owner,omitempty"`
	OwnerRoot string `json:"ownerRoot,omitempty"`
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
		d, err := r.delegation(opts.Owner, opts.OwnerRoot)
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", name, err)
		}
		dv, _, err := r.vols.Delegate(ctx, name, d, co)
		if err != nil {
			return nil, err
		}
		return delegatedVolume(dv), nil
	}
	if opts.OwnerRoot != "" {
		return nil, fmt.Errorf("volume %s: an owner's store is given without the owner", name)
	}
	v, _, err := r.vols.Ensure(ctx, name, co)
	if err != nil {
		return nil, err
	}
	return r.toVolume(ctx, v, nil), nil
}

// lookupOwner resolves an owner (name or uid): as root, the user's own
// uid and primary gid, which is what root inside their rootless sandboxes
// maps to.
func lookupOwner(owner string) (*user.User, int, int, error) {
	if os.Geteuid() != 0 {
		return nil, 0, 0, fmt.Errorf("owner %s: only root keeps a volume for another user", owner)
	}
	u, err := user.Lookup(owner)
	if err != nil {
		if u, err = user.LookupId(owner); err != nil {
			return nil, 0, 0, fmt.Errorf("owner %s: no such user", owner)
		}
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("owner %s: uid %q: %w", owner, u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("owner %s: gid %q: %w", owner, u.Gid, err)
	}
	if uid == 0 {
		return nil, 0, 0, fmt.Errorf("owner %s: root keeps volumes for ordinary users only", owner)
	}
	return u, uid, gid, nil
}

// delegation resolves an owner and their store.
func (r *Runtime) delegation(owner, store string) (volstore.Delegation, error) {
	u, uid, gid, err := lookupOwner(owner)
	if err != nil {
		return volstore.Delegation{}, err
	}
	if store == "" {
		if u.HomeDir == "" {
			return volstore.Delegation{}, fmt.Errorf("owner %s has no home directory: give their store (--owner-root)", owner)
		}
		store = filepath.Join(u.HomeDir, ".local", "share", "lightbox")
	}
	if store, err = filepath.Abs(store); err != nil {
		return volstore.Delegation{}, err
	}
	return volstore.Delegation{UID: uid, GID: gid, User: u.Username, Store: store}, nil
}

// RemoveVolumeOf, as root, removes a volume root keeps for owner (see
// VolumeOptions.Owner): the reference in the owner's store, when no
// sandbox of theirs uses it (else ErrInUse), then the data. ErrNotFound
// when root keeps no such volume.
func (r *Runtime) RemoveVolumeOf(ctx context.Context, owner, name string) error {
	_, uid, _, err := lookupOwner(owner)
	if err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	return r.vols.RemoveDelegated(ctx, uid, name)
}

// ListVolumesOf, as root, lists the volumes root keeps for owner, or for
// every user when owner is "".
func (r *Runtime) ListVolumesOf(ctx context.Context, owner string) ([]Volume, error) {
	uid := -1
	if owner != "" {
		var err error
		if _, uid, _, err = lookupOwner(owner); err != nil {
			return nil, fmt.Errorf("list volumes: %w", err)
		}
	}
	list, err := r.vols.ListDelegated(ctx, uid)
	if err != nil {
		return nil, err
	}
	out := make([]Volume, len(list))
	for i := range list {
		out[i] = *delegatedVolume(&list[i])
	}
	return out, nil
}

func delegatedVolume(v *volstore.DelegatedVolume) *Volume {
	labels := v.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	return &Volume{
		Name: v.Name, Labels: labels, CreatedAt: v.CreatedAt, LastUsedAt: v.LastUsedAt,
		QuotaMiB: v.QuotaMiB, UsedBytes: v.UsedBytes, UsageKnown: v.UsageKnown, Backend: v.Backend,
		UsedBy: []string{}, Owner: v.User, OwnerRoot: v.Store,
	}
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
		// Held, but by no running sandbox: one being launched (the
		// lease is taken before the sandbox is listed) or torn down.
		return fmt.Errorf("volume %s is in use by a sandbox being started or stopped (none running uses it yet): %w", name, ErrInUse)
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
		if s.Status != runtime.StatusRunning {
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
