package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The targets layer is a directory of empty mount targets shared by every
// sandbox of the store: the bottom layer of each sandbox's overlay. The
// init binds /etc/hostname, /etc/hosts and /etc/resolv.conf over files
// and mounts /proc, /sys and /dev on directories; an image without them
// used to get each one created in the sandbox's upper dir at every launch
// (the /etc directory copied up, three files made, all deleted again at
// teardown: bench/NOTES.md on ext4's allocator). As the bottom layer it
// only fills what the image lacks: any layer that has the entry, a
// whiteout or an opaque directory over it wins, as for any lower layer,
// and then the init creates the target in the upper dir as before. The
// upper dir stays a plain diff of what the sandbox wrote, so a commit
// never captures the targets.
const targetsName = ".targets"

// targets are the layer's entries: directories end in a slash.
var targets = []string{"etc/", "etc/hostname", "etc/hosts", "etc/resolv.conf", "proc/", "sys/", "dev/"}

// targetsLayer returns the store's targets layer, made on first use. The
// caller holds the global lock (so no GC removes a layer being made);
// the layer is made in a scratch directory and renamed into place.
func (m *Manager) targetsLayer() (string, error) {
	p := filepath.Join(m.root, targetsName)
	if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
		return p, nil
	}
	tmp, err := os.MkdirTemp(m.root, targetsName+"-tmp-")
	if err != nil {
		return "", fmt.Errorf("mount targets layer: %w", err)
	}
	if err := m.makeTargets(tmp); err != nil {
		return "", errors.Join(fmt.Errorf("mount targets layer: %w", err), os.RemoveAll(tmp))
	}
	if err := os.Rename(tmp, p); err != nil {
		return "", errors.Join(fmt.Errorf("mount targets layer: %w", err), os.RemoveAll(tmp))
	}
	return p, nil
}

// makeTargets fills dir with the targets, owned by the sandbox's root
// like an image's own entries.
func (m *Manager) makeTargets(dir string) error {
	paths := []string{dir}
	for _, t := range targets {
		p := filepath.Join(dir, t)
		if strings.HasSuffix(t, "/") {
			if err := os.Mkdir(p, 0o755); err != nil {
				return err
			}
		} else if err := os.WriteFile(p, nil, 0o644); err != nil {
			return err
		}
		paths = append(paths, p)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	return m.chownToRoot(paths...)
}

// isTargetsScratch reports whether an entry of the root is a targets
// layer a crash left half made (GC removes it).
func isTargetsScratch(name string) bool { return strings.HasPrefix(name, targetsName+"-tmp-") }
