//go:build linux

package runtime

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/names"
	"github.com/beamhop/lightbox/internal/testutil"
	"github.com/beamhop/lightbox/nsinit"
	"golang.org/x/sys/unix"
)

func TestLaunchExec(t *testing.T) {
	e := newEnv(t)
	sb := e.launch(t, e.spec("basic"))
	out, errs, code := run(t, sb, "echo", "hello")
	if out != "hello\n" || code != 0 {
		t.Fatalf("echo hello = %q, %q, %d; want \"hello\\n\", 0", out, errs, code)
	}
	out, errs, code = run(t, sb, "sh", "-c", "echo out; echo err >&2; exit 3")
	if out != "out\n" || errs != "err\n" || code != 3 {
		t.Errorf("sh exit 3 = %q, %q, %d; want \"out\\n\", \"err\\n\", 3", out, errs, code)
	}
	c := sb.Command("sh", "-c", "kill -9 $$")
	err := c.Run()
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Signal != 9 || ee.Code != 137 {
		t.Errorf("killed command: err = %v, want an ExitError for signal 9 (137)", err)
	}
	err = sb.Command("no-such-command").Run()
	if !errors.Is(err, ErrCommandNotFound) || ExitCode(err) != 127 {
		t.Errorf("missing command: err = %v (code %d), want ErrCommandNotFound (127)", err, ExitCode(err))
	}
	err = sb.Command("/no/such/path").Run()
	if ExitCode(err) != 127 {
		t.Errorf("missing path: err = %v (code %d), want 127", err, ExitCode(err))
	}
	sh(t, sb, "echo 'echo hi' > /tmp/noexec; chmod 644 /tmp/noexec")
	err = sb.Command("/tmp/noexec").Run()
	if !errors.Is(err, ErrNotExecutable) || ExitCode(err) != 126 {
		t.Errorf("non-executable file: err = %v (code %d), want ErrNotExecutable (126)", err, ExitCode(err))
	}
	// Writes land in the upper dir, not in the layer.
	sh(t, sb, "echo new > /etc/added")
	if _, err := os.Stat(filepath.Join(e.rootfs, "etc/added")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("write inside reached the layer: stat = %v", err)
	}
}

func TestIsolation(t *testing.T) {
	e := newEnv(t)
	sb := e.launch(t, e.spec("iso"))
	if got := strings.TrimSpace(sh(t, sb, "hostname")); got != "iso" {
		t.Errorf("hostname = %q, want iso", got)
	}
	if got := strings.TrimSpace(sh(t, sb, "cat /etc/hostname")); got != "iso" {
		t.Errorf("/etc/hostname = %q, want iso", got)
	}
	// Only the sandbox's own processes: the init and this shell (and ls).
	procs := strings.Fields(sh(t, sb, "cd /proc && ls -d [0-9]*"))
	if len(procs) > 3 || procs[0] != "1" {
		t.Errorf("processes seen inside = %v, want pid 1 and the shell only", procs)
	}
	if got := sh(t, sb, "tr '\\0' ' ' < /proc/1/cmdline"); !strings.HasPrefix(got, "lightbox-init") {
		t.Errorf("pid 1 = %q, want lightbox-init", got)
	}
	// Only loopback, and it is up.
	var ifaces []string
	for _, l := range strings.Split(sh(t, sb, "cat /proc/net/dev"), "\n")[2:] {
		if n, _, ok := strings.Cut(strings.TrimSpace(l), ":"); ok {
			ifaces = append(ifaces, n)
		}
	}
	if len(ifaces) != 1 || ifaces[0] != "lo" {
		t.Errorf("interfaces = %v, want [lo]", ifaces)
	}
	// Up before anything runs (the init brings it up beside its mounts
	// and waits for that before it serves): IFF_UP is 0x1.
	if flags, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(sh(t, sb, "cat /sys/class/net/lo/flags")), "0x"), 16, 32); err != nil || flags&unix.IFF_UP == 0 {
		t.Errorf("lo flags = %#x (%v), want IFF_UP set", flags, err)
	}
	// The binary behind PID 1 cannot be written.
	if _, errs, code := run(t, sb, "sh", "-c", "echo x >> /proc/1/exe"); code == 0 {
		t.Errorf("writing /proc/1/exe succeeded, want failure")
	} else {
		t.Logf("writing /proc/1/exe: %s", strings.TrimSpace(errs))
	}
	// The init's own binary (the lean init installed in the store, or
	// this test binary), seen from here.
	var exeSt unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/exe", sb.Pid()), &exeSt); err != nil {
		t.Fatalf("stat of the init's binary: %v", err)
	}
	if exeSt.Uid == uint32(os.Getuid()) {
		// The binary is ours, so the sandbox's root could write it: the
		// init must run from a read-only mount of it.
		var st unix.Statfs_t
		if err := unix.Statfs(fmt.Sprintf("/proc/%d/exe", sb.Pid()), &st); err != nil {
			t.Errorf("statfs of the init's binary: %v", err)
		} else if st.Flags&unix.ST_RDONLY == 0 {
			t.Errorf("the init's binary is on a writable mount")
		}
	}
	if _, _, code := run(t, sb, "sh", "-c", "echo x >> /proc/self/exe"); code == 0 {
		t.Errorf("writing /proc/self/exe succeeded, want failure")
	}
	// PID 1 is not dumpable: its environment and fds are out of reach.
	if _, _, code := run(t, sb, "cat", "/proc/1/environ"); code == 0 {
		t.Errorf("reading /proc/1/environ succeeded")
	}
	if out, _, code := run(t, sb, "sh", "-c", "for f in /proc/1/fd/* /proc/1/cwd /proc/1/root; do readlink $f && echo $f; done; true"); code != 0 || out != "" {
		t.Errorf("the init's fds can be followed from inside: %q", out)
	}
	// And it holds no directory of the host.
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", sb.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		p := fmt.Sprintf("/proc/%d/fd/%s", sb.Pid(), fd.Name())
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			l, _ := os.Readlink(p)
			t.Errorf("the init holds a directory: fd %s -> %s", fd.Name(), l)
		}
	}
	// How PID 1 swallows the signals below does not leak into what it
	// starts: none of them is ignored in a workload. (Signals ignored by
	// whoever started the launcher are another matter: those the init
	// inherits, and its workloads with it.)
	out, _, _ := run(t, sb, "cat", "/proc/self/status")
	_, ign, _ := strings.Cut(out, "SigIgn:\t")
	mask, err := strconv.ParseUint(strings.Fields(ign + " x")[0], 16, 64)
	if err != nil {
		t.Fatalf("a workload's SigIgn: %v in\n%s", err, out)
	}
	for _, sig := range []unix.Signal{unix.SIGABRT, unix.SIGILL, unix.SIGTRAP, unix.SIGSYS, unix.SIGSTKFLT, unix.SIGBUS, unix.SIGFPE, unix.SIGSEGV} {
		if mask&(1<<(sig-1)) != 0 {
			t.Errorf("a workload starts with %v ignored (SigIgn %016x)", sig, mask)
		}
	}
	// Signals a workload may send PID 1 do not take the sandbox down.
	sh(t, sb, "for s in ABRT ILL TRAP SYS STKFLT BUS FPE SEGV USR1 USR2 PIPE ALRM; do kill -$s 1; done")
	if got := strings.TrimSpace(sh(t, sb, "echo alive")); got != "alive" {
		t.Errorf("after signals to PID 1: %q", got)
	}
	// Orphans are reaped: no zombie outlives its parent for long.
	sh(t, sb, "sh -c 'sleep 0.1 & sleep 0.1 &'")
	deadline := time.Now().Add(20 * time.Second)
	for {
		states := sh(t, sb, "cat /proc/[0-9]*/stat 2>/dev/null | cut -d' ' -f3 | tr -d '\n'")
		if !strings.Contains(states, "Z") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("zombies left: states %q", states)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// podman's default capabilities, no_new_privs, own session.
	status := sh(t, sb, "cat /proc/self/status")
	for _, want := range []string{"CapEff:\t00000000800405fb", "CapBnd:\t00000000800405fb", "CapAmb:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(status, want+"\n") {
			t.Errorf("/proc/self/status lacks %q:\n%s", want, status)
		}
	}
	if got := strings.Fields(sh(t, sb, "cut -d' ' -f6 /proc/self/stat; echo $$")); len(got) != 2 || got[0] != got[1] {
		t.Errorf("session id, pid = %v: want the shell to lead its own session", got)
	}
	// /sys is read-only, /dev has the usual nodes and a private devpts.
	if _, _, code := run(t, sb, "sh", "-c", "touch /sys/x || mkdir /sys/kernel/x"); code == 0 {
		t.Errorf("/sys is writable")
	}
	sh(t, sb, "echo x > /dev/null; head -c 4 /dev/zero >/dev/null; head -c 4 /dev/urandom >/dev/null; test -c /dev/pts/ptmx; test -d /dev/shm; touch /dev/shm/x")
}

func TestNetworkHost(t *testing.T) {
	e := newEnv(t)
	spec := e.spec("hostnet")
	spec.Network = NetworkHost
	sb := e.launch(t, spec)
	host, err := os.ReadFile("/proc/net/dev")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Count(sh(t, sb, "cat /proc/net/dev"), ":"), strings.Count(string(host), ":"); got != want {
		t.Errorf("interfaces inside with host network: %d, host has %d", got, want)
	}
	if _, _, code := run(t, sb, "sh", "-c", "touch /sys/x"); code == 0 {
		t.Errorf("/sys is writable with host network")
	}
}

// A root of 121 layers, from a launcher that clones the init itself and
// from one that goes through the intermediate: as real root, the runtime
// sends the init a descriptor per layer, a chunk at a time, to a Passer
// socket numbered high above a gap the clone's child closes (see
// initTableFor); the layers stack in order either way.
func TestManyLayers(t *testing.T) {
	for _, via := range []bool{false, true} {
		t.Run(map[bool]string{false: "direct", true: "via"}[via], func(t *testing.T) {
			forceVia = via
			t.Cleanup(func() { forceVia = false })
			before := viaLaunches.Load()
			testManyLayers(t)
			if got := viaLaunches.Load() - before; got != map[bool]int64{false: 0, true: 1}[via] {
				t.Errorf("%d launches through the intermediate", got)
			}
		})
	}
}

func TestPasserAt(t *testing.T) {
	for _, c := range []struct {
		n, passed int
		limit     uint64
		want      int
	}{
		{12, 4, 1024, 12},  // fits the 64 a table starts with: in order
		{12, 53, 1024, 97}, // above what the init will hold
		{12, 53, 80, 79},   // but below the descriptor limit
		{12, 53, 10, 12},   // never below its own place
		{12, 125, 1 << 40, 169},
	} {
		if got := passerAt(c.n, c.passed, c.limit); got != c.want {
			t.Errorf("passerAt(%d, %d, %d) = %d, want %d", c.n, c.passed, c.limit, got, c.want)
		}
	}
}

func testManyLayers(t *testing.T) {
	e := newEnv(t)
	layers := []string{e.rootfs}
	base := t.TempDir()
	for i := range 120 {
		d := filepath.Join(base, fmt.Sprintf("a-rather-long-layer-directory-name-%03d", i))
		if err := os.MkdirAll(filepath.Join(d, "layers"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "layers", strconv.Itoa(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "layers", "top"), []byte(strconv.Itoa(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		layers = append(layers, d)
	}
	spec := e.spec("layers")
	spec.Layers = layers
	sb := e.launch(t, spec)
	if got := strings.Fields(sh(t, sb, "ls /layers | wc -l; cat /layers/top")); len(got) != 2 || got[0] != "121" || got[1] != "119" {
		t.Errorf("121 files with the top layer's /layers/top = 119: got %v", got)
	}
}

// The launcher's own descriptors are close-on-exec, but one it inherited
// without the flag (as a shell or a CI runner leaves them) is open in the
// clone of the init: the init closes every descriptor its config does not
// name, so that no process of the sandbox holds it, PID 1 included (runc's
// CVE-2024-21626). Here the launcher holds a host directory so: seen from
// the host, the init does not have it open, nor does a command; the
// launcher's own descriptor is untouched.
func TestInheritedFDs(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	low, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Above the numbers the init's own descriptors take, which would
	// replace it in the clone; without close-on-exec.
	fd, err := unix.FcntlInt(uintptr(low), unix.F_DUPFD, 200)
	unix.Close(low)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	want, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	sb := e.launch(t, e.spec("fds"))
	cmd := sb.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Signal(unix.SIGKILL) // the sleep: its end is not what this test checks
		_ = cmd.Wait()               // killed above
	})
	pids := []int{sb.Pid()}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", sb.Pid())) // the spawner thread forks the commands
	for _, f := range tasks {
		kids, _ := os.ReadFile(f) // a thread that ended meanwhile has none
		for _, k := range strings.Fields(string(kids)) {
			if n, err := strconv.Atoi(k); err == nil {
				pids = append(pids, n)
			}
		}
	}
	if len(pids) < 2 {
		t.Fatalf("the command is not a child of the init %d", sb.Pid())
	}
	for _, pid := range pids {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, ent := range ents {
			if got, err := os.Stat(fmt.Sprintf("/proc/%d/fd/%s", pid, ent.Name())); err == nil && os.SameFile(got, want) {
				t.Errorf("process %d of the sandbox holds the launcher's inherited %s as fd %s", pid, dir, ent.Name())
			}
		}
	}
	if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC != 0 {
		t.Errorf("the launcher's fd %d after the launch: flags %#x, %v; want open, without close-on-exec", fd, flags, err)
	}
}

func TestFaults(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	for _, tc := range []struct {
		name   string
		mod    func(*Spec)
		target error
		msg    string
	}{
		{"relative target", func(s *Spec) { s.Mounts = []MountSpec{{Target: "work", Source: src}} }, nil, "not an absolute path"},
		{"dotdot target", func(s *Spec) { s.Mounts = []MountSpec{{Target: "/a/../../b", Source: src}} }, nil, "not a clean path"},
		{"target /proc", func(s *Spec) { s.Mounts = []MountSpec{{Target: "/proc", Source: src}} }, nil, "inside /proc"},
		{"target //proc/", func(s *Spec) { s.Mounts = []MountSpec{{Target: "//proc/", Source: src}} }, nil, "inside /proc"},
		{"target in /proc", func(s *Spec) { s.Mounts = []MountSpec{{Target: "/proc/sys", Source: src}} }, nil, "inside /proc"},
		{"NUL in env", func(s *Spec) { s.Env = []string{"A=x\x00y"} }, nil, "NUL"},
		{"NUL in command", func(s *Spec) { s.Command = []string{"echo", "x\x00y"} }, nil, "NUL"},
		{"missing source", func(s *Spec) { s.Mounts = []MountSpec{{Target: "/w", Source: filepath.Join(src, "nope")}} }, os.ErrNotExist, "source"},
		{"workdir is a file", func(s *Spec) { s.Workdir = "/etc/passwd" }, nil, "not a directory"},
		{"mount a dir over a file", func(s *Spec) { s.Mounts = []MountSpec{{Target: "/etc/passwd", Source: src}} }, nil, "not a directory"},
		{"invalid name", func(s *Spec) { s.Name = "../x" }, names.ErrInvalid, "invalid"},
		{"missing main command", func(s *Spec) { s.Command = []string{"no-such-cmd"} }, ErrCommandNotFound, "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := e.spec("fault")
			tc.mod(&spec)
			sb, err := e.m.Launch(t.Context(), spec)
			if err == nil {
				sb.Destroy(t.Context())
				t.Fatalf("Launch succeeded, want an error")
			}
			if tc.target != nil && !errors.Is(err, tc.target) {
				t.Errorf("Launch: %v, want errors.Is %v", err, tc.target)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Launch: %v, want it to say %q", err, tc.msg)
			}
			t.Logf("error: %v", err)
			checkNoMounts(t, e.root)
			if l, err := e.m.List(t.Context()); err != nil || len(l) != 0 {
				t.Errorf("List after a failed launch = %v, %v; want nothing", l, err)
			}
		})
	}
	t.Run("name taken", func(t *testing.T) {
		e.launch(t, e.spec("taken"))
		_, err := e.m.Launch(t.Context(), e.spec("taken"))
		if !errors.Is(err, errdefs.ErrExists) {
			t.Errorf("second Launch with a live name: %v, want ErrExists", err)
		}
	})
}

func TestUnwritableRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		testutil.RootlessOnly(t)
	}
	e := newEnv(t)
	if err := os.Chmod(e.root, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(e.root, 0o700)
	if _, err := e.m.Launch(t.Context(), e.spec("ro")); err == nil || !errors.Is(err, os.ErrPermission) {
		t.Errorf("Launch in an unwritable root: %v, want a permission error", err)
	}
}

// TestInitGroups: none of the init's threads keeps the launcher's
// supplementary groups (rootless, the test user's own group), so that
// neither the init nor a handover's new init (which takes the groups of
// whichever thread execs it) acts with them. Where setgroups(2) is denied
// in the sandbox's user namespace (a single-id map) the groups cannot be
// dropped, but every thread still has the same.
func TestInitGroups(t *testing.T) {
	e := newEnv(t)
	sb := e.launch(t, e.spec("groups"))
	sh(t, sb, "true") // the spawner's thread exists
	pid := sb.Pid()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	groups := map[string][]string{}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()))
		if err != nil {
			continue // the thread ended meanwhile
		}
		for _, l := range strings.Split(string(b), "\n") {
			if g, ok := strings.CutPrefix(l, "Groups:"); ok {
				g = strings.TrimSpace(g)
				groups[g] = append(groups[g], task.Name())
			}
		}
	}
	sg, err := os.ReadFile(fmt.Sprintf("/proc/%d/setgroups", pid))
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 1 {
		t.Fatalf("the init's threads have different supplementary groups: %v (group list: thread ids)", groups)
	}
	if strings.TrimSpace(string(sg)) == "allow" && groups[""] == nil {
		t.Errorf("the init's threads keep supplementary groups %v although setgroups is allowed", slices.Collect(maps.Keys(groups)))
	}
}

// TestDescriptorTables: a descriptor table that its threads share grows
// only after an RCU grace period (initTableFor), so a launch keeps both
// tables it touches within what they have. A sandbox launched for a warm
// pool has an init whose table already holds the most a Take passes (a
// take of 60 mounts waited 6-9 ms for it to grow, against the take's ~1
// ms); a plain launch's init stays at the kernel's first 64 slots; a
// launch with 100 binds leaves the launcher's own table at 64 (it held
// them all and grew it: ~9 ms a `lightbox run` with 30 binds). The
// launches run in a grandchild: a table is copied at its parent's highest
// open number at fork and kept across exec, and this test binary may have
// been given a high one; its child, whose high ones closed at its exec,
// forks a grandchild with a small table.
func TestDescriptorTables(t *testing.T) {
	testutil.RootOnly(t) // rootless, the init makes its binds and a take passes none (CanTakeMounts)
	switch os.Getenv("LIGHTBOX_TABLE_CHILD") {
	case "2":
		descriptorTablesChild(t)
		return
	case "":
		// What this process inherited without close-on-exec stays here.
		if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDescriptorTables$", "-test.v")
	level := "1"
	if os.Getenv("LIGHTBOX_TABLE_CHILD") == "1" {
		level = "2"
	}
	cmd.Env = append(os.Environ(), "LIGHTBOX_TABLE_CHILD="+level)
	out, err := cmd.CombinedOutput()
	if level == "2" {
		os.Stdout.Write(out)
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	sizes := map[string][2]int{}
	for _, line := range strings.Split(string(out), "\n") {
		var kind string
		var size, open int
		if n, _ := fmt.Sscanf(strings.TrimSpace(line), "table %s %d %d", &kind, &size, &open); n == 3 {
			sizes[kind] = [2]int{size, open}
		}
	}
	if len(sizes) != 3 {
		t.Fatalf("child's output has no table sizes:\n%s", out)
	}
	if p := sizes["plain"]; p[0] != 64 {
		t.Errorf("a plain launch's init has a table of %d slots (%d open), want the kernel's first 64", p[0], p[1])
	}
	if k := sizes["takeable"]; k[0] < k[1]+nsinit.MaxFDsPerMessage {
		t.Errorf("a takeable launch's init has a table of %d slots with %d open: a take of %d descriptors would grow it", k[0], k[1], nsinit.MaxFDsPerMessage)
	}
	if l := sizes["launcher"]; l[0] != 64 {
		t.Errorf("after a launch with 100 binds the launcher's table has %d slots (%d open), want 64: it held the binds at once", l[0], l[1])
	}
}

func descriptorTablesChild(t *testing.T) {
	e := newEnv(t)
	table := func(kind string, pid int) {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "FDSize:"); ok {
				fmt.Printf("table %s %s %d\n", kind, strings.TrimSpace(v), len(fds))
			}
		}
	}
	for _, kind := range []string{"plain", "takeable"} {
		spec := e.spec("")
		spec.Takeable = kind == "takeable"
		table(kind, e.launch(t, spec).Pid())
	}
	spec := e.spec("")
	src := t.TempDir()
	for i := range 100 {
		d := filepath.Join(src, strconv.Itoa(i))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "f"), []byte(strconv.Itoa(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		spec.Mounts = append(spec.Mounts, MountSpec{Source: d, Target: "/m/" + strconv.Itoa(i), ReadOnly: i%2 == 0})
	}
	sb := e.launch(t, spec)
	table("launcher", os.Getpid())
	// Each bind is where it was asked for, read-only as asked.
	got := sh(t, sb, `for i in $(seq 0 99); do cat /m/$i/f; if touch /m/$i/g 2>/dev/null; then echo w; else echo r; fi; done`)
	var want strings.Builder
	for i := range 100 {
		want.WriteString(strconv.Itoa(i))
		if i%2 == 0 {
			want.WriteString("r\n")
		} else {
			want.WriteString("w\n")
		}
	}
	if got != want.String() {
		t.Errorf("the 100 binds, in the sandbox:\n%s\nwant\n%s", got, want.String())
	}
}
