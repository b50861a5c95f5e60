package snapshot

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/lockfile"
	"github.com/beamhop/lightbox/internal/names"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrParentReplaced is returned by Commit when the snapshot a sandbox was
// launched from has been replaced since (CommitOptions.Launched).
var ErrParentReplaced = errors.New("commit refused: the snapshot was replaced since")

// CommitOptions tune Commit.
type CommitOptions struct {
	// Config, when not nil, replaces the parent's runtime configuration
	// in the new snapshot; nil keeps the parent's.
	Config *Config
	// Comment is recorded in the image history ("" = "lightbox commit").
	Comment string
	// Replace lets the commit replace an existing snapshot of that name
	// (unless a sandbox uses it); otherwise an existing name is ErrExists.
	Replace bool
	// UpperRead, when not nil, is called once upper has been read (the
	// layer blob is stored or its making failed), before the layer is
	// unpacked: a sandbox frozen for the commit can run on from there.
	UpperRead func()
	// Launched, when set, is when the sandbox whose upper this is was
	// launched from parent: a parent (re)made after it is another image
	// than the one the sandbox's changes were made over (the name was
	// replaced while the sandbox, exited, held no lease on it), and the
	// commit fails rather than put them on it.
	Launched time.Time
}

// Commit makes snapshot name from snapshot parent plus one layer: the
// overlayfs upper directory upper of a sandbox launched from parent
// (user.overlay.* whiteouts and opaque directories become OCI whiteouts).
// The layer is unpacked into the store like any other, so the new
// snapshot launches like an imported one. The upper directory is read
// by descriptor, never following a symlink (see upperLayer): files the
// sandbox changes meanwhile cannot bring anything from outside it into
// the layer, but only a stopped sandbox gives a consistent picture.
// Entries that changed type while read, and files named ".wh.*" (which
// OCI layers reserve), are left out with a warning on the store's logger.
func (s *Store) Commit(ctx context.Context, name, parent, upper string, opts CommitOptions) (*Snapshot, error) {
	if err := names.Check("snapshot", name); err != nil {
		return nil, err
	}
	if err := names.Check("snapshot", parent); err != nil {
		return nil, err
	}
	if !opts.Replace {
		if _, err := s.Get(ctx, name); err == nil {
			return nil, fmt.Errorf("commit %s: snapshot %s: %w", name, name, errdefs.ErrExists)
		}
	}
	gl, err := lockfile.Shared(ctx, s.gcLock())
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", name, err)
	}
	sn, err := s.commitLocked(ctx, name, parent, upper, opts)
	gl.Close()
	if gerr := s.tryGC(ctx); gerr != nil {
		s.log.Warn("gc after commit", "err", gerr)
	}
	if err != nil {
		return nil, fmt.Errorf("commit %s from %s: %w", name, parent, err)
	}
	return sn, nil
}

func (s *Store) commitLocked(ctx context.Context, name, parent, upper string, opts CommitOptions) (*Snapshot, error) {
	e, err := s.engine()
	if err != nil {
		return nil, err
	}
	defer func() { _ = e.Close() }() // every write was checked; Close removes the .umoci-* dir writes made, and one it leaves (unlocked by then) goes with the next gc's umoci GC
	idx, err := e.GetIndex(ctx)
	if err != nil {
		return nil, err
	}
	var pdesc *ispec.Descriptor
	for _, d := range idx.Manifests {
		if d.Annotations[ispec.AnnotationRefName] == parent {
			pdesc = &d
		}
	}
	if pdesc == nil {
		return nil, fmt.Errorf("snapshot %s: %w", parent, errdefs.ErrNotFound)
	}
	if t, err := time.Parse(time.RFC3339Nano, pdesc.Annotations[annotationCreated]); err == nil && !opts.Launched.IsZero() && t.After(opts.Launched) {
		return nil, fmt.Errorf("snapshot %s was replaced at %s, after the sandbox was launched from it (%s): the sandbox's changes are to the image it had then: %w",
			parent, t.Format(time.RFC3339Nano), opts.Launched.UTC().Format(time.RFC3339Nano), ErrParentReplaced)
	}
	var m ispec.Manifest
	if err := readJSON(ctx, e, *pdesc, &m); err != nil {
		return nil, fmt.Errorf("snapshot %s: manifest: %w", parent, err)
	}
	var img ispec.Image
	if err := readJSON(ctx, e, m.Config, &img); err != nil {
		return nil, fmt.Errorf("snapshot %s: config: %w", parent, err)
	}
	l, diffID, err := s.layerFromUpper(ctx, e, upper, nil)
	if opts.UpperRead != nil {
		opts.UpperRead()
	}
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	comment := opts.Comment
	if comment == "" {
		comment = "lightbox commit"
	}
	padHistory(&img)
	img.Created = &now
	img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, diffID)
	img.History = append(img.History, ispec.History{Created: &now, CreatedBy: "lightbox commit", Comment: comment})
	if c := opts.Config; c != nil {
		img.Config.Env, img.Config.WorkingDir, img.Config.User = c.Env, c.WorkingDir, c.User
		img.Config.Entrypoint, img.Config.Cmd, img.Config.Labels = c.Entrypoint, c.Cmd, c.Labels
		img.Config.StopSignal = c.StopSignal
	}
	cd, cn, err := e.PutBlobJSON(ctx, img)
	if err != nil {
		return nil, fmt.Errorf("store config: %w", err)
	}
	nm := ispec.Manifest{
		Config: ispec.Descriptor{MediaType: ispec.MediaTypeImageConfig, Digest: cd, Size: cn},
		Layers: append(append([]ispec.Descriptor{}, m.Layers...), l),
	}
	mdesc, nm, err := s.putManifest(ctx, e, nm)
	if err != nil {
		return nil, err
	}
	if err := s.ensureLayers(ctx, e, nm.Layers); err != nil {
		return nil, err
	}
	return s.tag(ctx, e, name, mdesc, opts.Replace)
}
