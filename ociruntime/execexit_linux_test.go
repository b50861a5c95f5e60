package ociruntime_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestExecStatusAtContainerEnd: an exec'd process that exits in the
// moment the container's process ends reports its own status, as under
// runc (whose exec waits for the process itself), not 137. The
// container's process reads a FIFO until the exec'd one, which holds it
// open for writing, exits 7: both end together, every time. (The init
// exited with the container's status before it passed the exec's on: its
// client saw the connection close and said 137, in 11 runs of 40 here.)
func TestExecStatusAtContainerEnd(t *testing.T) {
	root := stateRoot(t)
	b := bundle(t, nil, "sh", "-c", "cat /f >/dev/null; exit 3")
	if err := unix.Mkfifo(filepath.Join(b, "rootfs", "f"), 0o666); err != nil {
		t.Fatal(err)
	}
	const runs = 60
	var wrong []string
	for i := range runs {
		id := fmt.Sprintf("x%d", i)
		mustRunc(t, root, "create", "--bundle", b, id)
		mustRunc(t, root, "start", id)
		r := runc(t, root, "exec", id, "sh", "-c", "exec 3>/f; exit 7")
		if r.code != 7 {
			wrong = append(wrong, fmt.Sprintf("%s: %d %q", id, r.code, r.err))
		}
		waitStatus(t, root, id, "stopped")
		mustRunc(t, root, "delete", id)
	}
	if len(wrong) > 0 {
		t.Errorf("exec sh -c 'exec 3>/f; exit 7' ending the container: %d runs of %d did not exit 7: %v", len(wrong), runs, wrong)
	}
}
