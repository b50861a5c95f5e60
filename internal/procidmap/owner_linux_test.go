package procidmap

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// Owner is the effective uid that made a user namespace: uid 0 for the
// host's (the kernel's own), and ours for one a child of ours was cloned
// into.
func TestOwner(t *testing.T) {
	if got, err := Owner(os.Getpid()); err != nil || got != 0 {
		t.Errorf("Owner of our own (the host's) user namespace = %d, %v; want 0", got, err)
	}
	cmd := exec.Command("/bin/sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
	if err := cmd.Start(); err != nil {
		t.Fatalf("a child in a new user namespace: %v", err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	if got, err := Owner(cmd.Process.Pid); err != nil || got != os.Geteuid() {
		t.Errorf("Owner of our child's new user namespace = %d, %v; want our uid %d", got, err, os.Geteuid())
	}
}
