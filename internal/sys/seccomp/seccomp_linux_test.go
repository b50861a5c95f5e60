package seccomp

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/beamhop/lightbox/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if os.Getenv("SECCOMP_TEST_HELPER") == "1" {
		os.Exit(helper())
	}
	os.Exit(m.Run())
}

// helper loads the profile on a locked thread and reports what a few
// syscalls return there.
func helper() int {
	runtime.LockOSThread()
	raw := func(nr uintptr, args ...uintptr) error {
		a := append(args, 0, 0, 0)
		_, _, e := unix.Syscall(nr, a[0], a[1], a[2])
		if e != 0 {
			return e
		}
		return nil
	}
	before := raw(unix.SYS_KEYCTL)
	syslogBefore := raw(unix.SYS_SYSLOG, 10) // SYSLOG_ACTION_SIZE_BUFFER: reads a size
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println("no_new_privs:", err)
		return 1
	}
	opts := Options{AllowUserNamespaces: os.Getenv("SECCOMP_TEST_USERNS") == "1"}
	if err := Load(opts); err != nil {
		fmt.Println(err)
		return 1
	}
	res := []string{"before=" + errText(before), "syslog-before=" + errText(syslogBefore)}
	add := func(name string, err error) { res = append(res, name+"="+errText(err)) }
	add("keyctl", raw(unix.SYS_KEYCTL))
	add("bpf", raw(unix.SYS_BPF))
	add("uring", raw(unix.SYS_IO_URING_SETUP))
	add("syslog", raw(unix.SYS_SYSLOG, 10))
	// Only ever under the filter: outside it, the kernel might load the
	// vsock module.
	add("vsock", raw(unix.SYS_SOCKET, unix.AF_VSOCK, unix.SOCK_STREAM))
	// A multithreaded process gets EINVAL from the kernel itself.
	add("unshare-user", raw(unix.SYS_UNSHARE, unix.CLONE_NEWUSER))
	// No arguments at all: EFAULT or EINVAL from the kernel.
	add("clone3", raw(unix.SYS_CLONE3))
	// clone(CLONE_NEWUSER) through Go's fork, which uses clone(2).
	_, err := syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{Sys: &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER}})
	add("clone-user", err)
	// And a plain fork still works.
	pid, err := syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{})
	if err == nil {
		var ws syscall.WaitStatus
		_, err = syscall.Wait4(pid, &ws, 0, nil)
	}
	add("fork", err)
	add("getpid", raw(unix.SYS_GETPID))
	fmt.Println(strings.Join(res, " "))
	return 0
}

func errText(err error) string {
	var e unix.Errno
	if errors.As(err, &e) && e != 0 {
		return unix.ErrnoName(e)
	}
	return "ok"
}

func runHelper(t *testing.T, userns bool) map[string]string {
	t.Helper()
	_, err := Program(Options{})
	testutil.Need(t, err == nil, fmt.Sprintf("needs a seccomp profile for this architecture: %v", err))
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "SECCOMP_TEST_HELPER=1")
	if userns {
		cmd.Env = append(cmd.Env, "SECCOMP_TEST_USERNS=1")
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v: %s", err, out)
	}
	t.Logf("userns=%v: %s", userns, out)
	got := map[string]string{}
	for _, f := range strings.Fields(string(out)) {
		k, v, _ := strings.Cut(f, "=")
		got[k] = v
	}
	if got["before"] == "EPERM" {
		t.Fatalf("keyctl fails with EPERM without the profile; cannot tell: %s", out)
	}
	return got
}

func TestProfile(t *testing.T) {
	got := runHelper(t, false)
	if got["syslog-before"] != "ok" {
		// dmesg_restrict and no CAP_SYSLOG: the kernel says EPERM too.
		t.Logf("syslog is refused without the profile (%s): not telling", got["syslog-before"])
		delete(got, "syslog")
	}
	for k, want := range map[string]string{
		"keyctl": "EPERM", "bpf": "EPERM", "uring": "EPERM", "syslog": "EPERM", "vsock": "EPERM",
		"unshare-user": "EPERM", "clone-user": "EPERM", "clone3": "ENOSYS",
		"fork": "ok", "getpid": "ok",
	} {
		if v, ok := got[k]; ok && v != want || !ok && k != "syslog" {
			t.Errorf("%s under the default profile = %s, want %s", k, got[k], want)
		}
	}
}

func TestProfileAllowUserNamespaces(t *testing.T) {
	got := runHelper(t, true)
	for k, want := range map[string]string{
		"keyctl": "EPERM", "vsock": "EPERM",
		// The kernel's own answer for a threaded process.
		"unshare-user": "EINVAL",
		"clone-user":   "ok", "fork": "ok",
	} {
		if got[k] != want {
			t.Errorf("%s with user namespaces allowed = %s, want %s", k, got[k], want)
		}
	}
	if got["clone3"] == "ENOSYS" {
		t.Errorf("clone3 with user namespaces allowed = ENOSYS, want the kernel's answer")
	}
}

func TestProgramShape(t *testing.T) {
	for _, opts := range []Options{{}, {AllowUserNamespaces: true}} {
		p, err := Program(opts)
		testutil.Need(t, err == nil, fmt.Sprintf("needs a seccomp profile for this architecture: %v", err))
		if len(p) > 255 {
			t.Fatalf("program of %d instructions: jump offsets are 8 bits", len(p))
		}
		if last := p[len(p)-1]; last.Code != unix.BPF_RET|unix.BPF_K {
			t.Errorf("%+v: last instruction %+v, want a return", opts, last)
		}
		// Every conditional jump lands inside the program.
		for i, ins := range p {
			if ins.Code&0x07 == unix.BPF_JMP && ins.Code != unix.BPF_JMP|unix.BPF_JA {
				if i+1+int(ins.Jt) >= len(p) || i+1+int(ins.Jf) >= len(p) {
					t.Errorf("%+v: instruction %d %+v jumps out of the program", opts, i, ins)
				}
			}
		}
	}
}
