package seccomp

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
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
	keyctl := func() error {
		_, _, e := unix.Syscall(unix.SYS_KEYCTL, 0, 0, 0)
		if e != 0 {
			return e
		}
		return nil
	}
	before := keyctl()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println("no_new_privs:", err)
		return 1
	}
	if err := Load(); err != nil {
		fmt.Println(err)
		return 1
	}
	after := keyctl()
	_, _, bpf := unix.Syscall(unix.SYS_BPF, 0, 0, 0)
	_, _, uring := unix.Syscall(unix.SYS_IO_URING_SETUP, 0, 0, 0)
	pid := unix.Getpid()
	fmt.Printf("before=%v after=%v bpf=%v uring=%v getpid-ok=%v\n", errText(before), errText(after), errText(bpf), errText(uring), pid > 0)
	return 0
}

func errText(err error) string {
	var e unix.Errno
	if errors.As(err, &e) && e != 0 {
		return unix.ErrnoName(e)
	}
	return "ok"
}

func TestProfile(t *testing.T) {
	_, err := Program()
	testutil.Need(t, err == nil, fmt.Sprintf("needs a seccomp profile for this architecture: %v", err))
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "SECCOMP_TEST_HELPER=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v: %s", err, out)
	}
	got := strings.TrimSpace(string(out))
	t.Log(got)
	if strings.HasPrefix(got, "before=EPERM") {
		t.Fatalf("keyctl fails with EPERM without the profile; cannot tell: %s", got)
	}
	if want := "after=EPERM bpf=EPERM uring=EPERM getpid-ok=true"; !strings.HasSuffix(got, want) {
		t.Errorf("with the profile: %s, want ...%s", got, want)
	}
}

func TestProgramShape(t *testing.T) {
	p, err := Program()
	testutil.Need(t, err == nil, fmt.Sprintf("needs a seccomp profile for this architecture: %v", err))
	if len(p) > 255 {
		t.Fatalf("program of %d instructions: jump offsets are 8 bits", len(p))
	}
	last := p[len(p)-1]
	if last.Code != unix.BPF_RET|unix.BPF_K || last.K != retDeny {
		t.Errorf("last instruction %+v, want ret EPERM", last)
	}
	// Every conditional jump lands inside the program.
	for i, ins := range p {
		if ins.Code&0x07 == unix.BPF_JMP && ins.Code != unix.BPF_JMP|unix.BPF_JA {
			if i+1+int(ins.Jt) >= len(p) || i+1+int(ins.Jf) >= len(p) {
				t.Errorf("instruction %d %+v jumps out of the program", i, ins)
			}
		}
	}
}
