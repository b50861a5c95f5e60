package vmtest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/testutil"
	"golang.org/x/sys/unix"
)

// GuestOnly skips t unless it runs inside a vmtest guest: such tests are
// run by a host-side test that boots the VM (a skip by design, like
// testutil.RootlessOnly; the host-side test fails in strict mode when it
// cannot boot).
func GuestOnly(t testing.TB) {
	t.Helper()
	if !InGuest() {
		t.Skip("runs inside the test VM (booted by its host-side test)")
	}
}

// Setup makes sure the host can boot guests: qemu and the extra programs
// named are installed (as root, with apt-get) and the kernel is in the
// cache. Without root and without the tools, t is skipped (a failure in
// strict mode).
func Setup(t testing.TB, programs ...string) *Kernel {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	programs = append([]string{"qemu-system-x86_64"}, programs...)
	if os.Geteuid() != 0 {
		for _, p := range programs {
			testutil.NeedTool(t, p)
		}
	}
	if err := EnsureTools(ctx, programs...); err != nil {
		t.Fatalf("vm test tools: %v", err)
	}
	start := time.Now()
	k, err := EnsureKernel(ctx)
	if err != nil {
		t.Fatalf("vm test kernel: %v", err)
	}
	t.Logf("kernel %s (%s, ready in %s)", k.Package, k.Vmlinuz, time.Since(start).Round(time.Millisecond))
	return k
}

// ImageDir returns a directory for a test's disk images, removed when
// the test ends: under /dev/shm when that is a tmpfs, else t.TempDir().
// On a tmpfs the guest's disk writes (QEMU writes the image with
// cache=unsafe) never wait for the host's own disk and its writeback:
// once, under the whole suite's load, a guest's NVMe write on an image in
// /tmp went unanswered for ~93 s and failed with EIO.
func ImageDir(t testing.TB) string {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp("/dev/shm", "lightbox-vmtest-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove the disk images: %v", err)
		}
	})
	return dir
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// rebuildArgs are the go command's arguments (before -o and the package)
// and the package that rebuild the binary bi describes: the package it
// tests, from its build info ("<import path>.test", else the working
// directory's), and its build tags (e.g. lightbox_noleaninit), so that
// the guest runs what the host's go test was asked to test.
func rebuildArgs(bi *debug.BuildInfo) (args []string, pkg string) {
	args, pkg = []string{"test", "-c"}, "."
	if bi == nil {
		return args, pkg
	}
	if p, ok := strings.CutSuffix(bi.Path, ".test"); ok {
		pkg = p
	}
	for _, s := range bi.Settings {
		if s.Key == "-tags" && s.Value != "" {
			args = append(args, "-tags="+s.Value)
		}
	}
	return args, pkg
}

// TestBinary returns a static copy of the running test binary to boot as
// the guest's init: the binary itself when it is statically linked (the
// usual case with CGO_ENABLED=0), else a fresh `go test -c` of the same
// package with CGO_ENABLED=0 and the same build tags (from within the
// module).
func TestBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		self, err := os.Executable()
		if err != nil {
			binErr = err
			return
		}
		if checkStatic(self) == nil {
			binPath = self
			return
		}
		bi, _ := debug.ReadBuildInfo() // nil without: the working directory's package, no tags
		args, pkg := rebuildArgs(bi)
		// Built into the cache (one binary per package, replaced by
		// rename), so nothing is left behind in /tmp.
		bindir := filepath.Join(CacheDir(), "bin")
		if err := os.MkdirAll(bindir, 0o755); err != nil {
			binErr = err
			return
		}
		tmp, err := os.MkdirTemp(bindir, ".build-")
		if err != nil {
			binErr = err
			return
		}
		defer func() { _ = os.RemoveAll(tmp) }() // best effort: a left scratch dir is litter only
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = "/usr/local/go/bin/go"
		}
		built := filepath.Join(tmp, "guest.test")
		cmd := exec.Command(goBin, append(args, "-o", built, pkg)...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			binErr = errors.New("go test -c (static): " + err.Error() + ": " + string(bytes.TrimSpace(b)))
			return
		}
		out := filepath.Join(bindir, strings.ReplaceAll(pkg, "/", "_")+".test")
		if err := os.Rename(built, out); err != nil {
			binErr = err
			return
		}
		binPath = out
	})
	if binErr != nil {
		t.Fatalf("vm test binary: %v", binErr)
	}
	return binPath
}

// Boot boots cfg (Kernel and Binary are filled in when empty: Setup's
// kernel and TestBinary) and fails t unless the guest program exits 0.
// The guest's console is logged line by line as it arrives (shown by
// go test -v, or when t fails).
func Boot(t testing.TB, cfg Config) *Result {
	t.Helper()
	if cfg.Kernel == nil {
		cfg.Kernel = Setup(t)
	}
	if cfg.Binary == "" {
		cfg.Binary = TestBinary(t)
	}
	lw := &lineLogger{t: t}
	cfg.Console = lw
	res, err := Run(t.Context(), cfg)
	lw.flush()
	if err != nil {
		var ge *GuestError
		if errors.As(err, &ge) {
			t.Fatalf("vm guest: %s (its console is logged above)", ge.Reason)
		}
		t.Fatalf("vm: %v", err)
	}
	t.Logf("guest exited %d after %s (boot, setup and run)", res.ExitCode, res.Elapsed.Round(time.Millisecond))
	if res.ExitCode != 0 {
		t.Fatalf("guest program (%s) exited %d; its console is logged above", strings.Join(cfg.Args, " "), res.ExitCode)
	}
	return res
}

// lineLogger sends whole lines to t.Log.
type lineLogger struct {
	t   testing.TB
	mu  sync.Mutex
	buf []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.t.Log("guest| " + printable(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.t.Log("guest| " + printable(l.buf))
		l.buf = nil
	}
}

var ansiRe = regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|c)`)

// printable drops the terminal control sequences the firmware writes to
// the serial console, and carriage returns.
func printable(b []byte) string {
	return strings.ReplaceAll(ansiRe.ReplaceAllString(string(b), ""), "\r", "")
}
