package netstack

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/beamhop/lightbox/internal/reexec/child"
	"github.com/beamhop/lightbox/internal/testutil"
)

// raiseNofile raises the limit of slirp4netns, which runs as the root of
// a sandbox's user namespace, itself owned by the store's range root,
// even from a root without CAP_SYS_RESOURCE (a container manager's root
// often lacks it; this thread drops it from its effective set for the
// test): as the namespace's owner. Before, it failed with EPERM and
// every `run -d -p` warned that the sandbox's connections were limited.
func TestRaiseNofileWithoutSysResource(t *testing.T) {
	testutil.RootOnly(t)
	const owner = 0x6fff0000
	target := exec.Command("/bin/sleep", "60")
	target.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: owner, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: owner, Size: 1}},
		Credential:  &syscall.Credential{Uid: 0, Gid: 0},
	}
	if err := child.AsOwner(owner, target.Start); err != nil {
		t.Fatal(err)
	}
	defer func() {
		target.Process.Kill()
		target.Wait()
	}()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var caps, less [2]unix.CapUserData
	if err := unix.Capget(&hdr, &caps[0]); err != nil {
		t.Fatal(err)
	}
	less = caps
	less[0].Effective &^= 1 << unix.CAP_SYS_RESOURCE
	if err := unix.Capset(&hdr, &less[0]); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Capset(&hdr, &caps[0]); err != nil {
			t.Fatal(err)
		}
	}()
	if err := raiseNofile(target.Process.Pid, target.Process.Pid); err != nil {
		t.Fatalf("raiseNofile of a process in a namespace owned by %d, without CAP_SYS_RESOURCE: %v", owner, err)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(target.Process.Pid) + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if f, ok := strings.CutPrefix(line, "Max open files"); ok {
			if got := strings.Fields(f); len(got) < 2 || got[0] != strconv.FormatUint(lim.Max, 10) {
				t.Errorf("the process's %s want its soft limit %d", strings.TrimSpace(line), lim.Max)
			}
		}
	}
}

// A port slirp4netns could not publish (its API says only
// "slirp_add_hostfwd failed") because another process took the host port
// after the launch checked it (two launches racing for one port) is
// reported as a port in use; another failure keeps the helper's words.
func TestForwardFailedNamesPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	helper := errors.New("bad request: add_hostfwd: slirp_add_hostfwd failed")
	err = forwardFailed(Port{HostPort: taken, Port: 80}, helper)
	if want := fmt.Sprintf("127.0.0.1:%d is already in use", taken); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("forwardFailed of a port in use = %v, want it to say %q", err, want)
	}
	l.Close()
	err = forwardFailed(Port{HostPort: taken, Port: 80}, helper)
	if err == nil || !errors.Is(err, helper) || !strings.Contains(err.Error(), fmt.Sprintf("publish port %d:80", taken)) {
		t.Errorf("forwardFailed of a free port = %v, want the port and the helper's error", err)
	}
}
