//go:build linux

package lightbox

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/initbin"
	"github.com/beamhop/lightbox/internal/testutil"
	"github.com/beamhop/lightbox/internal/vmtest"
	"github.com/beamhop/lightbox/overlay"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// What TestSandboxesInVM ships into the guest and attaches to it.
const (
	vmDisk    = "xfs"             // XFS mounted with prjquota: the store's root
	vmImages  = "/images/oci.tar" // oci-archive: tags "busybox" and "many"
	vmLayers  = 120               // layers of the "many" image
	vmQuotaMi = 16
)

// TestSandboxesInVM boots Debian's stock cloud kernel (Linux 6.1: XFS
// project quotas, and no fsconfig "lowerdir+" for overlayfs) with this
// test binary as init, an XFS disk mounted with prjquota and an
// oci-archive made here (a busybox image, and the same with 119 tiny
// layers on top), and runs the TestGuestSandbox* tests there through the
// public API: a sandbox writing past its volume's quota gets the kernel's
// ENOSPC while a neighbouring volume keeps working, and a 120-layer
// snapshot launches. One boot.
func TestSandboxesInVM(t *testing.T) {
	k, img := xfsGuestHost(t)
	layout := testutil.NewOCILayout(t)
	cfg := ispec.ImageConfig{Env: []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin"}}
	base := testutil.TarDir(t, testutil.BusyboxRootfs(t))
	testutil.AddOCIImage(t, layout, "busybox", cfg, base)
	layers := [][]byte{base}
	for i := 1; i < vmLayers; i++ {
		layers = append(layers, testutil.Tar(t,
			testutil.TarFile{Hdr: tar.Header{Name: "layers/", Typeflag: tar.TypeDir}},
			testutil.TarFile{Hdr: tar.Header{Name: fmt.Sprintf("layers/%03d", i)}, Body: fmt.Sprint(i)},
			testutil.TarFile{Hdr: tar.Header{Name: "etc/layer"}, Body: fmt.Sprint(i)},
		))
	}
	testutil.AddOCIImage(t, layout, "many", cfg, layers...)
	archive := filepath.Join(t.TempDir(), "oci.tar")
	testutil.OCIArchive(t, layout, archive)
	vmtest.Boot(t, vmtest.Config{
		Kernel:  k,
		Args:    []string{"-test.run=" + guestTests(), "-test.v", "-test.count=1"},
		Modules: []string{"xfs", "overlay"},
		Disks:   []vmtest.Disk{{Name: vmDisk, Image: img, FSType: "xfs", Options: "prjquota"}},
		Files:   []vmtest.File{{Host: archive, Guest: vmImages, Mode: 0o644}},
		Timeout: 8 * time.Minute, // TCG on a shared host: the cgroup tests alone take 1-3 minutes
	})
}

// xfsGuestHost is the host side's set-up of a test that boots the VM with
// a store on XFS (vmDisk): root only, the kernel and tools ready, and a
// new 320 MiB XFS image, whose path it returns.
func xfsGuestHost(t *testing.T) (*vmtest.Kernel, string) {
	t.Helper()
	testutil.RootOnly(t)
	if vmtest.InGuest() {
		t.Skip("needs the host: already inside the VM")
	}
	k := vmtest.Setup(t, "mkfs.xfs")
	img := filepath.Join(vmtest.ImageDir(t), "xfs.img")
	if err := vmtest.MakeXFSImage(t.Context(), img, 320<<20); err != nil {
		t.Fatal(err)
	}
	return k, img
}

// guestTests is the -test.run pattern of the guest's tests:
// $LIGHTBOX_GUEST_RUN (e.g. ^TestGuestSandboxCgroupV2 for the cgroup v2
// ones alone), else all of them.
func guestTests() string {
	if r := os.Getenv("LIGHTBOX_GUEST_RUN"); r != "" {
		return r
	}
	return "^TestGuestSandbox"
}

// guestMain is called by TestMain after Init (so a sandbox's init, PID 1
// of its own namespace, is never mistaken for the VM's): in the test VM
// this binary is PID 1, and GuestMain mounts the disk and runs the
// TestGuestSandbox* tests; elsewhere it returns at once.
func guestMain() {
	if root := os.Getenv(envGuestLauncher); root != "" && vmtest.InGuest() {
		os.Exit(guestLauncher(root, os.Getenv(envGuestLaunchName), os.Getenv(envGuestLaunchSnap)))
	}
	vmtest.GuestMain()
}

var leaveRootfsOnce = sync.OnceValue(leaveRootfs)

// leaveRootfs moves this guest process's root off the initramfs: the
// guest's / is the rootfs mount, which has no parent, and pivot_root(2)
// refuses (EINVAL) to move such a root away, so no sandbox could start
// (runc has the same limit). A recursive bind of / moved onto / and
// chrooted into is a mount with a parent; the sandbox inits inherit it.
// (Machines that boot a real root filesystem never meet this.)
func leaveRootfs() error {
	const dir = "/.lightbox-root"
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("/", dir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind / on %s: %w", dir, err)
	}
	if err := unix.Chdir(dir); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move %s onto /: %w", dir, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	return unix.Chdir("/")
}

// openGuestStore opens a store on the guest's prjquota XFS disk.
func openGuestStore(t *testing.T) *Runtime {
	t.Helper()
	vmtest.GuestOnly(t)
	if err := leaveRootfsOnce(); err != nil {
		t.Fatalf("leave the initramfs root: %v", err)
	}
	var u unix.Utsname
	unix.Uname(&u)
	t.Logf("guest kernel %s", unix.ByteSliceToString(u.Release[:]))
	r, err := Open(Options{Root: filepath.Join(vmtest.MountPoint(vmDisk), "lightbox")})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestGuestSandboxQuota: a sandbox fills a 16 MiB XFS-quota'd volume with
// dd and gets ENOSPC from the kernel at the limit; a neighbouring volume
// mounted in the same sandbox still takes writes.
func TestGuestSandboxQuota(t *testing.T) {
	r := openGuestStore(t)
	ctx := t.Context()
	if _, err := r.ImportSnapshot(ctx, "busybox", vmImages+":busybox", ImportOptions{}); err != nil {
		t.Fatalf("ImportSnapshot: %v", err)
	}
	for _, name := range []string{"q", "n"} {
		v, err := r.EnsureVolume(ctx, name, VolumeOptions{QuotaMiB: vmQuotaMi})
		if err != nil {
			t.Fatalf("EnsureVolume(%s): %v", name, err)
		}
		if v.Backend != "xfs" {
			t.Fatalf("volume %s: backend %q, want xfs (the store is on XFS with prjquota, as root)", name, v.Backend)
		}
	}
	err := r.RunInSandbox(ctx, SandboxOptions{
		Snapshot: "busybox",
		Network:  NetworkNone,
		Mounts:   map[string]Mount{"/q": {Volume: "q"}, "/n": {Volume: "n"}},
	}, func(sb *Sandbox) error {
		res, err := sb.Shell(ctx, fmt.Sprintf("dd if=/dev/zero of=/q/big bs=1M count=%d", 2*vmQuotaMi))
		var ee *ExitError
		if !errors.As(err, &ee) {
			return fmt.Errorf("dd of %d MiB into a %d MiB volume: %v (%+v), want it to fail", 2*vmQuotaMi, vmQuotaMi, err, res)
		}
		msg := strings.TrimSpace(string(res.Stderr))
		t.Logf("sandbox: dd into /q (quota %d MiB) exited %d: %s", vmQuotaMi, res.ExitCode, msg)
		if !strings.Contains(msg, "No space left on device") {
			return fmt.Errorf("dd past the quota said %q, want the kernel's ENOSPC (No space left on device)", msg)
		}
		res, err = sb.Shell(ctx, "wc -c < /q/big")
		if err != nil {
			return fmt.Errorf("size of /q/big: %w", err)
		}
		var size int64
		fmt.Sscan(string(res.Stdout), &size)
		t.Logf("sandbox: /q/big holds %d bytes", size)
		if size > vmQuotaMi<<20 || size < (vmQuotaMi-2)<<20 {
			return fmt.Errorf("/q/big holds %d bytes, want close to the %d MiB limit", size, vmQuotaMi)
		}
		res, err = sb.Shell(ctx, "dd if=/dev/zero of=/n/ok bs=1M count=4 && sync && wc -c < /n/ok")
		if err != nil {
			return fmt.Errorf("writing 4 MiB into the neighbouring volume: %w (%s)", err, res.Stderr)
		}
		if got := strings.TrimSpace(string(res.Stdout)); got != fmt.Sprint(4<<20) {
			return fmt.Errorf("/n/ok holds %s bytes, want %d", got, 4<<20)
		}
		t.Logf("sandbox: the neighbouring volume /n took 4 MiB after /q filled up")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	vols, err := r.ListVolumes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vols {
		t.Logf("volume %s: backend %s, quota %d MiB, used %d bytes", v.Name, v.Backend, v.QuotaMiB, v.UsedBytes)
		if v.Name == "q" && (v.UsedBytes > vmQuotaMi<<20 || v.UsedBytes < (vmQuotaMi-2)<<20) {
			t.Errorf("volume q reports %d bytes used, want close to its %d MiB limit", v.UsedBytes, vmQuotaMi)
		}
	}
}

// TestGuestSandboxManyLayers launches a sandbox of a 120-layer snapshot on
// a kernel without "lowerdir+": the root is mounted with the classic
// option string, the layers named by descriptor to fit a page.
func TestGuestSandboxManyLayers(t *testing.T) {
	r := openGuestStore(t)
	ctx := t.Context()
	snap, err := r.ImportSnapshot(ctx, "many", vmImages+":many", ImportOptions{})
	if err != nil {
		t.Fatalf("ImportSnapshot: %v", err)
	}
	t.Logf("snapshot many imported (%+v)", snap)
	err = r.RunInSandbox(ctx, SandboxOptions{Snapshot: "many", Network: NetworkNone}, func(sb *Sandbox) error {
		res, err := sb.Shell(ctx, "cat /etc/layer; echo; ls /layers | wc -l; echo hi > /tmp/w && cat /tmp/w; grep '^overlay / ' /proc/mounts")
		if err != nil {
			return fmt.Errorf("shell in the 120-layer sandbox: %w (%s)", err, res.Stderr)
		}
		out := strings.Fields(string(res.Stdout))
		t.Logf("sandbox of %d layers says: %s", vmLayers, res.Stdout)
		if len(out) < 3 || out[0] != fmt.Sprint(vmLayers-1) || out[1] != fmt.Sprint(vmLayers-1) || out[2] != "hi" {
			return fmt.Errorf("sandbox of %d layers: got %q, want the top layer's %d, %d files in /layers, hi", vmLayers, res.Stdout, vmLayers-1, vmLayers-1)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestGuestSandboxOverlayMount: package overlay's own Mount (host-side
// mounts) also falls back on 6.1, for 120 layers with digest-long names.
func TestGuestSandboxOverlayMount(t *testing.T) {
	vmtest.GuestOnly(t)
	dir, err := os.MkdirTemp(vmtest.MountPoint(vmDisk), "ovl-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	var s overlay.Spec
	for i := range vmLayers {
		l := filepath.Join(dir, fmt.Sprintf("%064x", i))
		if err := os.Mkdir(l, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(l, "top"), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		s.Layers = append(s.Layers, l)
	}
	s.Upper, s.Work = filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	target := filepath.Join(dir, "merged")
	for _, d := range []string{s.Upper, s.Work, target} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := overlay.Mount(s, target); err != nil {
		t.Fatalf("overlay.Mount of %d layers: %v", vmLayers, err)
	}
	defer overlay.Unmount(target)
	if b, err := os.ReadFile(filepath.Join(target, "top")); err != nil || string(b) != fmt.Sprint(vmLayers-1) {
		t.Errorf("top = %q, %v; want the top layer's %d", b, err, vmLayers-1)
	}
	if err := os.WriteFile(filepath.Join(target, "new"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Upper, "new")); err != nil {
		t.Errorf("write did not land in the upper dir: %v", err)
	}
	if err := overlay.Unmount(target); err != nil {
		t.Fatal(err)
	}
}

// TestGuestSandboxCgroupV2: on the guest's unified hierarchy, as root, a
// sandbox gets its own cgroup under /sys/fs/cgroup/lightbox and the
// limits hold (guestCgroupLimits); gc after a kill -9 of the launcher
// leaves no cgroup behind.
func TestGuestSandboxCgroupV2(t *testing.T) {
	r := openGuestStore(t)
	if _, err := r.ImportSnapshot(t.Context(), "busybox-cg", vmImages+":busybox", ImportOptions{}); err != nil {
		t.Fatalf("ImportSnapshot: %v", err)
	}
	guestCgroupLimits(t, r, "busybox-cg", "/sys/fs/cgroup")
	guestKilledLauncher(t, r, "busybox-cg", "/sys/fs/cgroup")
}

// What the rootless child of TestGuestSandboxCgroupV2Rootless and the
// launcher of guestKilledLauncher are told.
const (
	envGuestRootless   = "LIGHTBOX_GUEST_ROOTLESS"    // the delegated cgroup: run TestGuestRootlessLimits there
	envGuestNoCPU      = "LIGHTBOX_GUEST_NO_CPU"      // ... where cpu is not delegated
	envGuestLauncher   = "LIGHTBOX_GUEST_LAUNCHER"    // a store: be a launcher, hold a sandbox until killed
	envGuestLaunchName = "LIGHTBOX_GUEST_LAUNCH_NAME" // its name
	envGuestLaunchSnap = "LIGHTBOX_GUEST_LAUNCH_SNAP" // its snapshot
	guestUID           = 1000                         // the unprivileged user of the rootless child
)

// TestGuestSandboxCgroupV2Rootless gives an unprivileged user a delegated
// cgroup v2 subtree as systemd's user@UID.service does (the directory and
// its cgroup.procs, cgroup.threads and cgroup.subtree_control chowned to
// the user; pids, memory and cpu enabled in its parent and in it; the
// user's processes in a leaf below it, like init.scope) and runs
// TestGuestRootlessLimits as that user, from that leaf: the same limits
// hold rootless.
func TestGuestSandboxCgroupV2Rootless(t *testing.T) {
	vmtest.GuestOnly(t)
	if err := leaveRootfsOnce(); err != nil { // the child inherits the root
		t.Fatalf("leave the initramfs root: %v", err)
	}
	const cg = "/sys/fs/cgroup"
	deleg := filepath.Join(cg, "user-"+fmt.Sprint(guestUID)+".service")
	leaf := filepath.Join(deleg, "init.scope")
	write := func(p, v string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(cg, "cgroup.subtree_control"), "+pids +memory +cpu")
	for _, d := range []string{deleg, leaf} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control"} {
			if err := os.Chown(filepath.Join(d, f), guestUID, guestUID); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer func() {
		os.Remove(leaf)
		os.Remove(deleg)
	}()
	write(filepath.Join(deleg, "cgroup.subtree_control"), "+pids +memory +cpu")
	store := filepath.Join(vmtest.MountPoint(vmDisk), "rootless")
	if err := os.Mkdir(store, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(store, guestUID, guestUID); err != nil {
		t.Fatal(err)
	}
	leafDir, err := os.Open(leaf)
	if err != nil {
		t.Fatal(err)
	}
	defer leafDir.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := func(env ...string) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), exe, "-test.run=^TestGuestRootlessLimits$", "-test.v", "-test.count=1")
		cmd.Env = append(append(os.Environ(), envGuestRootless+"="+deleg, "LIGHTBOX_GUEST_STORE="+store, "HOME=/tmp"), env...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Credential:  &syscall.Credential{Uid: guestUID, Gid: guestUID, Groups: []uint32{}},
			UseCgroupFD: true, CgroupFD: int(leafDir.Fd()),
		}
		err := cmd.Run()
		for _, l := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
			t.Log("uid " + fmt.Sprint(guestUID) + "| " + l)
		}
		if err != nil {
			t.Fatalf("rootless child: %v", err)
		}
		if !strings.Contains(out.String(), "--- PASS: TestGuestRootlessLimits") {
			t.Fatalf("rootless child: TestGuestRootlessLimits did not pass")
		}
		// Nothing left in the delegated subtree but the leaf.
		ents, _ := os.ReadDir(filepath.Join(deleg, "lightbox"))
		for _, e := range ents {
			if e.IsDir() {
				t.Errorf("cgroup %s left in the delegated subtree", e.Name())
			}
		}
	}
	child()
	// Older systemd delegates "memory pids" only: the same user gets a
	// cgroup with its memory limit, and a CPU limit is refused.
	os.Remove(filepath.Join(deleg, "lightbox")) // empty: it had +cpu
	write(filepath.Join(deleg, "cgroup.subtree_control"), "-cpu")
	child(envGuestNoCPU + "=1")
}

// TestGuestRootlessLimits is TestGuestSandboxCgroupV2Rootless's child: as
// an unprivileged user in a leaf of a delegated subtree.
func TestGuestRootlessLimits(t *testing.T) {
	vmtest.GuestOnly(t)
	deleg := os.Getenv(envGuestRootless)
	if deleg == "" || os.Geteuid() == 0 {
		t.Skip("needs an unprivileged user and a delegated cgroup (" + envGuestRootless + "): run as TestGuestSandboxCgroupV2Rootless's child")
	}
	ctx := t.Context()
	r, err := Open(Options{Root: os.Getenv("LIGHTBOX_GUEST_STORE")})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer r.Close()
	if _, err := r.ImportSnapshot(ctx, "busybox", vmImages+":busybox", ImportOptions{}); err != nil && !errors.Is(err, ErrExists) { // the second run finds it
		t.Fatalf("ImportSnapshot: %v", err)
	}
	if os.Getenv(envGuestNoCPU) == "" {
		guestCgroupLimits(t, r, "busybox", deleg)
		guestKilledLauncher(t, r, "busybox", deleg)
		return
	}
	_, err = r.LaunchSandbox(ctx, SandboxOptions{Snapshot: "busybox", Network: NetworkNone, Resources: Resources{CPUs: 0.5}})
	if !errors.Is(err, ErrLimitUnsupported) || !strings.Contains(err.Error(), "--cpus") || !strings.Contains(err.Error(), "cpu controller is not delegated") {
		t.Errorf("--cpus 0.5 without the cpu controller delegated: %v, want ErrLimitUnsupported naming the flag and why", err)
	} else {
		t.Logf("--cpus 0.5 refused: %v", err)
	}
	sb, err := r.LaunchSandbox(ctx, SandboxOptions{Snapshot: "busybox", Network: NetworkNone, Resources: Resources{MemoryMiB: 64}})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(context.WithoutCancel(ctx))
	info, err := r.InspectSandbox(ctx, sb.Name())
	if err != nil || info.Limits["memory"] != "cgroup v2 64 MiB" || info.Limits["cpu"] != "none — the cpu controller is not delegated" || info.Limits["pids"] != "cgroup v2 4096" {
		t.Errorf("InspectSandbox = %+v, %v; want memory and pids in a cgroup v2, no cpu", info, err)
	}
	_, err = sb.Shell(ctx, "head -c 300m /dev/zero | tail >/dev/null")
	var ee *ExitError
	if !errors.As(err, &ee) || !ee.OOMKilled {
		t.Errorf("memory hog: %v, want OOMKilled", err)
	}
	if err := sb.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
}

// guestCgroupLimits: a sandbox of snap launched by r gets its own cgroup
// under parent/lightbox (cloned into it), sees it as the root of a
// read-only /sys/fs/cgroup, has its workloads in workload/ with an
// oom_score_adj above the init's, holds --cpus 0.5 near half a CPU, is
// OOM-killed and told so at its memory limit while it and a neighbour
// keep running, holds a fork bomb at its pids limit, refuses an Exec
// clearly while its workloads are at the limit and the init still
// serves, and leaves no cgroup once destroyed.
func guestCgroupLimits(t *testing.T, r *Runtime, snap, parent string) {
	t.Helper()
	ctx := t.Context()
	neighbour, err := r.LaunchSandbox(ctx, SandboxOptions{Snapshot: snap, Network: NetworkNone})
	if err != nil {
		t.Fatal(err)
	}
	defer neighbour.Destroy(context.WithoutCancel(ctx))
	sb, err := r.LaunchSandbox(ctx, SandboxOptions{Snapshot: snap, Network: NetworkNone,
		Resources: Resources{MemoryMiB: 64, PidsLimit: 64, CPUs: 0.5}})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(context.WithoutCancel(ctx))
	info, err := r.InspectSandbox(ctx, sb.Name())
	if err != nil || info.Limits["memory"] != "cgroup v2 64 MiB" || info.Limits["pids"] != "cgroup v2 64" || info.Limits["cpu"] != "cgroup v2 0.5 CPUs" || info.Usage == nil {
		t.Fatalf("InspectSandbox = %+v, %v; want cgroup v2 limits and usage", info, err)
	}
	dirs, _ := filepath.Glob(filepath.Join(parent, "lightbox", sb.Name()+"-*"))
	if len(dirs) != 1 {
		t.Fatalf("cgroups of %s under %s/lightbox: %q, want one", sb.Name(), parent, dirs)
	}
	cg := dirs[0]
	t.Logf("sandbox cgroup %s", cg)
	if os.Geteuid() == 0 && initbin.Available() {
		// A v2 host runs the lean init, like a v1 host (read as root:
		// the init is not dumpable).
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/exe", info.Pid))
		if sum := sha256.Sum256(b); err != nil || hex.EncodeToString(sum[:]) != initbin.Sum() {
			t.Errorf("the init's program: %d bytes, %v; want the lean init (sha256 %s)", len(b), err, initbin.Sum())
		} else {
			t.Logf("the init is the lean program (%d bytes)", len(b))
		}
	}
	readCg := func(f string) string {
		b, err := os.ReadFile(filepath.Join(cg, f))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}

	res, err := sb.Shell(ctx, "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/workload/pids.max /sys/fs/cgroup/cpu.max /proc/self/cgroup; touch /sys/fs/cgroup/x 2>&1 || true")
	if err != nil || !strings.HasPrefix(string(res.Stdout), "67108864\n65\n50000 100000\n0::/workload\n") || !strings.Contains(string(res.Stdout), "Read-only") {
		t.Errorf("/sys/fs/cgroup inside: %q, %v; want the sandbox's own cgroup, read-only, the workloads in workload/", res.Stdout, err)
	}

	// The OOM killer picks a workload, never the init.
	res, err = sb.Shell(ctx, "cat /proc/1/oom_score_adj /proc/self/oom_score_adj")
	var initAdj, workAdj int
	if n, _ := fmt.Sscan(string(res.Stdout), &initAdj, &workAdj); err != nil || n != 2 || workAdj <= initAdj {
		t.Errorf("oom_score_adj of the init and a workload: %q, %v; want the workload's above the init's", res.Stdout, err)
	} else {
		t.Logf("oom_score_adj: init %d, workload %d", initAdj, workAdj)
	}

	// --cpus 0.5, from the cgroup's own counter over a second.
	busy := sb.Command(ctx, "sh", "-c", "while :; do :; done")
	if err := busy.Start(); err != nil {
		t.Fatal(err)
	}
	usage := func() (time.Time, int64) {
		for _, l := range strings.Split(readCg("cpu.stat"), "\n") {
			if v, ok := strings.CutPrefix(l, "usage_usec "); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return time.Now(), n
			}
		}
		t.Fatal("no usage_usec in cpu.stat")
		return time.Time{}, 0
	}
	t0, u0 := usage()
	for time.Since(t0) < time.Second {
		time.Sleep(100 * time.Millisecond)
	}
	t1, u1 := usage()
	busy.Signal(syscall.SIGKILL)
	busy.Wait()
	ratio := float64(u1-u0) * 1000 / float64(t1.Sub(t0).Nanoseconds())
	t.Logf("busy loop under --cpus 0.5: %.3f CPUs", ratio)
	if ratio > 0.62 || ratio < 0.1 {
		t.Errorf("busy loop used %.3f CPUs under a 0.5 limit", ratio)
	}

	_, err = sb.Shell(ctx, "head -c 300m /dev/zero | tail >/dev/null")
	var ee *ExitError
	if !errors.As(err, &ee) || !ee.OOMKilled || ee.ExitCode != 137 {
		t.Errorf("memory hog: %v, want OOMKilled with 137", err)
	}
	if !strings.Contains(readCg("memory.events"), "oom_kill ") || strings.Contains(readCg("memory.events"), "oom_kill 0") {
		t.Errorf("memory.events after the hog: %q, want an oom_kill", readCg("memory.events"))
	}
	if res, err := sb.Shell(ctx, "echo alive"); err != nil || string(res.Stdout) != "alive\n" {
		t.Errorf("the sandbox after its OOM kill: %q, %v; want its init alive", res.Stdout, err)
	}
	if res, err := neighbour.Shell(ctx, "echo alive"); err != nil || string(res.Stdout) != "alive\n" {
		t.Errorf("neighbour: %v", err)
	}

	// A burst of forks past the limit: a bounded one, not a recursive
	// bomb, whose run time under TCG ranged from seconds to minutes (the
	// host's runtime tests run a real bomb). busybox sh gives up at
	// its first refused fork. Its sleepers outlive it whatever the
	// guest's speed (with `sleep 3` a loaded host's guest forked too
	// slowly to ever hold 64 at once), without its output, which the
	// Shell waits for; then one process more (the limit leaves room for
	// it) ends them.
	_, err = sb.Shell(ctx, `i=0; while [ $i -lt 200 ]; do sleep 1000 </dev/null >/dev/null 2>&1 & i=$((i+1)); done`)
	events := readCg("workload/pids.events")
	t.Logf("after a burst of forks: %v; workload/pids.events %q", err, events)
	if !strings.Contains(events, "max ") || strings.Contains(events, "max 0") {
		t.Errorf("burst of forks: workload/pids.events %q, want the limit hit", events)
	}
	if _, err := sb.Shell(ctx, "exec killall -9 sleep"); err != nil {
		t.Fatalf("ending the burst's sleepers: %v", err)
	}
	// A loaded host's TCG guest is slow, never stuck this long. Left:
	// the init's spawner thread (1), or for a moment while a handover's
	// new init starts its own, nothing.
	testutil.WaitFor(t, 2*time.Minute, "the burst's sleepers to end", func() bool { c := readCg("workload/pids.current"); return c == "1" || c == "0" })

	// Workloads held at their limit: Exec is refused, naming it; the
	// init, with its threads beside the workloads' cgroup, serves on.
	var sleepers int
	var refused error
	for sleepers <= 128 && refused == nil {
		if refused = sb.Command(ctx, "sleep", "1000").Start(); refused == nil {
			sleepers++
		}
	}
	if refused == nil || !strings.Contains(refused.Error(), "pids limit") {
		t.Errorf("%d sleepers under a pids limit of 64, then %v; want a refusal naming the limit", sleepers, refused)
	}
	total, _ := strconv.Atoi(readCg("pids.current"))
	t.Logf("%d sleepers fill the workloads' 64 (%s); the sandbox's cgroup holds %d tasks; then: %v", sleepers, readCg("workload/pids.current"), total, refused)
	if total <= 64 {
		t.Errorf("the sandbox's cgroup holds %d tasks with its workloads at 64: the init's threads are not beside them", total)
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = sb.Exec(ctx, "true") }()
	}
	wg.Wait()
	for _, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "pids limit") {
			t.Errorf("Exec at the pids limit: %v, want a refusal naming the limit", err)
		}
	}
	info, err = r.InspectSandbox(ctx, sb.Name())
	if err != nil || info.Status != "running" {
		t.Errorf("the sandbox at its pids limit: %+v, %v; want it running", info, err)
	}
	// Of the init's threads only the spawner is among the workloads: no
	// thread the Go runtime made since counts against their limit (from
	// the spawner's locked thread it asks the template thread, which
	// stays in the sandbox's cgroup).
	if info.Pid > 0 {
		tids, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", info.Pid))
		listed := strings.Fields(readCg("workload/cgroup.threads"))
		var in []string
		for _, e := range tids {
			if slices.Contains(listed, e.Name()) {
				in = append(in, e.Name())
			}
		}
		t.Logf("the init's threads: %d, in workload/: %q", len(tids), in)
		if len(in) != 1 {
			t.Errorf("the init's threads in workload/: %q of %d; want one, the spawner's", in, len(tids))
		}
	} else {
		t.Errorf("InspectSandbox: no init pid (%+v)", info)
	}
	if err := sb.Destroy(ctx); err != nil {
		t.Fatalf("Destroy at the pids limit: %v", err)
	}
	// Destroy leaves the cgroup's removal to the background (Close waits
	// for it): it goes within moments.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, err := os.Stat(cg)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("cgroup %s left 10 s after Destroy (%v)", cg, err)
			break
		}
	}
}

// guestKilledLauncher: a sandbox whose launcher is killed with SIGKILL
// dies with it, and gc then removes its cgroup.
func guestKilledLauncher(t *testing.T, r *Runtime, snap, parent string) {
	t.Helper()
	ctx := t.Context()
	name := "killed-" + strconv.Itoa(os.Getuid())
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envGuestLauncher+"="+r.Root(), envGuestLaunchName+"="+name, envGuestLaunchSnap+"="+snap)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "launched\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("launcher said %q, %v", line, err)
	}
	dirs, _ := filepath.Glob(filepath.Join(parent, "lightbox", name+"-*"))
	if len(dirs) != 1 {
		t.Fatalf("cgroups of %s: %q, want one", name, dirs)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := r.InspectSandbox(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if info.Status == "dead" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox %s still %s after its launcher was killed", name, info.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(dirs[0]); err != nil {
		t.Fatalf("the dead sandbox's cgroup before gc: %v; want it there for gc to remove", err)
	}
	if err := r.GC(ctx); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if _, err := os.Stat(dirs[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup %s left after gc (stat: %v)", dirs[0], err)
	}
	t.Logf("gc after a kill -9 of the launcher removed %s", dirs[0])
}

// guestLauncher launches a sandbox of snap named name in the store at
// root, says "launched" and waits to be killed.
func guestLauncher(root, name, snap string) int {
	r, err := Open(Options{Root: root})
	if err != nil {
		fmt.Fprintln(os.Stderr, "launcher:", err)
		return 1
	}
	ctx := context.Background() // a process of its own, ended by SIGKILL
	if _, err := r.LaunchSandbox(ctx, SandboxOptions{Snapshot: snap, Name: name, Network: NetworkNone, Resources: Resources{MemoryMiB: 32}}); err != nil {
		fmt.Fprintln(os.Stderr, "launcher:", err)
		return 1
	}
	fmt.Println("launched")
	time.Sleep(2 * time.Minute) // killed long before
	return 1
}

// What TestPowerCutInVM's two boots share: the sha256 of the files boot 2
// checks, in the order of powerCutFiles.
const envPowerCutSums = "LIGHTBOX_POWERCUT_SUMS"

// powerCutFiles are the files TestPowerCutInVM checks after the cut, as a
// sandbox sees them: a file of the snapshot's layer, and the volume's
// copy of the image's /data/blob.
var powerCutFiles = []string{"/bin/busybox", "/data/blob", "/vol/blob"}

// TestPowerCutInVM: what lightbox has written and said it keeps survives
// a power cut right after. Boot 1 imports a snapshot (its layers
// unpacked), fills a new volume from the image, and cuts the power
// (vmtest.PowerCut: a restart without sync, the guest's page cache lost,
// the disk as it was); boot 2, on the same XFS disk, runs the snapshot
// with the volume and reads every file back whole. Before the unpacked
// layers and a volume's fill were synced before they were put in place,
// a layer dir (never unpacked again) and a filled volume (never filled
// again) kept empty files for good, as containerd's zero-length layers
// (containerd#8895). Boot 1 also keeps a sandbox exited (as `lightbox run
// --keep`) whose main command wrote a file in its volatile upper, and
// boot 2 commits it and reads the file back whole: before a kept
// sandbox's init synced its upper before recording its exit status
// (nsinit.Config.SyncOnEnd), it read exited and committed an empty file.
// And the same with a capped writable layer (DiskMiB) in a second store,
// on an XFS disk without quotas (vmDiskPlain), whose cap is an ext4 image
// loop-mounted (the loop backend: mkfs.ext4 is shipped into the guest):
// before the init synced the upper's own filesystem, not only the
// store's, the ext4's dirty pages never reached the image, and boot 2
// committed a layer without the file.
func TestPowerCutInVM(t *testing.T) {
	k, img := xfsGuestHost(t)
	plain := filepath.Join(vmtest.ImageDir(t), "plain.img")
	if err := vmtest.MakeXFSImage(t.Context(), plain, 320<<20); err != nil {
		t.Fatal(err)
	}
	mkfs := guestProgram(t, "mkfs.ext4")
	rootfs := testutil.BusyboxRootfs(t)
	bb, err := os.ReadFile(filepath.Join(rootfs, "bin", "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, 256<<10)
	for i := range blob {
		blob[i] = byte(i*7 + i>>9)
	}
	layout := testutil.NewOCILayout(t)
	testutil.AddOCIImage(t, layout, "data", ispec.ImageConfig{Env: []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin"}},
		testutil.TarDir(t, rootfs),
		testutil.Tar(t,
			testutil.TarFile{Hdr: tar.Header{Name: "data/", Typeflag: tar.TypeDir}},
			testutil.TarFile{Hdr: tar.Header{Name: "data/blob"}, Body: string(blob)},
		))
	archive := filepath.Join(t.TempDir(), "oci.tar")
	testutil.OCIArchive(t, layout, archive)
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	sums := strings.Join([]string{sum(bb), sum(blob), sum(blob)}, ",")
	boot := func(test string) *vmtest.Result {
		return vmtest.Boot(t, vmtest.Config{
			Kernel:  k,
			Args:    []string{"-test.run=^" + test + "$", "-test.v", "-test.count=1"},
			Env:     []string{envPowerCutSums + "=" + sums},
			Modules: []string{"xfs", "overlay", "loop"},
			Disks: []vmtest.Disk{
				{Name: vmDisk, Image: img, FSType: "xfs", Options: "prjquota"},
				{Name: vmDiskPlain, Image: plain, FSType: "xfs"},
			},
			Files:   append([]vmtest.File{{Host: archive, Guest: vmImages, Mode: 0o644}}, mkfs...),
			Timeout: 4 * time.Minute,
		})
	}
	if res := boot("TestGuestPowerCutWrite"); !strings.Contains(res.Console, vmtest.PowerCutMarker) {
		t.Fatal("boot 1 ended without cutting the power (its console is logged above)")
	}
	boot("TestGuestPowerCutCheck")
}

// TestGuestPowerCutWrite is TestPowerCutInVM's first boot: it imports the
// snapshot, fills a new volume from it, and cuts the power.
func TestGuestPowerCutWrite(t *testing.T) {
	r := openGuestStore(t)
	ctx := t.Context()
	if _, err := r.ImportSnapshot(ctx, "data", vmImages+":data", ImportOptions{}); err != nil {
		t.Fatalf("ImportSnapshot: %v", err)
	}
	err := r.RunInSandbox(ctx, SandboxOptions{
		Snapshot: "data",
		Network:  NetworkNone,
		Mounts:   map[string]Mount{"/data": {Volume: "v"}},
	}, func(sb *Sandbox) error {
		res, err := sb.Shell(ctx, "wc -c < /data/blob")
		if err != nil {
			return fmt.Errorf("the filled volume: %w", err)
		}
		if got := strings.TrimSpace(string(res.Stdout)); got != fmt.Sprint(256<<10) {
			return fmt.Errorf("the volume's /data/blob holds %s bytes, want %d", got, 256<<10)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	powerCutKeepWrite(t, r, powerCutKept, 0)
	rp := openPlainStore(t)
	if _, err := rp.ImportSnapshot(ctx, "data", vmImages+":data", ImportOptions{}); err != nil {
		t.Fatalf("ImportSnapshot in the store without quotas: %v", err)
	}
	if b, err := rp.vols.QuotaBackend(); b != "loop" {
		t.Fatalf("the store on %s caps a writable layer with backend %q (%v), want loop", vmDiskPlain, b, err)
	}
	powerCutKeepWrite(t, rp, powerCutKeptDisk, vmQuotaMi)
	t.Log("snapshot imported, volume filled, sandboxes kept: cutting the power")
	vmtest.PowerCut()
}

// powerCutKept is the sandbox TestPowerCutInVM's first boot keeps
// exited, powerCutKeptDisk the one with a capped writable layer it keeps
// in the store on vmDiskPlain, and powerCutKeptFile what their main
// commands wrote: a copy of the image's /data/blob (sha256 the second of
// envPowerCutSums).
const (
	powerCutKept     = "kept"
	powerCutKeptDisk = "keptdisk"
	powerCutKeptFile = "/kept/blob"
)

// vmDiskPlain is TestPowerCutInVM's second disk: XFS without prjquota, so
// that a store there caps writable layers with the loop backend.
const vmDiskPlain = "plain"

// openPlainStore opens the guest's store on vmDiskPlain.
func openPlainStore(t *testing.T) *Runtime {
	t.Helper()
	r, err := Open(Options{Root: filepath.Join(vmtest.MountPoint(vmDiskPlain), "lightbox")})
	if err != nil {
		t.Fatalf("Open the store without quotas: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// guestProgram returns the host's program name (found in PATH or an sbin
// dir) and the shared libraries ldd says it loads, as files for the
// guest at the same paths: the guest's initramfs has no libc.
func guestProgram(t *testing.T, name string) []vmtest.File {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, d := range []string{"/usr/sbin", "/sbin"} {
			if _, serr := os.Stat(filepath.Join(d, name)); serr == nil {
				p, err = filepath.Join(d, name), nil
				break
			}
		}
	}
	if err != nil {
		t.Fatalf("%s for the guest: %v", name, err)
	}
	files := []vmtest.File{{Host: p, Guest: "/usr/sbin/" + name, Mode: 0o755}}
	out, err := exec.CommandContext(t.Context(), "ldd", p).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", p, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		var lib string
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			lib = f[2]
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			lib = f[0] // the ELF interpreter
		default:
			continue
		}
		files = append(files, vmtest.File{Host: lib, Guest: lib, Mode: 0o755})
	}
	return files
}

// powerCutKeepWrite is a kept sandbox's part of TestPowerCutInVM's
// first boot, sandbox name in r, its writable layer capped at diskMiB (0:
// none): a sandbox launched as `lightbox run --keep` launches it (a
// main command, no DetachedTeardown) writes powerCutKeptFile in its
// upper and ends by itself, kept exited for a commit. As for a sandbox
// that ran a while before it wrote its work, what its launch wrote (its
// state) is on disk before: the store's filesystem is synced, then the
// main command, waiting on its stdin, is let go. Once it has ended, the
// sandbox's lock file, where the init recorded the exit status, is
// synced alone: the kernel's writeback may well write that small file
// before the upper's (and the fsync forces XFS's log, so the upper's new
// file is on disk, with no data). What the sandbox wrote must be on disk
// by then, or boot 2 finds the sandbox exited with a torn upper.
func powerCutKeepWrite(t *testing.T, r *Runtime, name string, diskMiB int64) {
	ctx := t.Context()
	stdin, start, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	defer start.Close()
	sb, err := r.LaunchSandbox(ctx, SandboxOptions{
		Snapshot: "data",
		Name:     name,
		Network:  NetworkNone,
		DiskMiB:  diskMiB,
		Command:  []string{"sh", "-c", "read go && mkdir /kept && cat /data/blob > " + powerCutKeptFile},
		Stdin:    stdin,
		Stdout:   os.Stdout,
		Stderr:   os.Stderr,
	})
	if err != nil {
		t.Fatalf("LaunchSandbox: %v", err)
	}
	if err := syncStore(r); err != nil {
		t.Fatal(err)
	}
	if _, err := start.WriteString("go\n"); err != nil {
		t.Fatalf("start the kept sandbox's work: %v", err)
	}
	if code, err := sb.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("the kept sandbox's main command: status %d, %v", code, err)
	}
	info, err := r.InspectSandbox(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if info.Status != "exited" {
		t.Fatalf("sandbox %s is %s once its main command ended, want exited", name, info.Status)
	}
}

// syncStore syncs the filesystem of r's store (syncfs).
func syncStore(r *Runtime) error {
	d, err := os.Open(r.Root())
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("sync the store's filesystem: %w", err)
	}
	return nil
}

// powerCutKeepCheck is a kept sandbox's part of TestPowerCutInVM's
// second boot, sandbox name in r: the sandbox still reads exited, and a commit of it (its
// upper, read as it is on disk) holds the file whole.
func powerCutKeepCheck(t *testing.T, r *Runtime, name, want string) {
	ctx := t.Context()
	info, err := r.InspectSandbox(ctx, name)
	if err != nil {
		t.Fatalf("the kept sandbox after the power cut: %v", err)
	}
	if info.Status != "exited" {
		t.Fatalf("sandbox %s is %s after the power cut, want exited (its init synced its status)", name, info.Status)
	}
	sb, err := r.AttachSandbox(ctx, name)
	if err != nil {
		t.Fatalf("AttachSandbox: %v", err)
	}
	_, err = sb.Commit(ctx, name+"snap")
	// What the commit found of a capped layer (mounted again).
	disks, _ := filepath.Glob(filepath.Join(r.Root(), "disks", name+"-*[0-9a-f]")) // a constant pattern: no error
	for _, w := range disks {
		var ls []string
		for _, d := range []string{w, filepath.Join(w, "upper"), filepath.Join(w, "upper", "kept")} {
			ents, rerr := os.ReadDir(d)
			ls = append(ls, fmt.Sprintf("%s: %d entries (%v)", d, len(ents), rerr))
		}
		t.Logf("the capped layer of %s after the power cut: %s", name, strings.Join(ls, "; "))
	}
	if err != nil {
		t.Fatalf("commit the kept sandbox after the power cut: %v", err)
	}
	err = r.RunInSandbox(ctx, SandboxOptions{Snapshot: name + "snap", Network: NetworkNone}, func(sb *Sandbox) error {
		f := powerCutKeptFile
		res, err := sb.Shell(ctx, "wc -c < "+f+" && sha256sum < "+f)
		if err != nil {
			if res != nil {
				err = fmt.Errorf("%w (%s)", err, res.Stderr)
			}
			return fmt.Errorf("read %s of the commit of the kept sandbox: %w", f, err)
		}
		out := strings.Fields(string(res.Stdout))
		if len(out) < 2 || out[1] != want {
			return fmt.Errorf("%s in the commit of the sandbox kept exited before the power cut: %q (size, sha256), want sha256 %s: its upper was not on disk when its status was", f, out, want)
		}
		t.Logf("%s of the kept sandbox's commit: %s bytes, whole", f, out[0])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestGuestPowerCutCheck is TestPowerCutInVM's second boot: every file
// the first one wrote is whole, as a sandbox sees it.
func TestGuestPowerCutCheck(t *testing.T) {
	r := openGuestStore(t)
	ctx := t.Context()
	want := strings.Split(os.Getenv(envPowerCutSums), ",")
	if len(want) != len(powerCutFiles) {
		t.Fatalf("%s=%q: want %d sums", envPowerCutSums, os.Getenv(envPowerCutSums), len(powerCutFiles))
	}
	err := r.RunInSandbox(ctx, SandboxOptions{
		Snapshot: "data",
		Network:  NetworkNone,
		Mounts:   map[string]Mount{"/vol": {Volume: "v"}},
	}, func(sb *Sandbox) error {
		for i, f := range powerCutFiles {
			res, err := sb.Shell(ctx, "wc -c < "+f+" && sha256sum < "+f)
			if err != nil {
				if res != nil {
					err = fmt.Errorf("%w (%s)", err, res.Stderr)
				}
				return fmt.Errorf("read %s after the power cut: %w", f, err)
			}
			out := strings.Fields(string(res.Stdout))
			if len(out) < 2 || out[1] != want[i] {
				return fmt.Errorf("%s after the power cut: %q (size, sha256), want sha256 %s: lost what lightbox had written", f, out, want[i])
			}
			t.Logf("%s: %s bytes, whole", f, out[0])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	powerCutKeepCheck(t, r, powerCutKept, want[1])
	powerCutKeepCheck(t, openPlainStore(t), powerCutKeptDisk, want[1])
}
