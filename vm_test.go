//go:build linux

package lightbox

import (
	"archive/tar"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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
	testutil.RootOnly(t)
	if vmtest.InGuest() {
		t.Skip("needs the host: already inside the VM")
	}
	k := vmtest.Setup(t, "mkfs.xfs")
	img := filepath.Join(t.TempDir(), "xfs.img")
	if err := vmtest.MakeXFSImage(t.Context(), img, 320<<20); err != nil {
		t.Fatal(err)
	}
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
		Args:    []string{"-test.run=^TestGuestSandbox", "-test.v", "-test.count=1"},
		Modules: []string{"xfs", "overlay"},
		Disks:   []vmtest.Disk{{Name: vmDisk, Image: img, FSType: "xfs", Options: "prjquota"}},
		Files:   []vmtest.File{{Host: archive, Guest: vmImages, Mode: 0o644}},
		Timeout: 5 * time.Minute,
	})
}

// guestMain is called by TestMain after Init (so a sandbox's init, PID 1
// of its own namespace, is never mistaken for the VM's): in the test VM
// this binary is PID 1, and GuestMain mounts the disk and runs the
// TestGuestSandbox* tests; elsewhere it returns at once.
func guestMain() { vmtest.GuestMain() }

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

// TestGuestSandboxCgroupV2: on the guest's unified hierarchy a sandbox
// gets its own cgroup (cloned into it), sees it as the root of a
// read-only /sys/fs/cgroup, is OOM-killed and told so at its memory limit
// while a neighbour keeps running, holds a fork bomb at its pids limit,
// and leaves no cgroup once destroyed.
func TestGuestSandboxCgroupV2(t *testing.T) {
	r := openGuestStore(t)
	ctx := t.Context()
	if _, err := r.ImportSnapshot(ctx, "busybox-cg", vmImages+":busybox", ImportOptions{}); err != nil {
		t.Fatalf("ImportSnapshot: %v", err)
	}
	neighbour, err := r.LaunchSandbox(ctx, SandboxOptions{Snapshot: "busybox-cg", Network: NetworkNone})
	if err != nil {
		t.Fatal(err)
	}
	defer neighbour.Destroy(ctx)
	sb, err := r.LaunchSandbox(ctx, SandboxOptions{Snapshot: "busybox-cg", Network: NetworkNone,
		Resources: Resources{MemoryMiB: 64, PidsLimit: 64}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := r.InspectSandbox(ctx, sb.Name())
	if err != nil || info.Limits["memory"] != "cgroup v2 64 MiB" || info.Usage == nil {
		t.Fatalf("InspectSandbox = %+v, %v; want a cgroup v2 memory limit and usage", info, err)
	}
	res, err := sb.Shell(ctx, "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; grep -c . /proc/self/cgroup; cat /proc/self/cgroup; touch /sys/fs/cgroup/x 2>&1 || true")
	if err != nil || !strings.HasPrefix(string(res.Stdout), "67108864\n64\n1\n0::/\n") || !strings.Contains(string(res.Stdout), "Read-only") {
		t.Errorf("/sys/fs/cgroup inside: %q, %v; want the sandbox's own cgroup, read-only", res.Stdout, err)
	}
	_, err = sb.Shell(ctx, "head -c 300m /dev/zero | tail >/dev/null")
	var ee *ExitError
	if !errors.As(err, &ee) || !ee.OOMKilled || ee.ExitCode != 137 {
		t.Errorf("memory hog: %v, want OOMKilled with 137", err)
	}
	if res, err := neighbour.Shell(ctx, "echo alive"); err != nil || string(res.Stdout) != "alive\n" {
		t.Errorf("neighbour: %v", err)
	}
	res, _ = sb.Shell(ctx, "(b() { b | b & }; b) 2>&1 | grep -c \"can't fork\" | grep -q . && cat /sys/fs/cgroup/pids.events")
	t.Logf("after a fork bomb: %q", res.Stdout)
	if !strings.Contains(string(res.Stdout), "max ") || strings.Contains(string(res.Stdout), "max 0") {
		t.Errorf("fork bomb: pids.events %q, want the limit hit", res.Stdout)
	}
	cg := "/sys/fs/cgroup/lightbox"
	ents, _ := os.ReadDir(cg)
	if len(ents) == 0 {
		t.Fatalf("no sandbox cgroup under %s", cg)
	}
	if err := sb.Destroy(ctx); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	for _, e := range ents {
		if !e.IsDir() || strings.Contains(e.Name(), neighbour.Name()) {
			continue
		}
		if _, err := os.Stat(filepath.Join(cg, e.Name())); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left after Destroy", e.Name())
		}
	}
}
