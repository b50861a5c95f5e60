package sys

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenInRootDotDotWhileRenaming resolves a path through a symlink
// with ".." in it, inside a root, while renames run elsewhere on the
// system: the kernel fails such a walk with EAGAIN whenever a rename or
// mount raced it, and a launch must not fail for what another process
// did meanwhile.
func TestOpenInRootDotDotWhileRenaming(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../..", filepath.Join(root, "a", "b", "up")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	churn := t.TempDir()
	x, y := filepath.Join(churn, "x"), filepath.Join(churn, "y")
	if err := os.WriteFile(x, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = os.Rename(x, y) // only the renames' effect on the walks matters
			_ = os.Rename(y, x) // as above
		}
	}()
	defer func() { close(stop); <-done }()
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Close(rfd) }() // an O_PATH descriptor: nothing to flush
	for i := 0; i < 20000; i++ {
		fd, err := OpenInRoot(rfd, "/a/b/up/tmp", unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatalf("walk %d: %v", i, err)
		}
		_ = unix.Close(fd) // an O_PATH descriptor: nothing to flush
	}
}
