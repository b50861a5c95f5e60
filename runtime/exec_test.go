//go:build linux

package runtime

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/beamhop/lightbox/internal/testutil"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

func TestMounts(t *testing.T) {
	e := newEnv(t)
	rw, ro := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(ro, "f"), []byte("ro-content"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "single")
	if err := os.WriteFile(file, []byte("file-content"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A symlink in the image that points at a host path: a target
	// through it must stay inside the root.
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.Symlink(outside, filepath.Join(e.rootfs, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../..", filepath.Join(e.rootfs, "up")); err != nil {
		t.Fatal(err)
	}
	spec := e.spec("mounts")
	spec.Mounts = []MountSpec{
		{Target: "/work", Source: rw},
		{Target: "/deep/ly/nested", Source: ro, ReadOnly: true},
		{Target: "/etc/single", Source: file},
		{Target: "/escape/x", Source: rw},
		{Target: "/up/tmp/y", Source: rw},
	}
	sb := e.launch(t, spec)
	sh(t, sb, "echo inside > /work/new")
	if b, err := os.ReadFile(filepath.Join(rw, "new")); err != nil || string(b) != "inside\n" {
		t.Errorf("file written in a rw bind: %q, %v", b, err)
	}
	if got := sh(t, sb, "cat /deep/ly/nested/f /etc/single"); got != "ro-contentfile-content" {
		t.Errorf("ro and file binds read %q", got)
	}
	if _, errs, code := run(t, sb, "sh", "-c", "echo x > /deep/ly/nested/g"); code == 0 {
		t.Errorf("write to a read-only mount succeeded")
	} else if !strings.Contains(errs, "Read-only") {
		t.Errorf("write to a read-only mount: %q, want a read-only file system error", errs)
	}
	if _, err := os.Lstat(outside); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a mount target through a symlink reached the host: %v", err)
	}
	sh(t, sb, "test -f /tmp/outside/x/new || test -f $(readlink /escape)/x/new")
	sh(t, sb, "test -f /tmp/y/new")
}

func TestReadOnlyRecursive(t *testing.T) {
	testutil.RootOnly(t)
	e := newEnv(t)
	src := t.TempDir()
	sub := filepath.Join(src, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "tmpfs", sub).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	defer exec.Command("umount", "-l", sub).Run()
	spec := e.spec("rorec")
	spec.Mounts = []MountSpec{{Target: "/data", Source: src, ReadOnly: true}}
	sb := e.launch(t, spec)
	if _, _, code := run(t, sb, "sh", "-c", "echo x > /data/sub/f"); code == 0 {
		t.Errorf("write to a submount of a read-only mount succeeded")
	}
	if _, err := os.Stat(filepath.Join(sub, "f")); err == nil {
		t.Errorf("file appeared on the host")
	}
}

func TestUserEnvWorkdir(t *testing.T) {
	e := newEnv(t)
	if e.m.mapping.Single() {
		testutil.Need(t, false, "needs a subordinate id range (uid 1000 inside)")
	}
	spec := e.spec("user")
	spec.Env = append(spec.Env, "A=spec", "B=spec")
	spec.Workdir = "/made/by/init"
	spec.User = "1000"
	sb := e.launch(t, spec)
	if got := sh(t, sb, "id -u; id -g; pwd; echo $A $B $HOME"); got != "1000\n1000\n/made/by/init\nspec spec /home/user\n" {
		t.Errorf("spec user, workdir, env: %q", got)
	}
	c := sb.Command("sh", "-c", "id -u; pwd; echo $A $B")
	c.User, c.Dir, c.Env = "root", "/tmp", []string{"B=cmd"}
	out, err := c.Output()
	if err != nil || string(out) != "0\n/tmp\nspec cmd\n" {
		t.Errorf("per-command user, dir, env: %q, %v", out, err)
	}
	c = sb.Command("id", "-u")
	c.User = "nosuchuser"
	if err := c.Run(); err == nil || !strings.Contains(err.Error(), "nosuchuser") {
		t.Errorf("unknown user: %v", err)
	}
	c = sb.Command("true")
	c.Dir = "/etc/passwd"
	if err := c.Run(); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("dir that is a file: %v", err)
	}
}

// TestExecNUL: a command whose argument, environment, directory or user
// holds a NUL byte (which execve cannot pass) is refused with an error
// that says so, not the bare "invalid argument" of the init's execve; so
// are a relative Dir and a malformed environment entry.
func TestExecNUL(t *testing.T) {
	e := newEnv(t)
	sb := e.launch(t, e.spec("nul"))
	for what, mod := range map[string]func(c *Cmd){
		"arg":  func(c *Cmd) { c.Args = []string{"a\x00b"} },
		"path": func(c *Cmd) { c.Path = "ech\x00o" },
		"env":  func(c *Cmd) { c.Env = []string{"A=a\x00b"} },
		"dir":  func(c *Cmd) { c.Dir = "/tmp\x00" },
		"user": func(c *Cmd) { c.User = "root\x00" },
	} {
		c := sb.Command("echo")
		mod(c)
		if err := c.Run(); err == nil || !strings.Contains(err.Error(), "NUL") {
			t.Errorf("a command with a NUL byte in its %s: %v, want an error that says NUL", what, err)
		}
	}
	// The rules Spec.Validate has for the sandbox's own: a relative Dir
	// ran in "/" whatever the sandbox's workdir; an entry with no "="
	// or no key went through.
	for what, tc := range map[string]struct {
		mod func(c *Cmd)
		msg string
	}{
		"relative dir":      {func(c *Cmd) { c.Dir = "tmp" }, "not an absolute path"},
		"dot dir":           {func(c *Cmd) { c.Dir = "." }, "not an absolute path"},
		"entry with no =":   {func(c *Cmd) { c.Env = []string{"NOEQ"} }, "want KEY=value"},
		"entry with no key": {func(c *Cmd) { c.Env = []string{"=x"} }, "want KEY=value"},
	} {
		c := sb.Command("pwd")
		tc.mod(c)
		if err := c.Run(); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("a command with a %s: %v, want an error that says %q", what, err, tc.msg)
		}
	}
	if got := sh(t, sb, "echo ok"); got != "ok\n" {
		t.Errorf("the sandbox after those: %q", got)
	}
}

// TestSignalAfterExit: signalling a command that has exited returns
// os.ErrProcessDone, as os.Process.Signal does (it was "write unixpacket
// @: use of closed network connection").
func TestSignalAfterExit(t *testing.T) {
	e := newEnv(t)
	sb := e.launch(t, e.spec("sigdone"))
	c := sb.Command("true")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Signal(unix.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Signal after Wait = %v, want os.ErrProcessDone", err)
	}
}

// failingWriter accepts n writes and fails the rest.
type failingWriter struct{ n int }

var errWriterFull = errors.New("writer full")

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n == 0 {
		return 0, errWriterFull
	}
	w.n--
	return len(p), nil
}

// TestFailingWriter: when the writer a command's output is copied into
// fails, the command's further writes fail (as with os/exec) and Wait
// returns; it waited until the context ended, the command blocked on a
// full pipe nobody read, with a terminal too.
func TestFailingWriter(t *testing.T) {
	e := newEnv(t)
	sb := e.launch(t, e.spec("failw"))
	for _, tty := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		c := sb.CommandContext(ctx, "yes")
		c.Stdout, c.Tty = &failingWriter{n: 2}, tty
		err := c.Run()
		cancel()
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("yes into a writer that fails (tty %v) = %v, want it to end with an error before its context", tty, err)
		}
	}
}

// TestFailingStdin: when the reader a command's Stdin comes from fails,
// the command sees its input end, and Wait returns the reader's error
// even though the command exited 0 (as os/exec): it returned nil, and
// `cat > file` of a failed upload passed for a whole file.
func TestFailingStdin(t *testing.T) {
	e := newEnv(t)
	sb := e.launch(t, e.spec("failr"))
	c := sb.Command("cat")
	var out strings.Builder
	c.Stdin = io.MultiReader(strings.NewReader("partial"), iotest.ErrReader(errWriterFull))
	c.Stdout = &out
	if err := c.Run(); !errors.Is(err, errWriterFull) {
		t.Errorf("cat from a reader that fails after %q = %v, want the reader's error", out.String(), err)
	}
	// A command that does not read its input loses nothing.
	c = sb.Command("true")
	c.Stdin = io.MultiReader(bytes.NewReader(make([]byte, 1<<20)), iotest.ErrReader(errWriterFull))
	if err := c.Run(); err != nil {
		t.Errorf("true with a large stdin: %v", err)
	}
}

// TestLargeArgs: a command takes as many arguments and as much
// environment as execve does (the request grows past a packet: it went
// in one, and ~180 kB of arguments failed "message too long"), both as a
// sandbox's main command and as an exec; past execve's limit the error is
// execve's own.
func TestLargeArgs(t *testing.T) {
	e := newEnv(t)
	args := []string{"-c", `echo $# ${#BIG}`, "sh"}
	for i := range 60000 {
		args = append(args, "argument"+strconv.Itoa(i)) // ~800 kB
	}
	big := "BIG=" + strings.Repeat("x", 100<<10)
	want := "60000 102400\n"
	spec := e.spec("")
	spec.Command = append([]string{"sh"}, args...)
	spec.Env = append(spec.Env, big)
	var out bytes.Buffer
	spec.Stdout = &out
	sb := e.launch(t, spec)
	if code, err := sb.Wait(t.Context()); err != nil || code != 0 || out.String() != want {
		t.Errorf("main command with %d arguments: %q, exit %d, %v; want %q", len(args), out.String(), code, err, want)
	}
	sb = e.launch(t, e.spec(""))
	c := sb.Command("sh", args...)
	c.Env = []string{big}
	if got, err := c.Output(); err != nil || string(got) != want {
		t.Errorf("exec with %d arguments: %q, %v; want %q", len(args), got, err, want)
	}
	for range 4 {
		args = append(args, args[3:]...) // ~13 MB: past any execve's limit, and past MaxRequest
	}
	if err := sb.Command("sh", args[:len(args)/3]...).Run(); err == nil || !strings.Contains(err.Error(), "argument list too long") {
		t.Errorf("exec past execve's limit: %v, want argument list too long", err)
	}
	if err := sb.Command("sh", args...).Run(); err == nil || !strings.Contains(err.Error(), "exceed") {
		t.Errorf("exec past MaxRequest: %v, want a refusal", err)
	}
}

func TestStreamsAndCancel(t *testing.T) {
	e := newEnv(t)
	sb := e.launch(t, e.spec("streams"))
	in := strings.Repeat("0123456789", 100000)
	c := sb.Command("sh", "-c", "cat; cat >&2")
	c.Stdin = strings.NewReader(in)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	if out.String() != in || errb.Len() != 0 {
		t.Errorf("stdin through cat: %d bytes out, %d err; want %d, 0", out.Len(), errb.Len(), len(in))
	}
	// Streaming: the first line arrives while the command still runs.
	c = sb.Command("sh", "-c", "echo first; read x; echo second $x")
	pr, pw := io.Pipe()
	c.Stdin = pr
	outR, outW := io.Pipe()
	c.Stdout = outW
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(outR, buf); err != nil || string(buf) != "first\n" {
		t.Fatalf("first line: %q, %v", buf, err)
	}
	go io.Copy(io.Discard, outR)
	pw.Write([]byte("go\n"))
	pw.Close()
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	// Cancelling the context kills the command.
	ctx, cancel := context.WithCancel(t.Context())
	c = sb.CommandContext(ctx, "sleep", "100")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cancel()
	err := c.Wait()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Wait after cancel: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("cancelled sleep took %v", d)
	}
	if got := sh(t, sb, "ps -o comm | grep -c sleep || true"); strings.TrimSpace(got) != "0" {
		t.Errorf("sleep still running after cancel: %q", got)
	}
	// Signals are delivered and reported.
	c = sb.Command("sleep", "100")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	c.Signal(15)
	var ee *ExitError
	if err := c.Wait(); !errors.As(err, &ee) || ee.Signal != 15 || ExitCode(err) != 143 {
		t.Errorf("SIGTERMed sleep: %v, want signal 15 (143)", err)
	}
}

// TestCancelKillsGroup: the end of a command's context kills what the
// command started too (a job in the background, the command a shell
// runs), not only its own process: they would run on unseen, and hold
// its stdout so that Wait, and an API request's answer, never came.
func TestCancelKillsGroup(t *testing.T) {
	e := newEnv(t)
	sb := e.launch(t, e.spec("cancelgroup"))
	count := func() string {
		return strings.TrimSpace(sh(t, sb, "ps -o args | grep -c '^sleep 100[12]' || true"))
	}
	ctx, cancel := context.WithCancel(t.Context())
	c := sb.CommandContext(ctx, "sh", "-c", "sleep 1001 & sleep 1002; echo never")
	var out bytes.Buffer
	c.Stdout = &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both sleeps to start", func() bool { return count() == "2" })
	cancel()
	waited := make(chan error, 1)
	go func() { waited <- c.Wait() }()
	select {
	case err := <-waited:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Wait after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(time.Minute):
		t.Fatalf("Wait still waiting a minute after cancel; sleeps running: %s", count())
	}
	waitFor(t, "the cancelled shell's sleeps to be killed", func() bool { return count() == "0" })

	// A process that left the group (its own session) is out of reach,
	// but must not keep Wait waiting for its end.
	ctx, cancel = context.WithCancel(t.Context())
	c = sb.CommandContext(ctx, "sh", "-c", "setsid sleep 1001 & sleep 1002")
	c.Stdout = &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both sleeps to start", func() bool { return count() == "2" })
	cancel()
	go func() { waited <- c.Wait() }()
	select {
	case err := <-waited:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Wait after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Wait still waiting a minute after cancel: a process in a session of its own holds its stdout")
	}
}

// TestStdioBlocking: a command's streams are blocking, as a program
// expects of its stdio (a non-blocking stdout fails a write with EAGAIN
// once the pipe is full), whether they are pipes the client copies or
// files the caller gave.
func TestStdioBlocking(t *testing.T) {
	e := newEnv(t)
	sb := e.launch(t, e.spec("stdio"))
	file, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for _, tc := range []struct {
		name   string
		stdin  io.Reader
		stderr io.Writer
	}{
		{"pipes", strings.NewReader("in"), &bytes.Buffer{}},
		{"files", nil, file},
	} {
		c := sb.CommandContext(t.Context(), "cat", "/proc/self/fdinfo/0", "/proc/self/fdinfo/1", "/proc/self/fdinfo/2")
		var out bytes.Buffer
		c.Stdin, c.Stdout, c.Stderr = tc.stdin, &out, tc.stderr
		if err := c.Run(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		n := 0
		for _, line := range strings.Split(out.String(), "\n") {
			v, ok := strings.CutPrefix(line, "flags:")
			if !ok {
				continue
			}
			n++
			flags, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil {
				t.Fatalf("%s: fdinfo line %q: %v", tc.name, line, err)
			}
			if flags&unix.O_NONBLOCK != 0 {
				t.Errorf("%s: stream %d of the command has flags %#o: O_NONBLOCK set", tc.name, n-1, flags)
			}
		}
		if n != 3 {
			t.Errorf("%s: %d flags lines in fdinfo, want 3:\n%s", tc.name, n, out.String())
		}
	}
}

// TestTtyJobLeftBehind: a terminal command that leaves a job holding
// its terminal is answered (after WaitDelay) with its pty master closed.
// The master came from the init in blocking mode, so the relay's read
// held it open (and the relay's goroutine, writing to Stdout after Wait
// returned) until the job ended.
func TestTtyJobLeftBehind(t *testing.T) {
	e := newEnv(t)
	sb := e.launch(t, e.spec("ttyjob"))
	before := ptyMasters(t)
	c := sb.Command("sh", "-c", `trap "" HUP; sleep 60 & read x; echo done`)
	c.Tty = true
	pr, pw := io.Pipe()
	defer pw.Close()
	c.Stdin = pr
	c.Stdout = &bytesBuffer{}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.Resize(40, 120); err != nil {
		t.Fatal(err)
	}
	if _, err := pw.Write([]byte("\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	if after := ptyMasters(t); after != before {
		t.Errorf("%d pty masters open after Wait, %d before: the terminal's master stayed open while a job held it", after, before)
	}
}

// ptyMasters counts this process's descriptors of pty masters.
func ptyMasters(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasSuffix(l, "ptmx") {
			n++
		}
	}
	return n
}

func TestTty(t *testing.T) {
	e := newEnv(t)
	sb := e.launch(t, e.spec("tty"))
	c := sb.Command("sh", "-c", "tty; stty size; test -t 0 && echo interactive; echo TERM=$TERM")
	c.Tty, c.TtySize = true, [2]uint16{33, 101}
	var out bytes.Buffer
	c.Stdout = &out
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	got := strings.ReplaceAll(out.String(), "\r", "")
	if !strings.HasPrefix(got, "/dev/pts/") || !strings.Contains(got, "33 101\n") || !strings.Contains(got, "interactive") {
		t.Errorf("tty output %q: want a /dev/pts tty of 33x101", got)
	}
	// On a terminal TERM defaults to xterm, as docker and podman set it;
	// the caller's own TERM stays, and without a terminal there is none.
	if !strings.Contains(got, "TERM=xterm\n") {
		t.Errorf("tty output %q: want TERM=xterm", got)
	}
	for _, tc := range []struct {
		tty  bool
		env  []string
		want string
	}{{true, []string{"TERM=vt100"}, "vt100"}, {false, nil, ""}} {
		c := sb.Command("sh", "-c", "echo $TERM")
		c.Tty, c.Env = tc.tty, tc.env
		out.Reset()
		c.Stdout = &out
		if err := c.Run(); err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(out.String()); got != tc.want {
			t.Errorf("Tty %v, Env %q: TERM=%q, want %q", tc.tty, tc.env, got, tc.want)
		}
	}
	// Resize reaches a running command.
	c = sb.Command("sh", "-c", "read x; stty size")
	c.Tty = true
	pr, pw := io.Pipe()
	c.Stdin = pr
	out.Reset()
	outBuf := &bytesBuffer{}
	c.Stdout = outBuf
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.Resize(40, 120); err != nil {
		t.Fatal(err)
	}
	pw.Write([]byte("\n"))
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if !strings.Contains(string(outBuf.Bytes()), "40 120") {
		t.Errorf("after Resize: %q, want 40 120", outBuf.Bytes())
	}
}

// TestVolatileOverlays: a sandbox's root and its copy-on-write mounts are
// volatile overlays (their writes are thrown away with the sandbox, so
// their unmount does not sync the store's whole filesystem), and what
// the sandbox writes there still reads back, fsync included.
func TestVolatileOverlays(t *testing.T) {
	e := newEnv(t)
	lower := t.TempDir()
	spec := e.spec("volatile")
	spec.Mounts = []MountSpec{{Target: "/cow", Source: lower, Overlay: true}}
	sb := e.launch(t, spec)
	sh(t, sb, "echo a > /f && echo b > /cow/g && sync")
	if got := sh(t, sb, "cat /f /cow/g"); got != "a\nb\n" {
		t.Errorf("read back %q", got)
	}
	ms, err := mountinfo.GetMountsFromReader(strings.NewReader(sh(t, sb, "cat /proc/self/mountinfo")), nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range ms {
		if m.Mountpoint != "/" && m.Mountpoint != "/cow" || m.FSType != "overlay" {
			continue
		}
		seen[m.Mountpoint] = true
		// "volatile" up to Linux 6.5, "fsync=volatile" since.
		if !slices.ContainsFunc(strings.Split(m.VFSOptions, ","), func(o string) bool { return o == "volatile" || o == "fsync=volatile" }) {
			t.Errorf("%s: overlay options %q: not volatile", m.Mountpoint, m.VFSOptions)
		}
	}
	if !seen["/"] || !seen["/cow"] {
		t.Errorf("overlays found in the sandbox's mountinfo: %v, want / and /cow", seen)
	}
	if ents, err := os.ReadDir(lower); err != nil || len(ents) != 0 {
		t.Errorf("the copy-on-write lower dir holds %v (%v): the sandbox's writes reached it", ents, err)
	}
}

// The user namespace an idmapped bind is made with (a fork of the
// launcher) is made once per owner and kept by the Manager: a second
// sandbox binding the same owner's directory reuses it, and sees the same
// ids; another owner gets its own.
func TestIdmapUsernsKept(t *testing.T) {
	e := newRangeEnv(t, 1)
	dirs := make([]string, 3)
	for i, owner := range []int{1234, 1234, 4321} {
		dirs[i] = t.TempDir()
		if err := os.WriteFile(filepath.Join(dirs[i], "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{dirs[i], filepath.Join(dirs[i], "f")} {
			if err := os.Chown(p, owner, owner); err != nil {
				t.Fatal(err)
			}
		}
	}
	kept := func() int {
		e.m.usernsMu.Lock()
		defer e.m.usernsMu.Unlock()
		return len(e.m.userns)
	}
	for i, want := range []int{1, 1, 2} {
		spec := e.spec("idmap" + strconv.Itoa(i))
		spec.Mounts = []MountSpec{{Target: "/work", Source: dirs[i]}}
		sb := e.launch(t, spec)
		if got := sh(t, sb, "stat -c %u:%g /work/f"); got != "0:0\n" {
			t.Errorf("sandbox %d: /work/f owned by %q inside, want 0:0 (its owner shown as root)", i, got)
		}
		if n := kept(); n != want {
			t.Errorf("after sandbox %d: %d user namespaces kept, want %d", i, n, want)
		}
	}
}
