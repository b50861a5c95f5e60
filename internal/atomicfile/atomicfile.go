// Package atomicfile writes files so that a reader (or a crash) sees either
// the old content or the new one, never a part.
package atomicfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// tempName is the name of Write's temporary files for a file named base
// (os.CreateTemp puts a random string for the "*"), and the glob of them.
func tempName(base string) string { return ".tmp-" + base + "-*" }

// Leftovers returns the temporary files that Writes of path killed before
// their rename left beside it (Write removes its own on any error it
// returns). path's last element may be a glob pattern, for the writes of
// several files (".init-*"). The caller must know that no Write of those
// files is under way (it holds their lock) before it removes them.
func Leftovers(path string) []string {
	m, _ := filepath.Glob(filepath.Join(filepath.Dir(path), tempName(filepath.Base(path)))) // the only error is a malformed pattern: then none match
	return m
}

// Write writes data to path via a temporary file in the same directory,
// fsync and rename.
func Write(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempName(filepath.Base(path)))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close() // the write's error is returned; after a failed rename f is closed already
			// Nothing else removes a .tmp- file: one left is reported.
			if rerr := os.Remove(tmp); rerr != nil {
				err = errors.Join(err, fmt.Errorf("remove %s: %w", tmp, rerr))
			}
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	return nil
}

// WriteJSON marshals v (indented) and writes it with Write.
func WriteJSON(path string, v any, perm os.FileMode) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return Write(path, append(data, '\n'), perm)
}
