//go:build linux

package vmtest

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/testutil"
	"golang.org/x/sys/unix"
)

func init() { GuestMain() }

func TestCpioNewc(t *testing.T) {
	var b bytes.Buffer
	err := writeCpio(&b, []cpioEntry{
		{Name: "init", Mode: sIFREG | 0o755, Data: []byte("hi")},
		{Name: "/dev/", Mode: sIFDIR | 0o755},
	})
	if err != nil {
		t.Fatal(err)
	}
	// "dev" sorts before "init"; each header is 110 bytes, the name is
	// NUL-terminated and padded to 4, and so is the data.
	want := "070701" + "00000001" + "000041ED" + "00000000" + "00000000" + "00000002" + "00000000" +
		"00000000" + "00000000" + "00000000" + "00000000" + "00000000" + "00000004" + "00000000" + "dev\x00" +
		"070701" + "00000002" + "000081ED" + "00000000" + "00000000" + "00000001" + "00000000" +
		"00000002" + "00000000" + "00000000" + "00000000" + "00000000" + "00000005" + "00000000" + "init\x00\x00" + "hi\x00\x00" +
		"070701" + "00000000" + "00000000" + "00000000" + "00000000" + "00000001" + "00000000" +
		"00000000" + "00000000" + "00000000" + "00000000" + "00000000" + "0000000B" + "00000000" + "TRAILER!!!\x00\x00\x00\x00"
	// Offsets: 110+4 = 114, padded to 116; 116+110+5 = 231, padded to 232;
	// +2 = 234, padded to 236; 236+110+11 = 357, padded to 360.
	want = strings.Replace(want, "dev\x00", "dev\x00\x00\x00", 1)
	if got := b.String(); got != want {
		t.Errorf("writeCpio =\n%s\nwant\n%s", hex.Dump(b.Bytes()), hex.Dump([]byte(want)))
	}
	if b.Len()%4 != 0 {
		t.Errorf("archive length %d, want a multiple of 4", b.Len())
	}
}

func TestStripModuleSignature(t *testing.T) {
	body := []byte("\x7fELF module body")
	sig := []byte("SIGNATURE-BYTES")
	trailer := make([]byte, 12)
	trailer[11] = byte(len(sig)) // big-endian sig_len in the last 4 bytes
	signed := append(append(append(append([]byte{}, body...), sig...), trailer...), moduleSigMagic...)
	if got := stripModuleSignature(signed); !bytes.Equal(got, body) {
		t.Errorf("stripModuleSignature(signed) = %q, want %q", got, body)
	}
	if got := stripModuleSignature(body); !bytes.Equal(got, body) {
		t.Errorf("stripModuleSignature(unsigned) = %q, want it unchanged", got)
	}
}

func TestParseResult(t *testing.T) {
	for _, tc := range []struct {
		in   string
		code int
		ok   bool
	}{
		{"boot\n" + resultMarker + "0\n", 0, true},
		{"x\n" + resultMarker + "3\nmore", 3, true},
		{"echo " + resultMarker + "0\n", 0, false}, // not at line start
		{"no marker", 0, false},
	} {
		code, ok := parseResult(tc.in)
		if code != tc.code || ok != tc.ok {
			t.Errorf("parseResult(%q) = %d, %v; want %d, %v", tc.in, code, ok, tc.code, tc.ok)
		}
	}
}

// TestVM boots this package's test binary: the guest runs
// TestGuestChecks (the guest's environment is what the package doc
// promises) and TestGuestFails (which fails on purpose), so one boot shows
// both that a guest works and that its failure reaches the host with its
// log. A second boot hangs and must end in a timeout error.
func TestVM(t *testing.T) {
	testutil.RootOnly(t)
	k := Setup(t, "mkfs.xfs")
	img := filepath.Join(ImageDir(t), "xfs.img")
	if err := MakeXFSImage(t.Context(), img, 320<<20); err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(img, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Errorf("the disk image %s: statfs %#x, %v; want it on a tmpfs (this host's /dev/shm)", img, st.Type, err)
	}
	bin := TestBinary(t)

	t.Run("result", func(t *testing.T) {
		var console bytes.Buffer
		hello := filepath.Join(t.TempDir(), "hello")
		if err := os.WriteFile(hello, []byte("hello from the host\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		res, err := Run(t.Context(), Config{
			Files:   []File{{Host: hello, Guest: "/opt/vmtest/hello.txt", Mode: 0o640}},
			Kernel:  k,
			Binary:  bin,
			Args:    []string{"-test.run=^TestGuest(Checks|Fails)$", "-test.v"},
			Env:     []string{"VMTEST_WANT_FAIL=1"},
			Modules: []string{"xfs"},
			Disks:   []Disk{{Name: "scratch", Image: img, FSType: "xfs", Options: "prjquota"}},
			Console: &console,
			Timeout: 2 * time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("boot to result: %s", res.Elapsed.Round(time.Millisecond))
		if res.Console != strings.ReplaceAll(console.String(), "\r\n", "\n") {
			t.Errorf("Result.Console differs from what Config.Console received")
		}
		for _, want := range []string{"--- PASS: TestGuestChecks", "--- FAIL: TestGuestFails", "failing on purpose"} {
			if !strings.Contains(res.Console, want) {
				t.Errorf("guest console lacks %q:\n%s", want, res.Console)
			}
		}
		if res.ExitCode != 1 {
			t.Errorf("guest exit code = %d, want 1 (one test failed)", res.ExitCode)
		}
	})

	t.Run("hang", func(t *testing.T) {
		_, err := Run(t.Context(), Config{
			Kernel:  k,
			Binary:  bin,
			Args:    []string{"-test.run=^TestGuestHangs$", "-test.v"},
			Env:     []string{"VMTEST_WANT_HANG=1"},
			Timeout: 30 * time.Second,
		})
		ge, ok := err.(*GuestError)
		if !ok {
			t.Fatalf("Run of a hanging guest = %v, want a *GuestError", err)
		}
		// Usually the guest got as far as the test; on a loaded machine
		// it may still be booting. Either way its log comes along.
		if !strings.Contains(ge.Reason, "timeout") || !strings.Contains(ge.Console, "SeaBIOS") {
			t.Errorf("GuestError = %q with console:\n%s\nwant a timeout with the guest's log", ge.Reason, ge.Console)
		}
		if !strings.Contains(ge.Console, "=== RUN   TestGuestHangs") {
			t.Logf("the guest had not reached TestGuestHangs after 30 s (a loaded machine?)")
		}
	})
}

func TestGuestChecks(t *testing.T) {
	GuestOnly(t)
	if os.Getpid() == 1 {
		t.Errorf("tests run as PID 1, want a child of the init")
	}
	var st unix.Statfs_t
	for path, magic := range map[string]int64{
		"/proc": unix.PROC_SUPER_MAGIC, "/sys": unix.SYSFS_MAGIC,
		"/sys/fs/cgroup": unix.CGROUP2_SUPER_MAGIC, "/tmp": unix.TMPFS_MAGIC,
		MountPoint("scratch"): unix.XFS_SUPER_MAGIC,
	} {
		if err := unix.Statfs(path, &st); err != nil {
			t.Errorf("statfs %s: %v", path, err)
		} else if st.Type != magic {
			t.Errorf("statfs %s: type %#x, want %#x", path, st.Type, magic)
		}
	}
	mounts, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mounts), MountPoint("scratch")+" xfs rw") || !strings.Contains(string(mounts), "prjquota") {
		t.Errorf("/proc/mounts lacks the scratch disk with prjquota:\n%s", mounts)
	}
	// A late NVMe answer from a busy host is waited for (host_linux.go).
	if b, err := os.ReadFile("/sys/module/nvme_core/parameters/io_timeout"); err != nil || strings.TrimSpace(string(b)) != "180" {
		t.Errorf("nvme_core io_timeout: %q, %v; want 180", b, err)
	}
	if fi, err := os.Stat("/opt/vmtest/hello.txt"); err != nil || fi.Mode() != 0o640 {
		t.Errorf("Config.Files entry in the guest: %v, %v; want mode 0640", fi, err)
	} else if b, _ := os.ReadFile("/opt/vmtest/hello.txt"); string(b) != "hello from the host\n" {
		t.Errorf("Config.Files entry holds %q", b)
	}
	if d := t.TempDir(); !strings.HasPrefix(d, "/tmp/") {
		t.Errorf("t.TempDir() = %s, want it under /tmp", d)
	}
}

func TestGuestFails(t *testing.T) {
	GuestOnly(t)
	if os.Getenv("VMTEST_WANT_FAIL") != "1" {
		t.Skip("needs VMTEST_WANT_FAIL=1: fails on purpose only when TestVM asks")
	}
	t.Error("failing on purpose")
}

func TestGuestHangs(t *testing.T) {
	GuestOnly(t)
	if os.Getenv("VMTEST_WANT_HANG") != "1" {
		t.Skip("needs VMTEST_WANT_HANG=1: hangs on purpose only when TestVM asks")
	}
	// Blocked, not deadlocked (the runtime would end a select{} at once):
	// the host must time out.
	time.Sleep(24 * time.Hour)
}

// The guest's rebuilt binary is built with the host binary's tags: a
// `go test -tags lightbox_noleaninit` of a dynamically linked test binary
// once booted a guest built without them.
func TestRebuildArgs(t *testing.T) {
	for _, c := range []struct {
		bi   *debug.BuildInfo
		args string
		pkg  string
	}{
		{nil, "test -c", "."},
		{&debug.BuildInfo{Path: "github.com/beamhop/lightbox.test"}, "test -c", "github.com/beamhop/lightbox"},
		{&debug.BuildInfo{Path: "github.com/beamhop/lightbox.test", Settings: []debug.BuildSetting{{Key: "-tags", Value: "lightbox_noleaninit,x"}, {Key: "CGO_ENABLED", Value: "1"}}}, "test -c -tags=lightbox_noleaninit,x", "github.com/beamhop/lightbox"},
		{&debug.BuildInfo{Path: "command-line-arguments", Settings: []debug.BuildSetting{{Key: "-tags", Value: ""}}}, "test -c", "."},
	} {
		args, pkg := rebuildArgs(c.bi)
		if strings.Join(args, " ") != c.args || pkg != c.pkg {
			t.Errorf("rebuildArgs(%+v) = %q, %q; want %q, %q", c.bi, args, pkg, c.args, c.pkg)
		}
	}
}
