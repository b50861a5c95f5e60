//go:build linux

package ociruntime_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

var runcBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lightbox-runc-")
	if err != nil {
		panic(err)
	}
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "lightbox")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/beamhop/lightbox/cmd/lightbox")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	runcBin = filepath.Join(dir, "lightbox-runc")
	if err := os.Symlink("lightbox", runcBin); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// bundle makes a busybox bundle whose process runs args: as root the
// example config's namespaces, rootless a user namespace mapping root to
// the caller (as `runc spec --rootless`).
func bundle(t *testing.T, edit func(*specs.Spec), args ...string) string {
	t.Helper()
	rootfs := testutil.BusyboxRootfs(t)
	dir := filepath.Dir(rootfs)
	runc(t, "", "spec", "--bundle", dir, rootlessFlag())
	p := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	s.Process.Terminal = false
	s.Process.Args = args
	s.Root.Readonly = false
	if os.Geteuid() != 0 {
		s.Linux.UIDMappings[0].HostID = uint32(os.Geteuid())
		s.Linux.GIDMappings[0].HostID = uint32(os.Getegid())
	}
	if edit != nil {
		edit(&s)
	}
	b, _ = json.Marshal(s)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func rootlessFlag() string {
	if os.Geteuid() != 0 {
		return "--rootless"
	}
	return "--rootless=false"
}

type result struct {
	out, err string
	code     int
}

// runc runs lightbox-runc with root as --root ("" = none).
func runcIn(t *testing.T, root string, stdout *os.File, args ...string) result {
	t.Helper()
	// (In a cleanup too, after t.Context is done.)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
	defer cancel()
	if root != "" {
		args = append([]string{"--root", root}, args...)
	}
	cmd := exec.CommandContext(ctx, runcBin, args...)
	// Files, not pipes: a container inherits create's stdio and would
	// hold a pipe open (engines pass files or FIFOs too).
	dir := t.TempDir()
	outf, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer outf.Close()
	errf, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errf.Close()
	cmd.Stdout, cmd.Stderr = outf, errf
	if stdout != nil {
		cmd.Stdout, cmd.Stderr = stdout, stdout
	}
	err = cmd.Run()
	r := result{out: readAll(outf), err: readAll(errf)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("lightbox-runc %v: %v", args, err)
	}
	return r
}

func runc(t *testing.T, root string, args ...string) result {
	t.Helper()
	return runcIn(t, root, nil, args...)
}

func mustRunc(t *testing.T, root string, args ...string) string {
	t.Helper()
	r := runc(t, root, args...)
	if r.code != 0 {
		t.Fatalf("lightbox-runc %v: exit %d: %s", args, r.code, r.err)
	}
	return r.out
}

func state(t *testing.T, root, id string) specs.State {
	t.Helper()
	var st specs.State
	if err := json.Unmarshal([]byte(mustRunc(t, root, "state", id)), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func waitStatus(t *testing.T, root, id string, want specs.ContainerState) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := state(t, root, id)
		if st.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("state %s: status %s, want %s", id, st.Status, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func stateRoot(t *testing.T) string {
	d := filepath.Join(t.TempDir(), "state")
	t.Cleanup(func() {
		// Nothing may be left: delete removed every container.
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			t.Errorf("container %s left in the state root", e.Name())
			runc(t, d, "delete", "--force", e.Name())
		}
	})
	return d
}

func TestLifecycle(t *testing.T) {
	root := stateRoot(t)
	b := bundle(t, nil, "sh", "-c", `echo started; trap "echo got TERM; exit 3" TERM; while :; do sleep 0.05; done`)
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(t.TempDir(), "pid")
	if r := runcIn(t, root, out, "create", "--bundle", b, "--pid-file", pidFile, "c1"); r.code != 0 {
		t.Fatalf("create: exit %d: %s", r.code, readAll(out))
	}
	st := state(t, root, "c1")
	pb, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != "created" || strconv.Itoa(st.Pid) != string(pb) || st.Bundle != b {
		t.Fatalf("state after create = %+v, pid file %q", st, pb)
	}
	if got := readAll(out); strings.Contains(got, "started") {
		t.Fatalf("the process ran before start: %q", got)
	}
	if r := runc(t, root, "create", "--bundle", b, "c1"); r.code == 0 || !strings.Contains(r.err, "already exists") {
		t.Fatalf("second create of c1: exit %d, %q", r.code, r.err)
	}
	mustRunc(t, root, "start", "c1")
	waitStatus(t, root, "c1", "running")
	waitOutput(t, out, "started")
	if r := runc(t, root, "delete", "c1"); r.code == 0 {
		t.Fatal("delete of a running container without --force succeeded")
	}
	mustRunc(t, root, "kill", "c1", "TERM")
	waitStatus(t, root, "c1", "stopped")
	waitOutput(t, out, "got TERM")
	mustRunc(t, root, "delete", "c1")
	for _, args := range [][]string{{"state", "c1"}, {"kill", "c1", "KILL"}, {"start", "c1"}, {"delete", "c1"}} {
		if r := runc(t, root, args...); r.code == 0 || !strings.Contains(r.err, "does not exist") {
			t.Errorf("%v after delete: exit %d, %q", args, r.code, r.err)
		}
	}
}

func readAll(f *os.File) string {
	b, _ := os.ReadFile(f.Name())
	return string(b)
}

func waitOutput(t *testing.T, f *os.File, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(readAll(f), want) {
		if time.Now().After(deadline) {
			t.Fatalf("output %q never showed %q", readAll(f), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunExitStatusAndConfig(t *testing.T) {
	root := stateRoot(t)
	b := bundle(t, func(s *specs.Spec) {
		s.Hostname = "oci-host"
		s.Process.Env = append(s.Process.Env, "FOO=bar")
		s.Process.Cwd = "/tmp/made"
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 321, Hard: 321}}
	}, "sh", "-c", `echo "$(hostname) $FOO $(pwd) $(ulimit -n) $$"; exit 7`)
	r := runc(t, root, "run", "--bundle", b, "r1")
	if r.code != 7 {
		t.Fatalf("run: exit %d, want 7: %s %s", r.code, r.out, r.err)
	}
	if got, want := strings.TrimSpace(r.out), "oci-host bar /tmp/made 321 "; !strings.HasPrefix(got, want) {
		t.Fatalf("run printed %q, want %q…", got, want)
	}
}

// --preserve-fds N hands the container process the runtime's fds 3 to
// 3+N-1, as runc does (the init keeps them while it closes what its
// config does not name); another descriptor the runtime inherited without
// close-on-exec (here at fd 10) does not reach the process.
func TestPreserveFDs(t *testing.T) {
	root := stateRoot(t)
	b := bundle(t, nil, "sh", "-c", `cat <&3; cat <&4; [ -e /proc/self/fd/10 ] && echo LEAKED; exit 0`)
	dir := t.TempDir()
	file := func(name, body string) *os.File {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	cmd := exec.Command(runcBin, "--root", root, "run", "--preserve-fds", "2", "--bundle", b, "pfd")
	cmd.ExtraFiles = make([]*os.File, 8)
	cmd.ExtraFiles[0], cmd.ExtraFiles[1] = file("a", "first\n"), file("b", "second\n")
	cmd.ExtraFiles[7] = file("c", "stray\n") // fd 10
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("run --preserve-fds 2: %v\n%s", err, out)
	}
	if got, want := string(out), "first\nsecond\n"; got != want {
		t.Errorf("the container printed %q, want %q", got, want)
	}
}

func TestUnsupportedRefused(t *testing.T) {
	root := stateRoot(t)
	for _, tc := range []struct {
		field string
		edit  func(*specs.Spec)
	}{
		{"apparmorProfile", func(s *specs.Spec) { s.Process.ApparmorProfile = "docker-default" }},
		{"hooks.createContainer", func(s *specs.Spec) {
			s.Hooks = &specs.Hooks{CreateContainer: []specs.Hook{{Path: "/bin/true"}}}
		}},
		{"linux.intelRdt", func(s *specs.Spec) { s.Linux.IntelRdt = &specs.LinuxIntelRdt{} }},
		{"listenerPath", func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, ListenerPath: "/run/x"}
		}},
		{"linux.cgroupsPath", func(s *specs.Spec) { s.Linux.CgroupsPath = "system.slice:lightbox:x" }},
	} {
		b := bundle(t, tc.edit, "true")
		r := runc(t, root, "create", "--bundle", b, "bad")
		if r.code == 0 || !strings.Contains(r.err, tc.field) || !strings.Contains(r.err, "not supported") {
			t.Errorf("create with %s: exit %d, %q; want a refusal naming the field", tc.field, r.code, r.err)
		}
		if _, err := os.Stat(filepath.Join(root, "bad")); err == nil {
			t.Errorf("create with %s left its state dir", tc.field)
		}
	}
	if r := runc(t, "", "--systemd-cgroup", "state", "x"); r.code == 0 || !strings.Contains(r.err, "--systemd-cgroup") {
		t.Errorf("--systemd-cgroup: exit %d, %q", r.code, r.err)
	}
}

func TestJSONLog(t *testing.T) {
	root := stateRoot(t)
	log := filepath.Join(t.TempDir(), "log.json")
	r := runc(t, root, "--log", log, "--log-format", "json", "state", "nosuch")
	if r.code == 0 {
		t.Fatal("state of an unknown id succeeded")
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	var line struct{ Level, Msg, Time string }
	if err := json.Unmarshal(bytes.TrimSpace(b), &line); err != nil || line.Level != "error" || !strings.Contains(line.Msg, "does not exist") || line.Time == "" {
		t.Fatalf("log = %q (%v), want one JSON error line", b, err)
	}
}

func TestConsoleSocket(t *testing.T) {
	root := stateRoot(t)
	b := bundle(t, func(s *specs.Spec) { s.Process.Terminal = true }, "sh", "-c", "tty; echo on-the-pty; sleep 5")
	sock := filepath.Join(t.TempDir(), "console.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan *os.File, 1)
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		buf, oob := make([]byte, 256), make([]byte, unix.CmsgSpace(4))
		_, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil {
			got <- nil
			return
		}
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for _, m := range msgs {
			if fds, err := unix.ParseUnixRights(&m); err == nil && len(fds) == 1 {
				got <- os.NewFile(uintptr(fds[0]), "ptmx")
				return
			}
		}
		got <- nil
	}()
	mustRunc(t, root, "create", "--bundle", b, "--console-socket", sock, "tty1")
	master := <-got
	if master == nil {
		t.Fatal("no pty master received over the console socket")
	}
	defer master.Close()
	mustRunc(t, root, "start", "tty1")
	var out bytes.Buffer
	buf := make([]byte, 1024)
	master.SetReadDeadline(time.Now().Add(20 * time.Second))
	for !strings.Contains(out.String(), "on-the-pty") {
		n, err := master.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			t.Fatalf("pty output %q: %v", out.String(), err)
		}
	}
	if !strings.Contains(out.String(), "/dev/pts/") {
		t.Errorf("tty printed %q, want a /dev/pts/ path", out.String())
	}
	mustRunc(t, root, "delete", "--force", "tty1")
}

func TestExec(t *testing.T) {
	root := stateRoot(t)
	b := bundle(t, nil, "sleep", "60")
	mustRunc(t, root, "create", "--bundle", b, "e1")
	mustRunc(t, root, "start", "e1")
	r := runc(t, root, "exec", "--env", "X=y,z", "--cwd", "/tmp", "e1", "sh", "-c", `echo "$X $(pwd) $(id -u)"; exit 5`)
	if r.code != 5 || strings.TrimSpace(r.out) != "y,z /tmp 0" {
		t.Fatalf("exec: exit %d, %q %q; want 5, \"y,z /tmp 0\" (a value with a comma is one value, as runc takes it)", r.code, r.out, r.err)
	}
	// --user, and a process.json as containerd's shim passes it.
	proc := specs.Process{Args: []string{"sh", "-c", "id -u; id -g"}, Cwd: "/", Env: []string{"PATH=/bin"}, User: specs.User{UID: 1000, GID: 1000}}
	pj := filepath.Join(t.TempDir(), "process.json")
	pb, _ := json.Marshal(proc)
	os.WriteFile(pj, pb, 0o644)
	if os.Geteuid() == 0 {
		if got := mustRunc(t, root, "exec", "--process", pj, "e1"); strings.Fields(got)[0] != "1000" {
			t.Errorf("exec --process as 1000: %q", got)
		}
		// Its own rlimits, as another user than the init's: set on it
		// with its ids (the init, without CAP_SYS_RESOURCE, may not
		// prlimit another user's process; it ran with the container's).
		// They are set after it starts, before exec --detach returns:
		// read from here then.
		proc.Args = []string{"sleep", "31"}
		proc.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 300, Hard: 500}}
		pb, _ = json.Marshal(proc)
		os.WriteFile(pj, pb, 0o644)
		mustRunc(t, root, "exec", "--detach", "--pid-file", filepath.Join(t.TempDir(), "pid"), "--process", pj, "e1")
		var ps []int
		if err := json.Unmarshal([]byte(mustRunc(t, root, "ps", "--format", "json", "e1")), &ps); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, pid := range ps {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); string(b) != "sleep\x0031\x00" {
				continue
			}
			found = true
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "Max open files") {
					if f := strings.Fields(l); len(f) < 5 || f[3] != "300" || f[4] != "500" {
						t.Errorf("exec --process as 1000 with RLIMIT_NOFILE 300:500: /proc/%d/limits says %q", pid, l)
					}
				}
			}
			_ = unix.Kill(pid, unix.SIGKILL) // a test's process: it may be gone already
		}
		if !found {
			t.Errorf("exec --detach sleep 31: not among the container's processes %v", ps)
		}
	}
	// As many arguments as execve takes (~800 kB: more than a packet of
	// the exec socket carries).
	big := specs.Process{Args: []string{"sh", "-c", `echo $#`, "sh"}, Cwd: "/", Env: []string{"PATH=/bin"}}
	for i := range 60000 {
		big.Args = append(big.Args, "argument"+strconv.Itoa(i))
	}
	pb, _ = json.Marshal(big)
	os.WriteFile(pj, pb, 0o644)
	if got := mustRunc(t, root, "exec", "--process", pj, "e1"); strings.TrimSpace(got) != "60000" {
		t.Errorf("exec --process with %d arguments: %q", len(big.Args), got)
	}
	// Detached: the pid file names a relay that exits with the status.
	pidFile := filepath.Join(t.TempDir(), "exec.pid")
	mustRunc(t, root, "exec", "--detach", "--pid-file", pidFile, "e1", "sh", "-c", "sleep 0.2; exit 9")
	pb, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(string(pb))
	// The relay is not our child (it was detached): poll until gone.
	deadline := time.Now().Add(20 * time.Second)
	for unix.Kill(pid, 0) == nil {
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); strings.Contains(string(b), ") Z") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("detached exec's relay still running")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var ps []int
	if err := json.Unmarshal([]byte(mustRunc(t, root, "ps", "--format", "json", "e1")), &ps); err != nil || len(ps) == 0 {
		t.Fatalf("ps --format json: %v %v", ps, err)
	}
	if r := runc(t, root, "exec", "e1", "nosuchprogram"); r.code == 0 || !strings.Contains(r.err, "nosuchprogram") {
		t.Errorf("exec of a missing program: exit %d, %q", r.code, r.err)
	}
	mustRunc(t, root, "delete", "--force", "e1")
}

// TestKill9DeleteForce: kill -9 of the init leaves nothing that delete
// --force does not clean, cgroup included.
func TestKill9DeleteForce(t *testing.T) {
	testutil.RootOnly(t) // the cgroup part needs root on cgroup v1
	root := stateRoot(t)
	b := bundle(t, func(s *specs.Spec) { s.Linux.CgroupsPath = "/" + testCgroupParent + "/k9" }, "sleep", "60")
	mustRunc(t, root, "create", "--bundle", b, "k9")
	mustRunc(t, root, "start", "k9")
	st := state(t, root, "k9")
	if err := syscall.Kill(st.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, root, "k9", "stopped")
	mustRunc(t, root, "delete", "--force", "k9")
	for _, c := range []string{"pids", "memory", "freezer"} {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", c, testCgroupParent, "k9")); err == nil {
			t.Errorf("cgroup %s/lightbox-runc-test/k9 left", c)
		}
	}
	removeTestCgroupParent(t)
}

// testCgroupParent is the cgroup under which tests put the cgroupsPath of
// their containers; a runtime removes the container's cgroup, as runc
// does, not the parents it made for it.
const testCgroupParent = "lightbox-runc-test"

// removeTestCgroupParent removes testCgroupParent from every hierarchy
// once no test's container is left in it (EBUSY: another test's is).
func removeTestCgroupParent(t *testing.T) {
	dirs, err := filepath.Glob("/sys/fs/cgroup/*/" + testCgroupParent)
	if err != nil {
		t.Fatal(err)
	}
	dirs = append(dirs, "/sys/fs/cgroup/"+testCgroupParent)
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.EBUSY) {
			t.Errorf("remove the tests' cgroup parent: %v", err)
		}
	}
}

func TestPauseResumeUpdateStats(t *testing.T) {
	testutil.RootOnly(t) // cgroup v1 has no delegation
	root := stateRoot(t)
	b := bundle(t, nil, "sh", "-c", "while :; do sleep 0.05; done")
	mustRunc(t, root, "run", "--detach", "--bundle", b, "p1")
	mustRunc(t, root, "pause", "p1")
	if st := state(t, root, "p1"); st.Status != "paused" {
		t.Fatalf("status after pause = %s", st.Status)
	}
	mustRunc(t, root, "resume", "p1")
	waitStatus(t, root, "p1", "running")
	mustRunc(t, root, "update", "--pids-limit", "77", "p1")
	var ev struct {
		Type string
		Data struct {
			Pids struct{ Current, Limit uint64 }
		}
	}
	if err := json.Unmarshal([]byte(mustRunc(t, root, "events", "--stats", "p1")), &ev); err != nil || ev.Type != "stats" || ev.Data.Pids.Limit != 77 || ev.Data.Pids.Current == 0 {
		t.Fatalf("events --stats after update --pids-limit 77: %+v (%v)", ev, err)
	}
	mustRunc(t, root, "delete", "--force", "p1")
}

func TestFeaturesAndSpec(t *testing.T) {
	var f struct {
		OCIVersionMax string
		Linux         struct {
			Seccomp struct{ Enabled bool }
			Cgroup  struct{ Systemd bool }
		}
	}
	if err := json.Unmarshal([]byte(mustRunc(t, "", "features")), &f); err != nil || f.OCIVersionMax != specs.Version || !f.Linux.Seccomp.Enabled || f.Linux.Cgroup.Systemd {
		t.Fatalf("features = %+v (%v)", f, err)
	}
	d := t.TempDir()
	mustRunc(t, "", "spec", "--bundle", d)
	if r := runc(t, "", "spec", "--bundle", d); r.code == 0 {
		t.Error("spec overwrote an existing config.json")
	}
}

func TestSeccomp(t *testing.T) {
	root := stateRoot(t)
	errno := uint(unix.EACCES)
	b := bundle(t, func(s *specs.Spec) {
		s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno, ErrnoRet: &errno},
		}}
	}, "sh", "-c", "mkdir /tmp/x 2>&1; echo done")
	r := runc(t, root, "run", "--bundle", b, "s1")
	if r.code != 0 || !strings.Contains(r.out, "Permission denied") || !strings.Contains(r.out, "done") {
		t.Fatalf("mkdir under a seccomp rule returning EACCES: exit %d, %q %q", r.code, r.out, r.err)
	}
}

// TestSeccompArgs: rules with argument conditions, as podman's and
// containerd's default profiles have (socket allowed unless its family
// and protocol match): a call whose conditions fail goes on to the next
// rules, which still match it by syscall number.
func TestSeccompArgs(t *testing.T) {
	root := stateRoot(t)
	eacces, eperm, einval, eafnosupport := uint(unix.EACCES), uint(unix.EPERM), uint(unix.EINVAL), uint(unix.EAFNOSUPPORT)
	b := bundle(t, func(s *specs.Spec) {
		s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0, Op: specs.OpEqualTo}}},
			{Names: []string{"chmod"}, Action: specs.ActErrno, ErrnoRet: &eacces, Args: []specs.LinuxSeccompArg{{Index: 1, Value: 0o700, Op: specs.OpEqualTo}}},
			{Names: []string{"fchmodat"}, Action: specs.ActErrno, ErrnoRet: &eacces, Args: []specs.LinuxSeccompArg{{Index: 2, Value: 0o700, Op: specs.OpEqualTo}}},
			{Names: []string{"chmod"}, Action: specs.ActErrno, ErrnoRet: &eperm, Args: []specs.LinuxSeccompArg{{Index: 1, Value: 0o751, Op: specs.OpEqualTo}, {Index: 1, Value: 0o750, Op: specs.OpEqualTo}}},
			{Names: []string{"fchmodat"}, Action: specs.ActErrno, ErrnoRet: &eperm, Args: []specs.LinuxSeccompArg{{Index: 2, Value: 0o751, Op: specs.OpEqualTo}, {Index: 2, Value: 0o750, Op: specs.OpEqualTo}}},
			{Names: []string{"socket"}, Action: specs.ActErrno, ErrnoRet: &einval, Args: []specs.LinuxSeccompArg{{Index: 0, Value: unix.AF_NETLINK, Op: specs.OpEqualTo}, {Index: 2, Value: unix.NETLINK_AUDIT, Op: specs.OpEqualTo}}},
			{Names: []string{"socket"}, Action: specs.ActErrno, ErrnoRet: &eafnosupport},
		}}
	}, "sh", "-c", "touch /tmp/f; chmod 700 /tmp/f 2>&1; chmod 750 /tmp/f 2>&1; chmod 755 /tmp/f && stat -c %a /tmp/f; ip link show lo 2>&1; echo done")
	r := runc(t, root, "run", "--bundle", b, "s2")
	// chmod 700: the first rule; chmod 750: the fourth, after the
	// conditions of the second or third failed (indexes 1 and 2 repeat
	// in the fourth: either matches); 755: none; socket: the last,
	// after the conditions of the one before it failed.
	want := []string{"Permission denied", "Operation not permitted", "755", "Address family not supported", "done"}
	for _, w := range want {
		if !strings.Contains(r.out, w) {
			t.Fatalf("seccomp rules with arguments: exit %d, output %q (stderr %q): want %q", r.code, r.out, r.err, w)
		}
	}
}

// A container in a user namespace gets the host's device nodes as binds
// (it cannot mknod): read-only ones, so that it reads and writes the
// devices but cannot change their inodes, which are the host's. As root
// the namespace here maps the host's root, where a writable bind let the
// container chmod, chown or set the times of the host's /dev/null.
func TestDeviceBindsReadOnly(t *testing.T) {
	const planted = 946684800 // a time nothing else gives the host's /dev/null
	root := stateRoot(t)
	b := bundle(t, func(s *specs.Spec) {
		if os.Geteuid() != 0 {
			return // rootless: the spec has its user namespace already
		}
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: 65536}}
		s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: 65536}}
	}, "sh", "-c", "touch -d @"+strconv.Itoa(planted)+" /dev/null && echo TOUCHED; touch /dev/null && echo TOUCHED-NOW; "+
		"chmod 666 /dev/null && echo CHMOD; echo x > /dev/null && head -c 3 /dev/zero | wc -c")
	r := runc(t, root, "run", "--bundle", b, "devs")
	var st unix.Stat_t
	if err := unix.Stat("/dev/null", &st); err != nil {
		t.Fatal(err)
	}
	if st.Mtim.Sec == planted {
		t.Errorf("the host's /dev/null has the time the container planted")
		if os.Geteuid() == 0 {
			now := time.Now()
			_ = os.Chtimes("/dev/null", now, now) // put back what the failed wall let through
		}
	}
	if r.code != 0 || strings.TrimSpace(r.out) != "3" {
		t.Errorf("run: exit %d, stdout %q, stderr %q; want only the devices read and written (3)", r.code, r.out, r.err)
	}
}

// delete --force of an id with no container succeeds, as runc's and
// crun's do: engines clean up after a failed create with it (podman
// logged "Removing container … from runtime after creation failed" over
// the real cause). A plain delete still fails.
func TestDeleteForceOfNoContainer(t *testing.T) {
	root := stateRoot(t)
	if r := runc(t, root, "delete", "--force", "nosuch"); r.code != 0 {
		t.Errorf("delete --force nosuch: exit %d, %q; want 0 (nothing left to delete)", r.code, r.err)
	}
	if r := runc(t, root, "delete", "nosuch"); r.code == 0 || !strings.Contains(r.err, "does not exist") {
		t.Errorf("delete nosuch: exit %d, %q; want a failure saying it does not exist", r.code, r.err)
	}
}

// TestStartKilled: a start killed at any moment leaves a container whose
// state says what it is. The init goes on once a start has the exec fifo
// open, so a start killed after that open but before it removed the fifo
// (it waited for the process's exec first) left a running container that
// said "created", and a second start waited 10 s for a byte no one would
// write, then failed. Killed at delays across that window: a container
// that says created starts at once; one that says running has started.
func TestStartKilled(t *testing.T) {
	root := stateRoot(t)
	b := bundle(t, nil, "sh", "-c", `echo started; while :; do sleep 0.05; done`)
	for i := range 24 {
		id := fmt.Sprintf("k%d", i)
		delay := time.Duration(i) * 625 * time.Microsecond // where the kill lands: 0 to 14.4 ms in
		out, err := os.CreateTemp(t.TempDir(), "out")
		if err != nil {
			t.Fatal(err)
		}
		if r := runcIn(t, root, out, "create", "--bundle", b, id); r.code != 0 {
			t.Fatalf("create: exit %d: %s", r.code, readAll(out))
		}
		args := []string{"start", id}
		if root != "" {
			args = append([]string{"--root", root}, args...)
		}
		cmd := exec.Command(runcBin, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		_ = cmd.Process.Kill() // may have exited already: then it started the container
		_ = cmd.Wait()         // killed, or its own status: the state below is what counts
		switch st := state(t, root, id); st.Status {
		case "created":
			start := time.Now()
			if r := runc(t, root, "start", id); r.code != 0 {
				t.Errorf("%s (start killed after %v): says created, and start failed after %v: %s", id, delay, time.Since(start).Round(time.Millisecond), r.err)
				mustRunc(t, root, "delete", "--force", id)
				continue
			}
			fallthrough
		case "running":
			waitOutput(t, out, "started")
		default:
			t.Errorf("%s after a killed start: %s", id, st.Status)
		}
		mustRunc(t, root, "delete", "--force", id)
	}
}
