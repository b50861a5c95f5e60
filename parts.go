package lightbox

import (
	"context"
	"errors"
	"time"
)

// errNotYet marks API the store does not implement yet.
var errNotYet = errors.New("not implemented yet")

func (r *Runtime) openParts() error  { return nil }
func (r *Runtime) closeParts() error { return nil }

// Sandbox is a running (or finished) sandbox. It is safe for concurrent use.
type Sandbox struct {
	name string
}

// SandboxInfo describes a sandbox found in the store.
type SandboxInfo struct {
	Name      string    `json:"name"`
	Snapshot  string    `json:"snapshot"`
	Status    string    `json:"status"`
	ExitCode  *int      `json:"exitCode,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	Volumes   []string  `json:"volumes,omitempty"`
}

// Name returns the sandbox's name (also its hostname).
func (s *Sandbox) Name() string { return s.name }

// Shell runs script with /bin/sh -c and waits for it.
func (s *Sandbox) Shell(ctx context.Context, script string) (*Result, error) { return nil, errNotYet }

// Exec runs path with args and waits for it.
func (s *Sandbox) Exec(ctx context.Context, path string, args ...string) (*Result, error) {
	return nil, errNotYet
}

// Detach leaves the sandbox running after this process exits.
func (s *Sandbox) Detach() error { return errNotYet }

// Destroy stops every process in the sandbox and removes it.
func (s *Sandbox) Destroy(ctx context.Context) error { return errNotYet }

// RunInSandbox launches a sandbox, runs fn with it and destroys it when fn
// returns, panics, or ctx ends.
func (r *Runtime) RunInSandbox(ctx context.Context, opts SandboxOptions, fn func(*Sandbox) error) error {
	return errNotYet
}

// LaunchSandbox launches a sandbox and returns its handle.
func (r *Runtime) LaunchSandbox(ctx context.Context, opts SandboxOptions) (*Sandbox, error) {
	return nil, errNotYet
}

// AttachSandbox finds a live sandbox by name.
func (r *Runtime) AttachSandbox(ctx context.Context, name string) (*Sandbox, error) {
	return nil, errNotYet
}

// ListSandboxes lists the sandboxes in the store.
func (r *Runtime) ListSandboxes(ctx context.Context) ([]SandboxInfo, error) { return nil, errNotYet }

// RunInSandbox acts on the default Runtime.
func RunInSandbox(ctx context.Context, opts SandboxOptions, fn func(*Sandbox) error) error {
	r, err := Default()
	if err != nil {
		return err
	}
	return r.RunInSandbox(ctx, opts, fn)
}

// LaunchSandbox acts on the default Runtime.
func LaunchSandbox(ctx context.Context, opts SandboxOptions) (*Sandbox, error) {
	r, err := Default()
	if err != nil {
		return nil, err
	}
	return r.LaunchSandbox(ctx, opts)
}

// Snapshot describes a snapshot in the store.
type Snapshot struct {
	Name string `json:"name"`
}

// ImportOptions tune ImportSnapshot.
type ImportOptions struct {
	// Format forces the source format; "" = detect.
	Format string
	// Replace replaces an existing snapshot of the same name.
	Replace bool
}

// ImportSnapshot imports source as snapshot name.
func (r *Runtime) ImportSnapshot(ctx context.Context, name, source string, opts ImportOptions) (*Snapshot, error) {
	return nil, errNotYet
}

// ListSnapshots lists the snapshots in the store.
func (r *Runtime) ListSnapshots(ctx context.Context) ([]Snapshot, error) { return nil, errNotYet }

// RemoveSnapshot removes a snapshot and frees layers nothing else uses.
func (r *Runtime) RemoveSnapshot(ctx context.Context, name string) error { return errNotYet }

// VolumeOptions apply when a volume is created.
type VolumeOptions struct {
	// QuotaMiB caps the volume's size; 0 = no quota.
	QuotaMiB int64
	// Labels are free-form key/value pairs.
	Labels map[string]string
}

// Volume describes a named volume.
type Volume struct {
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels"`
	CreatedAt time.Time         `json:"createdAt"`
	QuotaMiB  int64             `json:"quotaMiB"`
	UsedBytes int64             `json:"usedBytes"`
}

// EnsureVolume creates the volume, or returns it as it is.
func (r *Runtime) EnsureVolume(ctx context.Context, name string, opts VolumeOptions) (*Volume, error) {
	return nil, errNotYet
}

// ListVolumes lists the volumes in the store.
func (r *Runtime) ListVolumes(ctx context.Context) ([]Volume, error) { return nil, errNotYet }

// RemoveVolume removes a volume and its contents.
func (r *Runtime) RemoveVolume(ctx context.Context, name string) error { return errNotYet }

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
