//go:build linux

package integration

// The attack suite: each test tries a way out of a sandbox, as root and
// rootless, asserts that it fails, and checks that the host is unchanged
// (a sysctl is probed by writing back the value it holds, so even a
// failing test leaves the host as it was). Walls tested elsewhere, not
// repeated here:
//
//   - a mount target through a symlink in the image, absolute or made of
//     "..": runtime TestMounts (and the CLI's workdirs through symlinks,
//     below);
//   - /proc/1/exe and /proc/self/exe not writable, PID 1 not dumpable
//     (environ, fds, cwd, root out of reach), podman's capabilities,
//     no_new_privs and seccomp mode in /proc/self/status: runtime
//     TestIsolation;
//   - :ro recursive over submounts: runtime TestReadOnlyRecursive;
//   - invalid sandbox and volume names through the API: TestLaunchFaults;
//     through `volume create`: TestCLIVolumes; snapshot names:
//     TestCLISnapshots;
//   - hostile tar entries: snapshot TestHostile*.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/beamhop/lightbox"
	"github.com/beamhop/lightbox/internal/testutil"
	"golang.org/x/sys/unix"
)

// attackHelperEnv selects attackHelper in TestMain: the test binary (a
// static one, as make test builds it) bind-mounted into a sandbox runs
// the syscalls a shell cannot.
const attackHelperEnv = "LIGHTBOX_ATTACK_HELPER"

// attackHelper runs each operation in os.Args[1:] and prints
// "op=RESULT", RESULT being "ok" or the errno's name.
func attackHelper() int {
	for _, op := range os.Args[1:] {
		var err error
		switch op {
		case "clone3":
			// No arguments: the kernel would answer EFAULT or EINVAL.
			_, _, e := unix.Syscall(unix.SYS_CLONE3, 0, 0, 0)
			err = errnoErr(e)
		case "clone-newuser":
			var pid int
			pid, err = syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{Sys: &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER}})
			if err == nil {
				var ws syscall.WaitStatus
				_, err = syscall.Wait4(pid, &ws, 0, nil)
			}
		case "unshare-newuser":
			// Go's runtime is threaded: the kernel itself says EINVAL,
			// the profile EPERM first.
			err = unix.Unshare(unix.CLONE_NEWUSER)
		case "ptrace-init":
			err = unix.PtraceAttach(1)
			if err == nil {
				// Never leave the init stopped, even when the test fails.
				_ = unix.PtraceDetach(1) // best effort; the test fails anyway
			}
		case "vm-readv-init":
			var buf [8]byte
			local := []unix.Iovec{{Base: &buf[0], Len: uint64(len(buf))}}
			// Any address: the access check comes first.
			remote := []unix.RemoteIovec{{Base: uintptr(unsafe.Pointer(&buf[0])), Len: len(buf)}}
			_, err = unix.ProcessVMReadv(1, local, remote, 0)
		default:
			if kind, name, ok := strings.Cut(op, ":"); ok && (kind == "abstract-stream" || kind == "abstract-dgram") {
				err = abstractConnect(kind, name)
				break
			}
			err = fmt.Errorf("unknown op %q", op)
		}
		fmt.Printf("%s=%s\n", op, errName(err))
	}
	return 0
}

// abstractConnect connects to (kind "abstract-stream") or sends a
// datagram to ("abstract-dgram") the abstract unix socket @name.
func abstractConnect(kind, name string) error {
	typ := unix.SOCK_STREAM
	if kind == "abstract-dgram" {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrUnix{Name: "@" + name}
	if typ == unix.SOCK_DGRAM {
		return unix.Sendto(fd, []byte("from the sandbox"), 0, sa)
	}
	if err := unix.Connect(fd, sa); err != nil {
		return err
	}
	_, err = unix.Write(fd, []byte("from the sandbox"))
	return err
}

func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func errName(err error) string {
	var e unix.Errno
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &e):
		return unix.ErrnoName(e)
	}
	return strings.ReplaceAll(err.Error(), " ", "_")
}

// helperMount bind-mounts this test binary into a sandbox at /attack.
func helperMount(t *testing.T) (string, lightbox.Mount) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	static := !slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
	testutil.Need(t, static, "needs a static test binary to run inside busybox (CGO_ENABLED=0, as make test builds it)")
	return "/attack", lightbox.Mount{Source: exe, ReadOnly: true}
}

// helperRun runs the helper in sb and returns op → result.
func helperRun(t *testing.T, sb *lightbox.Sandbox, ops ...string) map[string]string {
	t.Helper()
	c := sb.Command(t.Context(), "/attack", ops...)
	c.Env = []string{attackHelperEnv + "=1"}
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		t.Fatalf("attack helper %v: %v\n%s%s", ops, err, out.String(), errb.String())
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		k, v, _ := strings.Cut(l, "=")
		got[k] = v
	}
	return got
}

// launch starts a sandbox of the busybox snapshot and destroys it at
// the end of the test.
func launch(t *testing.T, r *lightbox.Runtime, opts lightbox.SandboxOptions) *lightbox.Sandbox {
	t.Helper()
	if opts.Snapshot == "" {
		opts.Snapshot = "busybox"
	}
	if opts.Network == "" {
		opts.Network = lightbox.NetworkNone
	}
	sb, err := r.LaunchSandbox(t.Context(), opts)
	if err != nil {
		t.Fatalf("launch: %v", err)
	}
	t.Cleanup(func() {
		// t.Context is done by now.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := sb.Destroy(ctx); err != nil {
			t.Errorf("destroy %s: %v", sb.Name(), err)
		}
	})
	return sb
}

// shell runs script in sb and returns its stdout and stderr, whatever its
// exit status.
func shell(t *testing.T, sb *lightbox.Sandbox, script string) (string, string) {
	t.Helper()
	res, err := sb.Shell(t.Context(), script)
	var ee *lightbox.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("shell %q: %v", script, err)
	}
	return string(res.Stdout), string(res.Stderr)
}

// hostSysctls are sysctls a sandbox must not write; the kernel checks
// little more than the file's owner for most of them. core_pattern
// names a program the kernel runs as host root on a crash.
var hostSysctls = []string{
	"kernel/core_pattern", "kernel/core_uses_pid", "kernel/panic", "kernel/panic_on_oops",
	"kernel/modprobe", "kernel/sysrq", "vm/overcommit_memory", "vm/swappiness",
	"net/ipv4/ip_forward", "net/core/somaxconn",
}

// readSysctls reads the hostSysctls this kernel has.
func readSysctls(t *testing.T) map[string]string {
	t.Helper()
	vals := map[string]string{}
	for _, s := range hostSysctls {
		b, err := os.ReadFile("/proc/sys/" + s)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		vals[s] = string(b)
	}
	if _, ok := vals["kernel/core_pattern"]; !ok {
		t.Fatal("no /proc/sys/kernel/core_pattern on the host")
	}
	return vals
}

// sysctlProbe writes every sysctl back with the value it holds and
// prints WROTE for each write that was let through.
func sysctlProbe(vals map[string]string) string {
	var b strings.Builder
	for s := range vals {
		fmt.Fprintf(&b, "f=/proc/sys/%s; v=$(cat $f) && printf '%%s\\n' \"$v\" > $f && echo WROTE $f\n", s)
	}
	return b.String()
}

// TestAttackHostSysctls: issue 12's first break. With the identity
// mapping, sandbox root owned /proc/sys and could set core_pattern to
// a program of its upper dir, which the host kernel then ran as root.
func TestAttackHostSysctls(t *testing.T) {
	_, r := newStore(t)
	before := readSysctls(t)
	probe := sysctlProbe(before)
	for _, net := range []lightbox.Network{lightbox.NetworkNone, lightbox.NetworkHost, lightbox.NetworkPrivate} {
		t.Run(string(net), func(t *testing.T) {
			sb := launch(t, r, lightbox.SandboxOptions{Network: net})
			out, errs := shell(t, sb, probe)
			if strings.Contains(out, "WROTE") {
				t.Errorf("sysctls written from inside:\n%s", out)
			}
			if n := strings.Count(errs, "Read-only file system"); n != len(before) {
				t.Errorf("%d of %d writes refused as read-only:\n%s", n, len(before), errs)
			}
			// Through /proc/sysrq-trigger too, where the kernel has one.
			out, _ = shell(t, sb, "test -e /proc/sysrq-trigger || echo absent; (echo h > /proc/sysrq-trigger) 2>/dev/null && echo WROTE")
			if strings.Contains(out, "WROTE") {
				t.Errorf("/proc/sysrq-trigger is writable")
			}
			if _, err := os.Stat("/proc/sysrq-trigger"); err == nil && strings.Contains(out, "absent") {
				t.Errorf("/proc/sysrq-trigger is missing inside but the host has one")
			}
		})
	}
	t.Run("nested user namespace", func(t *testing.T) {
		sb := launch(t, r, lightbox.SandboxOptions{AllowUserNamespaces: true})
		script := "unshare -r -m sh -c " + shQuote("id -u; "+probe+"mount -o remount,rw /proc/sys && echo REMOUNTED; umount /proc/sys && echo UNMOUNTED; "+probe)
		out, errs := shell(t, sb, script)
		if !strings.HasPrefix(out, "0\n") {
			t.Fatalf("unshare -r: not root in a new user namespace: %q %q", out, errs)
		}
		for _, bad := range []string{"WROTE", "REMOUNTED", "UNMOUNTED"} {
			if strings.Contains(out, bad) {
				t.Errorf("from a nested user namespace: %s\n%s", bad, out)
			}
		}
	})
	if after := readSysctls(t); !mapsEqual(before, after) {
		t.Errorf("host sysctls changed:\nbefore %q\nafter  %q", before, after)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// maskedPaths are runc's and podman's masked paths.
var maskedPaths = []string{
	"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/latency_stats", "/proc/sched_debug",
	"/proc/scsi", "/proc/acpi", "/sys/firmware", "/sys/devices/virtual/powercap",
}

// TestAttackMaskedPaths: the kernel's memory, other users' keys and the
// machine's timers, IRQs and firmware read as nothing, in every network
// mode (a fresh sysfs, or the host's bound read-only).
func TestAttackMaskedPaths(t *testing.T) {
	_, r := newStore(t)
	var script strings.Builder
	for _, p := range maskedPaths {
		// A masked file reads as /dev/null; a masked directory is empty
		// and read-only; either way a mount sits on it.
		fmt.Fprintf(&script, `p=%s
if [ ! -e $p ]; then echo "$p absent"
elif [ -d $p ]; then echo "$p dir $(ls -A $p | wc -l) $(touch $p/x 2>/dev/null && echo writable)"
else echo "$p file $(wc -c < $p) $(grep -c " $p " /proc/self/mountinfo)"; fi
`, p)
	}
	for _, net := range []lightbox.Network{lightbox.NetworkNone, lightbox.NetworkHost} {
		t.Run(string(net), func(t *testing.T) {
			sb := launch(t, r, lightbox.SandboxOptions{Network: net})
			out, errs := shell(t, sb, script.String())
			mounts, _ := shell(t, sb, "cat /proc/self/mountinfo")
			masked := 0
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				f := strings.Fields(l)
				if len(f) < 2 {
					t.Fatalf("probe output %q (stderr %q)", out, errs)
				}
				p := f[0]
				switch {
				case f[1] == "absent":
					// Only where this kernel has none either.
					if _, err := os.Stat(p); err == nil {
						t.Errorf("%s: missing inside, present on the host", p)
					}
				case f[1] == "dir" && (len(f) != 3 || f[2] != "0"):
					t.Errorf("%s: a directory with entries, or writable: %q", p, l)
				case f[1] == "file" && (len(f) != 4 || f[2] != "0" || f[3] != "1"):
					t.Errorf("%s: not /dev/null (size, mounts): %q", p, l)
				default:
					masked++
				}
				if f[1] == "dir" && !strings.Contains(mounts, " "+p+" ") {
					t.Errorf("%s: no mount on it", p)
				}
			}
			// /sys/firmware exists wherever there is a sysfs.
			if masked == 0 {
				t.Errorf("nothing was masked:\n%s", out)
			}
			t.Logf("%d of %d masked paths exist here and are masked", masked, len(maskedPaths))
		})
	}
}

// TestAttackUserNamespaces: issue 12's fifth break. A new user namespace
// hands the workload every capability over new mount, network and other
// namespaces: refused unless asked for; asked for, /proc stays read-only
// and masked inside it and a fresh proc cannot be mounted.
func TestAttackUserNamespaces(t *testing.T) {
	_, r := newStore(t)
	target, m := helperMount(t)
	mounts := map[string]lightbox.Mount{target: m}

	t.Run("default", func(t *testing.T) {
		sb := launch(t, r, lightbox.SandboxOptions{Mounts: mounts})
		out, errs := shell(t, sb, "unshare -U true && echo UNSHARED; unshare -r -m true && echo UNSHARED; mkdir -p /tmp/p; mount -t proc proc /tmp/p && echo MOUNTED")
		if out != "" {
			t.Errorf("without the opt-in: %s", out)
		}
		if !strings.Contains(errs, "Operation not permitted") {
			t.Errorf("unshare: %q, want EPERM", errs)
		}
		got := helperRun(t, sb, "clone3", "clone-newuser", "unshare-newuser")
		for op, want := range map[string]string{"clone3": "ENOSYS", "clone-newuser": "EPERM", "unshare-newuser": "EPERM"} {
			if got[op] != want {
				t.Errorf("%s = %s, want %s", op, got[op], want)
			}
		}
	})

	t.Run("allowed", func(t *testing.T) {
		sb := launch(t, r, lightbox.SandboxOptions{Mounts: mounts, AllowUserNamespaces: true})
		got := helperRun(t, sb, "clone3", "clone-newuser", "unshare-newuser")
		for op, want := range map[string]string{"clone-newuser": "ok", "unshare-newuser": "EINVAL"} {
			if got[op] != want {
				t.Errorf("with the opt-in, %s = %s, want %s", op, got[op], want)
			}
		}
		if got["clone3"] == "ENOSYS" {
			t.Errorf("with the opt-in, clone3 = ENOSYS, want the kernel's answer")
		}
		// Root of a new user, mount and pid namespace: it may mount a
		// tmpfs (so it holds CAP_SYS_ADMIN there) but not a fresh proc
		// or sysfs, not a non-recursive bind of /proc that would leave
		// the masks behind, and it can neither lift a mask nor make
		// /proc/sys writable.
		inner := `mkdir -p /tmp/p /tmp/q
mount -t tmpfs t /tmp/q && echo tmpfs-ok
mount -t proc proc /tmp/p && echo MOUNTED-proc
mount -t sysfs sysfs /tmp/p && echo MOUNTED-sysfs
mount --bind /proc /tmp/p && echo BOUND-proc
for p in /proc/sys /proc/acpi /proc/keys /proc/timer_list /sys/firmware; do
	grep -q " $p " /proc/self/mountinfo || continue
	umount $p && echo UNMASKED $p
	umount -l $p && echo UNMASKED $p
done
mount -o remount,rw /proc/sys && echo REMOUNTED
cat /proc/sys/kernel/core_pattern > /proc/sys/kernel/core_pattern && echo WROTE
exit 0`
		out, errs := shell(t, sb, "unshare -r -m -p -n -f sh -c "+shQuote(inner))
		if !strings.Contains(out, "tmpfs-ok") {
			t.Fatalf("no CAP_SYS_ADMIN in the nested namespaces, the attack proves nothing: %q %q", out, errs)
		}
		if rest := strings.TrimSpace(strings.Replace(out, "tmpfs-ok", "", 1)); rest != "" {
			t.Errorf("from a nested user namespace:\n%s\nstderr:\n%s", rest, errs)
		}
	})
}

// TestAttackReadOnlyBind: a :ro bind cannot be made writable from inside,
// neither by a remount nor from a user namespace of the workload's own.
func TestAttackReadOnlyBind(t *testing.T) {
	_, r := newStore(t)
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, []byte("host"), 0o666); err != nil {
		t.Fatal(err)
	}
	before := statOf(t, f)
	sb := launch(t, r, lightbox.SandboxOptions{AllowUserNamespaces: true, Mounts: map[string]lightbox.Mount{"/ro": {Source: dir, ReadOnly: true}}})
	attempt := "mount -o remount,rw /ro && echo REMOUNTED; mount -o remount,rw,bind /ro && echo REMOUNTED; umount /ro && echo UNMOUNTED; echo x > /ro/f && echo WROTE; touch /ro/new && echo CREATED; exit 0"
	out, _ := shell(t, sb, attempt)
	out2, _ := shell(t, sb, "unshare -r -m sh -c "+shQuote(attempt))
	if all := out + out2; all != "" {
		t.Errorf("a :ro bind was written to: %s", all)
	}
	if after := statOf(t, f); after != before {
		t.Errorf("host file changed: %s, was %s", after, before)
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file appeared in the host dir: %v", err)
	}
}

// statOf renders a file's content, size and mtime.
func statOf(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%q %d %v", b, st.Size(), st.ModTime())
}

// TestAttackInit: the init (PID 1) cannot be traced, read or rewritten.
func TestAttackInit(t *testing.T) {
	root, r := newStore(t)
	target, m := helperMount(t)
	sumBefore := sha256File(t, binPath)
	sb := launch(t, r, lightbox.SandboxOptions{Mounts: map[string]lightbox.Mount{target: m}})
	got := helperRun(t, sb, "ptrace-init", "vm-readv-init")
	for _, op := range []string{"ptrace-init", "vm-readv-init"} {
		if got[op] != "EPERM" {
			t.Errorf("%s = %s, want EPERM", op, got[op])
		}
	}
	// Write the binary behind PID 1 every way a shell can, from a
	// sandbox the CLI started (its init is the lightbox binary).
	name := "exe-attack"
	lbOK(t, root, "run", "-d", "--name", name, "--network", "none", "busybox", "sleep", "1000")
	defer lb(t, root, "", "rm", "-f", name)
	res := lb(t, root, "", "exec", name, "sh", "-c",
		"echo x >> /proc/1/exe && echo WROTE; (exec 3<>/proc/1/exe) && echo OPENED; cp /bin/busybox /proc/1/exe && echo COPIED; "+
			"cat /proc/1/maps >/dev/null && echo MAPS; exit 0")
	if res.stdout != "" {
		t.Errorf("the init's binary or memory reached from inside: %s", res.stdout)
	}
	if got := lb(t, root, "", "exec", name, "echo", "alive"); got.stdout != "alive\n" {
		t.Errorf("sandbox after the attacks on its init: %+v", got)
	}
	if sumAfter := sha256File(t, binPath); sumAfter != sumBefore {
		t.Errorf("%s changed on the host", binPath)
	}
}

// TestAttackInheritedFDs: a descriptor the CLI inherited without
// close-on-exec (a host directory, as a shell's `exec 7</` leaves one, at
// a number above those the CLI hands its children) reaches no process the
// CLI starts: not the sandbox's PID 1, which would hold it for the
// sandbox's whole life, nor the network helper, nor a command. Seen from
// the host, only this test holds it afterwards.
func TestAttackInheritedFDs(t *testing.T) {
	root, _ := newStore(t)
	dir := t.TempDir()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	name := "fd-attack"
	cmd := exec.Command(binPath, "--root", root, "run", "-d", "--name", name, "busybox", "sleep", "1000")
	cmd.ExtraFiles = make([]*os.File, 198)
	cmd.ExtraFiles[197] = f // the CLI's fd 200, without close-on-exec
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("lightbox run -d: %v\n%s", err, out)
	}
	defer lb(t, root, "", "rm", "-f", name)
	procs, err := filepath.Glob("/proc/[0-9]*/fd/*")
	if err != nil {
		t.Fatal(err)
	}
	self := fmt.Sprintf("/proc/%d/", os.Getpid())
	for _, p := range procs {
		if strings.HasPrefix(p, self) {
			continue
		}
		if got, err := os.Stat(p); err == nil && os.SameFile(got, want) {
			comm, _ := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(p)), "comm")) // for the message only
			t.Errorf("%s (%s) holds the CLI's inherited %s", p, strings.TrimSpace(string(comm)), dir)
		}
	}
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// TestAttackWorkdirs: a working directory through /proc/self/fd/N (runc's
// CVE-2024-21626: an fd the runtime leaked into the host's tree) or
// through a symlink of the image that points at a host path.
func TestAttackWorkdirs(t *testing.T) {
	root, _ := newStore(t)
	outside := filepath.Join(t.TempDir(), "outside")
	rootfs := testBusybox(t)
	for name, to := range map[string]string{"work": outside, "up": "../../../../../../..", "etc2": "/etc"} {
		if err := os.Symlink(to, filepath.Join(rootfs, name)); err != nil {
			t.Fatal(err)
		}
	}
	lbOK(t, root, "snapshot", "import", "evil", rootfs)
	hostEtc := dirNames(t, "/etc")
	vol := t.TempDir()

	for _, n := range []int{3, 4, 5, 6, 7, 8} {
		res := lb(t, root, "", "run", "--network", "none", "-w", fmt.Sprintf("/proc/self/fd/%d", n), "busybox", "pwd")
		if res.code != 125 {
			t.Errorf("run -w /proc/self/fd/%d: exit %d, stdout %q; want a launch error (125)", n, res.code, res.stdout)
		}
	}
	name := "wd-attack"
	lbOK(t, root, "run", "-d", "--name", name, "--network", "none", "busybox", "sleep", "1000")
	defer lb(t, root, "", "rm", "-f", name)
	for n := range 32 {
		res := lb(t, root, "", "exec", "-w", fmt.Sprintf("/proc/self/fd/%d", n), name, "pwd")
		if res.code != 125 || !strings.Contains(res.stderr, "workdir") {
			t.Errorf("exec -w /proc/self/fd/%d: exit %d, stdout %q, stderr %q; want a workdir error (125)", n, res.code, res.stdout, res.stderr)
		}
	}
	// Workdirs and mount targets through the image's symlinks land inside.
	for _, args := range [][]string{
		{"-w", "/work/made"},
		{"-w", "/up/tmp/made"},
		{"-w", "/etc2/made"},
		{"-v", vol + ":/work/sub"},
		{"-v", vol + ":/etc2/mnt"},
		{"-v", "attackvol:/up/etc/vol"},
	} {
		res := lb(t, root, "", append(append([]string{"run", "--network", "none"}, args...), "evil", "sh", "-c", "touch ./created; pwd")...)
		t.Logf("run %v: exit %d %q %q", args, res.code, res.stdout, strings.TrimSpace(res.stderr))
	}
	if _, err := os.Lstat(outside); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s was created on the host through the image's symlink: %v", outside, err)
	}
	if got := dirNames(t, "/etc"); !slices.Equal(got, hostEtc) {
		t.Errorf("the host's /etc changed: %v, was %v", got, hostEtc)
	}
	if _, err := os.Stat("/tmp/made"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("/tmp/made appeared on the host: %v", err)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestAttackHostileNames: sandbox and volume names that would be paths,
// options or escapes are refused by the CLI before anything touches the
// disk.
func TestAttackHostileNames(t *testing.T) {
	root, _ := newStore(t)
	parent := filepath.Dir(root)
	before := dirNames(t, parent)
	storeBefore := treeOf(t, root)
	bad := []string{"..", ".", "../x", "a/b", "/abs", "-rf", ".hidden", "x\ny", "x y", "x;id", strings.Repeat("x", 64), "ü"}
	for _, n := range bad {
		if res := lb(t, root, "", "run", "--name", n, "--network", "none", "busybox", "true"); res.code != 125 || !strings.Contains(res.stderr, "invalid") {
			t.Errorf("run --name %q: exit %d, stderr %q; want an invalid name (125)", n, res.code, res.stderr)
		}
		if n == "." || n == ".." || strings.HasPrefix(n, "/") || strings.HasPrefix(n, "../") {
			continue // a host path by the -v rule, not a volume name
		}
		if res := lb(t, root, "", "run", "--network", "none", "-v", n+":/data", "busybox", "true"); res.code != 125 || !strings.Contains(res.stderr, "invalid") {
			t.Errorf("run -v %q:/data: exit %d, stderr %q; want an invalid name (125)", n, res.code, res.stderr)
		}
	}
	if got := dirNames(t, parent); !slices.Equal(got, before) {
		t.Errorf("next to the store: %v, was %v", got, before)
	}
	if got := treeOf(t, root); got != storeBefore {
		t.Errorf("the store changed:\n%s\nwas:\n%s", got, storeBefore)
	}
}

// treeOf lists the names under dir, but the snapshot store's and the
// lock files.
func treeOf(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p) // p is below dir
		if strings.HasPrefix(rel, "snapshots") && rel != "snapshots" {
			return filepath.SkipDir
		}
		if d.Name() == ".lock" || strings.HasPrefix(d.Name(), ".init-") {
			return nil // made by the first run (the name lock, the lean init), valid name or not
		}
		b.WriteString(rel + "\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestAttackStdioDirectory: a host directory handed to a command as one
// of its streams (`lightbox run … < dir`, `exec … 1< dir`, a Cmd's Stdin)
// would be a way into the host's tree from inside: /proc/self/fd/0/..
// walks up from it, past the sandbox's root (runc's CVE-2024-21626, with
// the caller holding the door). It is refused before anything starts,
// and nothing appears beside or above it on the host.
func TestAttackStdioDirectory(t *testing.T) {
	root, r := newStore(t)
	// Both writable by anyone, so that only the refusal stops the
	// escape, whatever host id the sandbox's root is.
	up := t.TempDir()
	dir := filepath.Join(up, "door")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{up, dir} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	escape := func(fd int) string {
		return fmt.Sprintf("touch /proc/self/fd/%d/in /proc/self/fd/%d/../up; ls /proc/self/fd/%d/../..; echo RAN", fd, fd, fd)
	}
	cli := func(f *os.File, fd int, args ...string) {
		t.Helper()
		var out, errb bytes.Buffer
		cmd := exec.Command(binPath, append([]string{"--root", root}, args...)...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(""), &out, &errb
		switch fd {
		case 0:
			cmd.Stdin = f
		case 1:
			cmd.Stdout = f
		case 2:
			cmd.Stderr = f
		}
		err := cmd.Run()
		var ee *exec.ExitError
		// With the directory as its stderr the CLI has nowhere to say
		// why: the exit status alone tells.
		said := fd == 2 || strings.Contains(errb.String(), "is a directory")
		if !errors.As(err, &ee) || ee.ExitCode() != 125 || !said {
			t.Errorf("lightbox %v with a directory as fd %d: %v, stdout %q, stderr %q; want exit 125, the directory refused",
				args, fd, err, out.String(), errb.String())
		}
	}
	cli(f, 0, "run", "--network", "none", "busybox", "sh", "-c", escape(0))
	name := "stdio-attack"
	lbOK(t, root, "run", "-d", "--name", name, "--network", "none", "busybox", "sleep", "1000")
	defer lb(t, root, "", "rm", "-f", name)
	for fd := range 3 {
		cli(f, fd, "exec", name, "sh", "-c", escape(fd))
	}
	sb, err := r.AttachSandbox(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	c := sb.Command(t.Context(), "sh", "-c", escape(0))
	c.Stdin = f
	if err := c.Run(); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("Cmd with a directory as Stdin: %v, want the directory refused", err)
	}
	if got := dirNames(t, up); !slices.Equal(got, []string{"door"}) {
		t.Errorf("the host directory above the one handed over holds %v", got)
	}
	if got := dirNames(t, dir); len(got) != 0 {
		t.Errorf("the host directory handed over holds %v", got)
	}
	// Only the detached sandbox is left: the refused run left nothing.
	if got := strings.Fields(lbOK(t, root, "ps", "-aq")); !slices.Equal(got, []string{name}) {
		t.Errorf("sandboxes after the refused commands: %v, want [%s]", got, name)
	}
}

// dirSwapperSource is a workload that swaps DIR/d, a directory holding a
// small file, with DIR/l, a symlink to TARGET (a host path, meaningless
// inside the sandbox), with renameat2(RENAME_EXCHANGE) in a loop, and
// counts its rounds in COUNT.
const dirSwapperSource = `package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

func main() {
	dir, target, count := os.Args[1], os.Args[2], os.Args[3]
	if err := os.MkdirAll(dir+"/d", 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.WriteFile(dir+"/d/small", []byte("x"), 0o644)
	if err := os.Symlink(target, dir+"/l"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pd, _ := syscall.BytePtrFromString(dir + "/d")
	pl, _ := syscall.BytePtrFromString(dir + "/l")
	for i := 1; ; i++ {
		_, _, e := syscall.Syscall6(sysRenameat2, ^uintptr(99), uintptr(unsafe.Pointer(pd)), ^uintptr(99), uintptr(unsafe.Pointer(pl)), 2, 0) // AT_FDCWD, RENAME_EXCHANGE
		if e != 0 {
			fmt.Fprintln(os.Stderr, "renameat2:", e)
			os.Exit(1)
		}
		if i%2000 == 0 {
			os.WriteFile(count+".new", []byte(strconv.Itoa(i)), 0o644)
			os.Rename(count+".new", count)
		}
	}
}
`

// TestAttackVolumeSizeExchange: `volume inspect --size` walks a volume
// on the host (as the store's owner: root for a root store) while a
// sandbox that uses it swaps a directory with a symlink to a host
// directory. The walk must stay in the volume: the size it reports never
// counts the host directory's files.
func TestAttackVolumeSizeExchange(t *testing.T) {
	root, r := newStore(t)
	bin := buildSwapper(t, dirSwapperSource)
	outside := t.TempDir()
	const fileSize = 4 << 20
	for i := range 4 {
		b := make([]byte, fileSize)
		rand.Read(b)
		if err := os.WriteFile(filepath.Join(outside, fmt.Sprintf("big%d", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	before := dirNames(t, outside)
	sb := launch(t, r, lightbox.SandboxOptions{Mounts: map[string]lightbox.Mount{
		"/v": {Volume: "racevol"},
		"/x": {Source: bin, ReadOnly: true},
	}})
	c := sb.Command(t.Context(), "/x/exchanger", "/v/race", outside, "/count")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	n := waitCountAbove(t, sb, 0, "volume size")
	const tries = 200
	for i := range tries {
		res := lb(t, root, "", "volume", "inspect", "--size", "racevol")
		var v struct{ UsedBytes int64 }
		if res.code != 0 || json.Unmarshal([]byte(res.stdout), &v) != nil {
			t.Fatalf("volume inspect --size: exit %d, %q %q", res.code, res.stdout, res.stderr)
		}
		if v.UsedBytes >= fileSize {
			t.Fatalf("inspection %d of %d: the volume's size is %d bytes: the walk followed the sandbox's symlink to %s", i+1, tries, v.UsedBytes, outside)
		}
	}
	// The swaps went on all along.
	waitCountAbove(t, sb, n, "volume size, after the inspections")
	if got := dirNames(t, outside); !slices.Equal(got, before) {
		t.Errorf("the host directory holds %v, held %v", got, before)
	}
}

// hostDevices are the host's device nodes bound into every sandbox.
var hostDevices = []string{"null", "zero", "full", "random", "urandom", "tty"}

// TestAttackHostDevices: the device nodes in a sandbox's /dev are the
// host's own inodes, bound in. Reading and writing them works; changing
// them does not: no chmod, chown or utimes reaches the host's /dev. In an
// identity store (the host's root is the sandbox's) each of these used to
// succeed, and `chmod 600 /dev/null` inside broke the host for every
// other user.
func TestAttackHostDevices(t *testing.T) {
	// Y2K: a time nothing else gives the host's /dev/null.
	const planted = 946684800
	var script strings.Builder
	for _, d := range hostDevices {
		p := "/dev/" + d
		// Modes and owners the host has already (nothing breaks if
		// they are let through), and a planted time.
		fmt.Fprintf(&script, "chmod 666 %s && echo CHMOD %s; chown 0:0 %s && echo CHOWN %s; touch -d @%d %s && echo TOUCHED %s; touch %s && echo TOUCHED-NOW %s\n", p, p, p, p, planted, p, p, p, p)
	}
	script.WriteString("echo x > /dev/null && head -c 4 /dev/zero | wc -c && head -c 4 /dev/urandom | wc -c\n")
	stores := attackStores(t)
	for kind, root := range stores {
		t.Run(kind, func(t *testing.T) {
			res := lb(t, root, "", "run", "--network", "none", "busybox", "sh", "-c", script.String())
			var got []string
			for _, l := range strings.Split(strings.TrimSpace(res.stdout), "\n") {
				if l != "4" {
					got = append(got, l)
				}
			}
			if len(got) != 0 {
				t.Errorf("the host's device nodes changed from inside: %q\nstderr:\n%s", got, res.stderr)
			}
			if strings.Count(res.stdout, "4\n") != 2 {
				t.Errorf("the devices cannot be read or written: %q %q", res.stdout, res.stderr)
			}
			for _, d := range hostDevices {
				var st unix.Stat_t
				if err := unix.Stat("/dev/"+d, &st); err != nil {
					t.Fatal(err)
				}
				if st.Mtim.Sec == planted {
					t.Errorf("the host's /dev/%s has the time the sandbox planted", d)
					if os.Geteuid() == 0 {
						now := time.Now()
						_ = os.Chtimes("/dev/"+d, now, now) // put back what the failed wall let through
					}
				}
			}
		})
	}
}

// TestAttackOutlivesTimeout: a workload that ignores SIGTERM and leaves a
// daemon of its own (setsid, SIGTERM ignored too) does not outlive its
// sandbox's --timeout: the run ends with SIGKILL's status, says that the
// timeout ended it, and leaves no sandbox and no process on the host.
func TestAttackOutlivesTimeout(t *testing.T) {
	root, _ := newStore(t)
	marker := fmt.Sprintf("%d", 400000+os.Getpid()%100000) // sleep's argument: names our daemon among the host's processes
	script := `trap "" TERM INT HUP; setsid sh -c 'trap "" TERM HUP; exec sleep ` + marker + `' </dev/null >/dev/null 2>&1 & while :; do sleep 1; done`
	res := lb(t, root, "", "run", "--network", "none", "--timeout", "1s", "busybox", "sh", "-c", script)
	if res.code != 137 || !strings.Contains(res.stderr, "timeout") {
		t.Errorf("run --timeout 1s of a workload that ignores SIGTERM: exit %d, stderr %q; want 137 and the timeout named", res.code, res.stderr)
	}
	if got := strings.TrimSpace(lbOK(t, root, "ps", "-aq")); got != "" {
		t.Errorf("sandboxes left: %q", got)
	}
	// The daemon died with the sandbox's pid namespace, before the run
	// returned.
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && string(b) == "sleep\x00"+marker+"\x00" {
			t.Errorf("the sandbox's daemon outlived it: %s", p)
		}
	}
}

// TestAttackUserDatabase: PID 1 reads the sandbox's /etc/passwd and
// /etc/group to start a command as a user (exec -u, or the image's
// USER), and the workload may have made them anything: a FIFO (the
// init's open blocked, and the exec with it, for ever), /dev/urandom
// (the init read lines without end, its memory growing until an OOM kill
// took the whole sandbox; with no memory limit, until the host's), or
// PID 1's own /proc/self/environ. Each exec fails at once, naming the
// file, and the sandbox goes on serving.
func TestAttackUserDatabase(t *testing.T) {
	root, _ := newStore(t)
	name := "passwd-attack"
	args := []string{"run", "-d", "--name", name, "--network", "none"}
	// What the workload plants, and what the refusal says.
	attacks := map[string][2]string{
		"fifo":    {"mkfifo /etc/passwd", "/etc/passwd: not a regular file"},
		"environ": {"ln -s /proc/self/environ /etc/passwd", "/etc/passwd: a file of /proc"},
		"group":   {"cp /etc/passwd.real /etc/passwd; mv /etc/group /etc/group.real; mkfifo /etc/group", "/etc/group: not a regular file"},
	}
	if os.Geteuid() == 0 {
		// Only under a memory limit: without one the init's memory,
		// before the fix, grew without bound on a shared host.
		args = append(args, "--memory", "128m")
		attacks["urandom"] = [2]string{"ln -s /dev/urandom /etc/passwd", "/etc/passwd: not a regular file"}
	}
	lbOK(t, root, append(args, "busybox", "sleep", "1000")...)
	defer lb(t, root, "", "rm", "-f", name)
	lbOK(t, root, "exec", name, "cp", "/etc/passwd", "/etc/passwd.real")
	for what, a := range attacks {
		plant, want := a[0], a[1]
		t.Run(what, func(t *testing.T) {
			lbOK(t, root, "exec", name, "sh", "-c", "rm -f /etc/passwd; "+plant)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			var out, errb bytes.Buffer
			cmd := exec.CommandContext(ctx, binPath, "--root", root, "exec", "-u", "user", name, "id", "-u")
			cmd.Stdout, cmd.Stderr = &out, &errb
			// A stuck init holds the streams the CLI passed on: stop
			// waiting for them once the CLI is gone.
			cmd.WaitDelay = 5 * time.Second
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("exec -u user with %s: still waiting after 30 s", plant)
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 125 || !strings.Contains(errb.String(), want) {
				t.Errorf("exec -u user with %s: %v, stdout %q, stderr %q; want exit 125 and %q", plant, err, out.String(), errb.String(), want)
			}
			// The sandbox serves on, its init alive, users and all.
			lbOK(t, root, "exec", name, "sh", "-c", "rm -f /etc/passwd; cp /etc/passwd.real /etc/passwd; if [ -e /etc/group.real ]; then rm -f /etc/group; mv /etc/group.real /etc/group; fi")
			if got := strings.TrimSpace(lbOK(t, root, "exec", "-u", "user", name, "id", "-u")); got != "1000" {
				t.Errorf("exec -u user after the attack: %q, want 1000", got)
			}
		})
	}
}

// TestAttackStdioReopen: a workload reopens what it was handed as stdio
// through /proc/self/fd, with whatever access its credentials allow.
// Handed the caller's file as `< data.csv` (rootless: a file the
// sandbox's root owns, as the caller does), it rewrote, chmodded and
// re-dated that host file; handed `> out.txt`, it truncated and chmodded
// it. In an identity store the nil streams, the host's /dev/null, could
// be chmodded or re-dated the same way. Every such stream is now copied
// through a pipe; the data read and written are the same.
func TestAttackStdioReopen(t *testing.T) {
	const planted = 946684800 // Y2K: a time nothing else gives a file
	stores := attackStores(t)
	for kind, root := range stores {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			data, out := filepath.Join(dir, "data.txt"), filepath.Join(dir, "out.txt")
			if err := os.WriteFile(data, []byte("original\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			in, err := os.Open(data)
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			o, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			script := fmt.Sprintf(`cat
echo pwned > /proc/self/fd/0; chmod 777 /proc/self/fd/0; touch -d @%d /proc/self/fd/0
echo out; chmod 700 /proc/self/fd/1; touch -d @%d /proc/self/fd/1; echo more > /proc/self/fd/1
true`, planted, planted)
			var errb bytes.Buffer
			cmd := exec.Command(binPath, "--root", root, "run", "--network", "none", "busybox", "sh", "-c", script)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = in, o, &errb
			if err := cmd.Run(); err != nil {
				t.Fatalf("run: %v\n%s", err, errb.String())
			}
			if b, _ := os.ReadFile(out); string(b) != "original\nout\nmore\n" {
				t.Errorf("stdout file holds %q, want the workload's three lines", b)
			}
			for p, want := range map[string]struct {
				mode    os.FileMode
				content string
			}{data: {0o600, "original\n"}, out: {0o644, ""}} {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != want.mode {
					t.Errorf("%s: mode %v after the run, want %v: the sandbox chmodded the host's file", filepath.Base(p), fi.Mode().Perm(), want.mode)
				}
				if fi.ModTime().Unix() == planted {
					t.Errorf("%s has the time the sandbox planted", filepath.Base(p))
				}
				if want.content != "" {
					if b, _ := os.ReadFile(p); string(b) != want.content {
						t.Errorf("%s holds %q after the run, want %q: the sandbox wrote the host's file", filepath.Base(p), b, want.content)
					}
				}
			}

			// Streams left unset: the CLI's (the host's /dev/null, from
			// os/exec) and the API's (the runtime's /dev/null).
			touch := fmt.Sprintf("touch -d @%d /proc/self/fd/0 /proc/self/fd/1 /proc/self/fd/2; true", planted)
			cmd = exec.Command(binPath, "--root", root, "run", "--network", "none", "busybox", "sh", "-c", touch)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("run with /dev/null as stdio: %v\n%s", err, b)
			}
			r, err := lightbox.Open(lightbox.Options{Root: root})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			err = r.RunInSandbox(t.Context(), lightbox.SandboxOptions{Snapshot: "busybox", Network: lightbox.NetworkNone}, func(sb *lightbox.Sandbox) error {
				_, err := sb.Shell(t.Context(), touch)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			var st unix.Stat_t
			if err := unix.Stat(os.DevNull, &st); err != nil {
				t.Fatal(err)
			}
			if st.Mtim.Sec == planted {
				t.Errorf("the host's /dev/null has the time the sandbox planted")
				if os.Geteuid() == 0 {
					now := time.Now()
					_ = os.Chtimes(os.DevNull, now, now) // put back what the failed wall let through
				}
			}
		})
	}
}

// TestAttackHostAbstractSocket: abstract unix sockets belong to a network
// namespace, so a sandbox with a network of its own (none, or private with
// either stack) cannot reach the host's, such as a desktop session's bus
// or a container engine's: connecting and sending are refused, the
// host's sockets receive nothing, and the sandbox's /proc/net lists
// neither them nor a TCP listener on the host's loopback. --network host shares them (the control
// that proves the probe reaches a socket it can name).
func TestAttackHostAbstractSocket(t *testing.T) {
	_, r := newStore(t)
	name := "lightbox-attack-" + rand.Text()
	lfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lfd)
	if err := unix.Bind(lfd, &unix.SockaddrUnix{Name: "@" + name}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(lfd, 8); err != nil {
		t.Fatal(err)
	}
	dfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	if err := unix.Bind(dfd, &unix.SockaddrUnix{Name: "@" + name + "-dgram"}); err != nil {
		t.Fatal(err)
	}
	// heard drains what reached the host's sockets: connections accepted
	// and datagrams received.
	heard := func() int {
		n := 0
		for {
			fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
			if err != nil {
				break
			}
			unix.Close(fd)
			n++
		}
		var b [64]byte
		for {
			if _, _, err := unix.Recvfrom(dfd, b[:], 0); err != nil {
				break
			}
			n++
		}
		return n
	}
	// A TCP listener on the host's loopback: its port must not show in
	// the sandbox's /proc/net either.
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	portHex := fmt.Sprintf("0100007F:%04X", tl.Addr().(*net.TCPAddr).Port)
	target, m := helperMount(t)
	ops := []string{"abstract-stream:" + name, "abstract-dgram:" + name + "-dgram"}
	for _, network := range []lightbox.Network{lightbox.NetworkNone, lightbox.NetworkPrivateSlirp4netns, lightbox.NetworkPrivatePasta, lightbox.NetworkHost} {
		t.Run(string(network), func(t *testing.T) {
			if helper, ok := strings.CutPrefix(string(network), "private:"); ok {
				testutil.NeedTool(t, helper)
			}
			sb := launch(t, r, lightbox.SandboxOptions{Network: network, Mounts: map[string]lightbox.Mount{target: m}})
			got := helperRun(t, sb, ops...)
			n := heard()
			procNet, _ := shell(t, sb, "cat /proc/net/unix /proc/net/tcp")
			seen := strings.Contains(procNet, "@"+name) || strings.Contains(procNet, portHex)
			if network == lightbox.NetworkHost {
				if got[ops[0]] != "ok" || got[ops[1]] != "ok" || n != 2 || !seen {
					t.Fatalf("with --network host the probe got %v, the host's sockets heard %d and /proc/net shows them: %v; want ok, 2 and true: it proves nothing", got, n, seen)
				}
				return
			}
			if seen {
				t.Errorf("the sandbox's /proc/net (--network %s) lists the host's sockets (@%s or 127.0.0.1 port %s)", network, name, portHex)
			}
			for _, op := range ops {
				if got[op] != "ECONNREFUSED" {
					t.Errorf("%s from a sandbox with --network %s: %s, want ECONNREFUSED (the host's abstract sockets are out of reach)", op, network, got[op])
				}
			}
			if n != 0 {
				t.Errorf("the host's abstract sockets heard %d connections or datagrams from a sandbox with --network %s", n, network)
			}
		})
	}
}

// TestDevStdout: a workload may reopen its own streams, as `echo >
// /dev/stdout` and images whose log files link to /dev/stdout (nginx's)
// do. As root with a private range the caller's pipes (and the runtime's
// own, for the API) belonged to host root, so the sandbox's root got
// "permission denied"; the workload's pipes are now its root's.
func TestDevStdout(t *testing.T) {
	root, r := newStore(t)
	const script = "echo out > /dev/stdout && echo err > /dev/stderr && echo in: $(cat /dev/stdin)"
	res := lb(t, root, "given", "run", "--network", "none", "busybox", "sh", "-c", script)
	if res.code != 0 || res.stdout != "out\nin: given\n" || res.stderr != "err\n" {
		t.Errorf("run through the caller's pipes: exit %d, stdout %q, stderr %q; want 0, %q, %q", res.code, res.stdout, res.stderr, "out\nin: given\n", "err\n")
	}
	err := r.RunInSandbox(t.Context(), lightbox.SandboxOptions{Snapshot: "busybox", Network: lightbox.NetworkNone}, func(sb *lightbox.Sandbox) error {
		res, err := sb.Shell(t.Context(), script)
		if err != nil {
			return err
		}
		if string(res.Stdout) != "out\nin:\n" || string(res.Stderr) != "err\n" {
			t.Errorf("Shell: stdout %q, stderr %q; want %q, %q", res.Stdout, res.Stderr, "out\nin:\n", "err\n")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// attackStores returns stores with busybox imported, by kind: the
// default one (a private range as root, the caller rootless) and, as
// root, one with the identity mapping, whose sandbox's root is the
// host's: a wall must hold in both.
func attackStores(t *testing.T) map[string]string {
	t.Helper()
	stores := map[string]string{}
	stores["default"], _ = newStore(t)
	if os.Geteuid() == 0 {
		id := filepath.Join(t.TempDir(), "store")
		t.Cleanup(func() { removeStore(t, id) })
		lbOK(t, id, "--identity-mapping", "snapshot", "import", "busybox", testBusybox(t))
		stores["identity"] = id
	}
	return stores
}

// kernelCountsHogSource spends what the kernel counts per user: inotify
// instances, then POSIX message queues, each until the kernel refuses
// one, says how many it got and why it stopped, and holds them.
const kernelCountsHogSource = `package main

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

func main() {
	n := 0
	var err error
	for {
		if _, err = syscall.InotifyInit1(0); err != nil {
			break
		}
		n++
	}
	fmt.Printf("inotify %d %v\n", n, err)
	for n = 0; ; n++ {
		name, _ := syscall.BytePtrFromString(fmt.Sprintf("hog%d", n))
		_, _, e := syscall.Syscall6(syscall.SYS_MQ_OPEN, uintptr(unsafe.Pointer(name)), uintptr(syscall.O_RDWR|syscall.O_CREAT|syscall.O_EXCL), 0o600, 0, 0, 0)
		if e != 0 {
			fmt.Printf("mqueue %d %v\n", n, e)
			break
		}
	}
	os.Stdout.Sync()
	for {
		syscall.Pause()
	}
}
`

// A root-run sandbox cannot spend host root's share of what the kernel
// counts per user. The kernel charges inotify instances, message queue
// bytes, user namespaces and pending signals made in a user namespace to
// that namespace's owner too; when real root made the sandbox's
// namespace, a workload holding 128 inotify instances made every
// inotify_init of host root fail (systemd, udev, a root-run editor, every
// other root sandbox), and nine message queues used up host root's
// RLIMIT_MSGQUEUE. The sandbox's namespace is owned by its store's range
// root now: the workload gets the same counts, and host root keeps its
// own. (The identity mapping gives that up by design; rootless, the
// caller's own share is what a sandbox spends, as any process of theirs.)
func TestAttackHostRootKernelCounts(t *testing.T) {
	testutil.RootOnly(t)
	dir := buildProgram(t, "hog", kernelCountsHogSource)
	// hog runs the hog in a new store and returns how many inotify
	// instances and message queues it got, each until the kernel's limit.
	hog := func() (ni, nq int) {
		root, _ := newStore(t)
		lbOK(t, root, "run", "-d", "--name", "hog", "--network", "none", "-v", dir+":/prog:ro", "busybox", "/prog/hog")
		t.Cleanup(func() { removeHog(t, root) })
		var logs string
		waitFor(t, "the hog to hold its inotify instances and message queues", func() bool {
			logs = lb(t, root, "", "logs", "hog").stdout
			return strings.Contains(logs, "mqueue ")
		})
		lines := strings.Split(strings.TrimSpace(logs), "\n")
		if len(lines) != 2 || !strings.HasSuffix(lines[0], "too many open files") || !strings.HasSuffix(lines[1], "too many open files") {
			t.Fatalf("the hog's report %q: want its inotify instances and message queues each stopped by the kernel's limit", logs)
		}
		if _, err := fmt.Sscanf(lines[0], "inotify %d", &ni); err != nil {
			t.Fatalf("the hog's report %q: %v", logs, err)
		}
		if _, err := fmt.Sscanf(lines[1], "mqueue %d", &nq); err != nil {
			t.Fatalf("the hog's report %q: %v", logs, err)
		}
		return ni, nq
	}
	// The hog did reach the kernel's limits: the attack was made.
	ni, nq := hog()
	if ni == 0 || nq == 0 {
		t.Fatalf("the hog made %d inotify instances and %d message queues, want some of each", ni, nq)
	}
	t.Logf("the sandbox holds %d inotify instances and %d message queues", ni, nq)

	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Errorf("host root's inotify_init1 while the sandbox holds %d instances: %v", ni, err)
	} else {
		unix.Close(fd)
	}
	name := "lightbox-attack-" + rand.Text()
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		t.Fatal(err)
	}
	q, _, e := unix.Syscall6(unix.SYS_MQ_OPEN, uintptr(unsafe.Pointer(p)), uintptr(unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC), 0o600, 0, 0, 0)
	if e != 0 {
		t.Errorf("host root's mq_open while the sandbox holds %d queues: %v", nq, e)
	} else {
		unix.Close(int(q))
		if _, _, e := unix.Syscall(unix.SYS_MQ_UNLINK, uintptr(unsafe.Pointer(p)), 0, 0); e != 0 {
			t.Errorf("mq_unlink %s: %v", name, e)
		}
	}
	// Another store's sandboxes have a share of their own (their range
	// root's): a CI job in one store cannot starve another's.
	if ni2, nq2 := hog(); ni2 != ni || nq2 != nq {
		t.Errorf("while one store's sandbox holds %d inotify instances and %d message queues, another store's got %d and %d, want as many", ni, nq, ni2, nq2)
	}
}

// removeHog removes the hog sandbox of store root, which a test's end
// would not wait for (t.Context is done by then).
func removeHog(t *testing.T, root string) {
	out, err := exec.Command(binPath, "--root", root, "rm", "-f", "hog").CombinedOutput()
	if err != nil {
		t.Errorf("lightbox rm -f hog: %v: %s", err, out)
	}
}
