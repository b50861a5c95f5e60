//go:build linux

package volstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/testutil"
	"github.com/beamhop/lightbox/internal/vmtest"
	"github.com/beamhop/lightbox/volstore"
	"github.com/beamhop/lightbox/volstore/backendtest"
	"golang.org/x/sys/unix"
)

// In the test VM this binary is PID 1: GuestMain mounts the XFS disk and
// runs the TestXFSGuest* tests (an init function, so that the package's
// TestMain stays free for others).
func init() { vmtest.GuestMain() }

// The disks TestXFSInVM attaches: XFS mounted with prjquota, and XFS
// mounted without quotas.
const (
	xfsDisk   = "xfs"
	plainDisk = "plain"
)

// TestXFSInVM boots a stock Debian kernel that has XFS quotas (this
// machine's kernel may have none) with this test binary as init and an XFS
// image mounted with prjquota, and runs the TestXFSGuest* tests there: one
// boot, a few seconds under TCG.
func TestXFSInVM(t *testing.T) {
	testutil.RootOnly(t)
	if vmtest.InGuest() {
		t.Skip("already inside the VM")
	}
	k := vmtest.Setup(t, "mkfs.xfs")
	img := filepath.Join(vmtest.ImageDir(t), "xfs.img")
	plain := filepath.Join(vmtest.ImageDir(t), "plain.img")
	for _, p := range []string{img, plain} {
		if err := vmtest.MakeXFSImage(t.Context(), p, 320<<20); err != nil {
			t.Fatal(err)
		}
	}
	vmtest.Boot(t, vmtest.Config{
		Kernel:  k,
		Args:    []string{"-test.run=^TestXFSGuest", "-test.v", "-test.count=1"},
		Modules: []string{"xfs", "overlay"},
		Disks: []vmtest.Disk{
			{Name: xfsDisk, Image: img, FSType: "xfs", Options: "prjquota"},
			{Name: plainDisk, Image: plain, FSType: "xfs"},
		},
		Timeout: 4 * time.Minute,
	})
}

// TestXFSQuotaUnsupportedHere: on a filesystem that is not XFS with
// prjquota (a temp dir on the host, or anywhere in the rootless pass) the
// probe says no, and the backend refuses with the reason.
func TestXFSQuotaUnsupportedHere(t *testing.T) {
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == unix.XFS_SUPER_MAGIC && os.Geteuid() == 0 {
		t.Skip("the temp dir is on XFS as root: nothing to refuse here (the VM test covers XFS)")
	}
	ok, err := volstore.XFSQuotaAvailable(dir)
	if ok || err != nil {
		t.Errorf("XFSQuotaAvailable(%s) = %v, %v; want false, nil", dir, ok, err)
	}
	err = volstore.CheckXFSQuota(dir)
	if !errors.Is(err, errdefs.ErrQuotaUnsupported) || !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("CheckXFSQuota(%s) = %v, want ErrQuotaUnsupported", dir, err)
	}
	if _, err := volstore.NewXFSBackend(dir, volstore.XFSOptions{}); !errors.Is(err, errdefs.ErrQuotaUnsupported) {
		t.Errorf("NewXFSBackend(%s) = %v, want ErrQuotaUnsupported", dir, err)
	}
	if _, err := volstore.XFSQuotaAvailable(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("XFSQuotaAvailable(missing dir) error = %v, want ErrNotExist", err)
	}
}

// newGuestStore makes a store directory on the VM's XFS disk and its
// backend (registering ids in the guest's /etc, as on a real machine).
func newGuestStore(t *testing.T, name string) (*volstore.XFSBackend, string) {
	t.Helper()
	vmtest.GuestOnly(t)
	root := filepath.Join(vmtest.MountPoint(xfsDisk), name)
	if err := os.MkdirAll(filepath.Join(root, "volumes"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	b, err := volstore.NewXFSBackend(root, volstore.XFSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return b, root
}

// createVolume creates root/volumes/name/data with a limit.
func createVolume(t *testing.T, b *volstore.XFSBackend, root, name string, limit int64) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, "volumes", name), 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(root, "volumes", name, "data")
	if err := b.Create(t.Context(), data, limit, 0, 0, 0o755); err != nil {
		t.Fatalf("Create(%s, %d): %v", data, limit, err)
	}
	return data
}

// fill writes zeros into dir/name until the kernel refuses or max bytes
// are written; it returns how much was written and the error that stopped
// it.
func fill(t *testing.T, path string, max int64) (int64, error) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 256<<10)
	var n int64
	for n < max {
		w, err := f.Write(buf)
		n += int64(w)
		if err != nil {
			f.Close()
			return n, err
		}
	}
	// Delayed allocation: the limit may only bite on writeback.
	if err := f.Sync(); err != nil {
		f.Close()
		return n, err
	}
	return n, f.Close()
}

func registryLines(t *testing.T) (projects, projid string) {
	t.Helper()
	p, _ := os.ReadFile("/etc/projects")
	n, _ := os.ReadFile("/etc/projid")
	return string(p), string(n)
}

func registered(t *testing.T, id uint32) (name, path string) {
	t.Helper()
	p, n := registryLines(t)
	for _, l := range strings.Split(p, "\n") {
		if a, b, ok := strings.Cut(l, ":"); ok && a == fmt.Sprint(id) {
			path = b
		}
	}
	for _, l := range strings.Split(n, "\n") {
		if a, b, ok := strings.Cut(l, ":"); ok && b == fmt.Sprint(id) {
			name = a
		}
	}
	return name, path
}

func TestXFSGuestLimitHolds(t *testing.T) {
	b, root := newGuestStore(t, "store-limit")
	const limit = 8 << 20
	data := createVolume(t, b, root, "cache", limit)

	id, err := volstore.XFSProject(data)
	if err != nil || id == 0 {
		t.Fatalf("project of %s = %d, %v; want an id", data, id, err)
	}
	name, path := registered(t, id)
	if path != data || !strings.HasPrefix(name, "lightbox-") || !strings.HasSuffix(name, "-volumes-cache") {
		t.Errorf("registry for id %d: name %q path %q; want lightbox-<hash>-volumes-cache and %s", id, name, path, data)
	}
	if l, _, _, err := volstore.XFSQuota(data, id); err != nil || l != limit {
		t.Errorf("hard limit of project %d = %d, %v; want %d", id, l, err, limit)
	}

	// What df inside a sandbox shows: the project's limit as the size.
	var st unix.Statfs_t
	if err := unix.Statfs(data, &st); err != nil {
		t.Fatal(err)
	}
	if size := int64(st.Blocks) * st.Bsize; size != limit {
		t.Errorf("statfs(%s) size = %d, want the limit %d", data, size, limit)
	}

	if _, err := fill(t, filepath.Join(data, "half"), 4<<20); err != nil {
		t.Fatalf("writing 4 MiB under an 8 MiB limit: %v", err)
	}
	used, known, err := b.Usage(t.Context(), data)
	if err != nil || !known || used < 4<<20 || used > 5<<20 {
		t.Errorf("Usage after 4 MiB = %d, %v, %v; want about 4 MiB, known", used, known, err)
	}
	if su, sknown, err := volstore.StatfsUsage(root, data); err != nil || !sknown || su != used {
		t.Errorf("statfs usage (the rootless path) = %d, %v, %v; want %d like Q_XGETQUOTA", su, sknown, err, used)
	}

	// Subdirectories inherit the project: the limit covers the tree.
	sub := filepath.Join(data, "a", "b")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if sid, _ := volstore.XFSProject(sub); sid != id {
		t.Errorf("project of %s = %d, want the volume's %d (PROJINHERIT)", sub, sid, id)
	}
	n, err := fill(t, filepath.Join(sub, "big"), 64<<20)
	t.Logf("at the %d-byte quota, after %d more bytes, the kernel said: %v", limit, n, err)
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("writing 64 MiB under an 8 MiB limit: %d bytes, error %v; want ENOSPC", n, err)
	}
	used, known, err = b.Usage(t.Context(), data)
	if err != nil || !known || used > limit || used < limit-1<<20 {
		t.Errorf("Usage at the limit = %d, %v, %v; want about %d", used, known, err, limit)
	}

	// Deleting frees the quota again.
	if err := os.Remove(filepath.Join(sub, "big")); err != nil {
		t.Fatal(err)
	}
	if _, err := fill(t, filepath.Join(sub, "again"), 2<<20); err != nil {
		t.Errorf("writing after freeing space: %v", err)
	}

	// A volume without a limit is a plain directory: no project, no cap.
	free := createVolume(t, b, root, "free", 0)
	if fid, _ := volstore.XFSProject(free); fid != 0 {
		t.Errorf("project of an unlimited volume = %d, want none", fid)
	}
	if _, err := fill(t, filepath.Join(free, "big"), 16<<20); err != nil {
		t.Errorf("writing 16 MiB into an unlimited volume: %v", err)
	}
	if _, known, err := b.Usage(t.Context(), free); known || err != nil {
		t.Errorf("Usage of an unlimited volume: known %v, err %v; want unknown", known, err)
	}

	// Remove deletes the data and frees the id.
	if err := b.Remove(t.Context(), data); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Remove, stat %s: %v; want it gone", data, err)
	}
	if name, path := registered(t, id); name != "" || path != "" {
		t.Errorf("after Remove, id %d still registered as %q %q", id, name, path)
	}
	if l, _, _, err := volstore.XFSQuota(root, id); err == nil && l != 0 {
		t.Errorf("after Remove, project %d keeps a limit of %d", id, l)
	}
	if err := b.Remove(t.Context(), free); err != nil {
		t.Fatal(err)
	}
}

func TestXFSGuestOwnership(t *testing.T) {
	b, root := newGuestStore(t, "store-owner")
	data := filepath.Join(root, "volumes", "owned")
	if err := b.Create(t.Context(), data, 1<<20, 1000, 1001, 0o2750); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(data, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 1000 || st.Gid != 1001 || st.Mode&0o7777 != 0o2750 {
		t.Errorf("data dir %d:%d mode %o, want 1000:1001 mode 2750", st.Uid, st.Gid, st.Mode&0o7777)
	}
	if err := b.Create(t.Context(), data, 1<<20, 0, 0, 0o755); !errors.Is(err, os.ErrExist) {
		t.Errorf("Create over an existing dir = %v, want ErrExist", err)
	}
	if id, _ := volstore.XFSProject(data); id == 0 {
		t.Errorf("the failed second Create took the first one's project away")
	}
	if err := b.Remove(t.Context(), data); err != nil {
		t.Fatal(err)
	}
}

// TestXFSGuestTwoStores: two stores on one filesystem allocate at the same
// time and never share a project id, and one's full volume leaves the
// other's writable.
func TestXFSGuestTwoStores(t *testing.T) {
	a, rootA := newGuestStore(t, "store-a")
	b, rootB := newGuestStore(t, "store-b")
	const n = 6
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		for _, s := range []struct {
			b    *volstore.XFSBackend
			root string
		}{{a, rootA}, {b, rootB}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				dir := filepath.Join(s.root, "volumes", fmt.Sprintf("v%d", i))
				errs <- s.b.Create(context.Background(), dir, 2<<20, 0, 0, 0o755)
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	seen := map[uint32]string{}
	names := map[string]bool{}
	for _, root := range []string{rootA, rootB} {
		for i := range n {
			dir := filepath.Join(root, "volumes", fmt.Sprintf("v%d", i))
			id, err := volstore.XFSProject(dir)
			if err != nil || id == 0 {
				t.Fatalf("project of %s = %d, %v", dir, id, err)
			}
			if other, dup := seen[id]; dup {
				t.Errorf("project id %d given to both %s and %s", id, other, dir)
			}
			seen[id] = dir
			name, path := registered(t, id)
			if path != dir || names[name] {
				t.Errorf("id %d registered as %q for %q; want a unique name for %s", id, name, path, dir)
			}
			names[name] = true
		}
	}
	t.Logf("%d volumes in two stores got %d distinct project ids", 2*n, len(seen))

	fullA := filepath.Join(rootA, "volumes", "v0")
	if _, err := fill(t, filepath.Join(fullA, "f"), 8<<20); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("filling %s: %v, want ENOSPC", fullA, err)
	}
	if _, err := fill(t, filepath.Join(rootB, "volumes", "v0", "f"), 1<<20); err != nil {
		t.Errorf("store B's volume is not writable after store A's filled up: %v", err)
	}
	for _, root := range []string{rootA, rootB} {
		s := a
		if root == rootB {
			s = b
		}
		for i := range n {
			if err := s.Remove(t.Context(), filepath.Join(root, "volumes", fmt.Sprintf("v%d", i))); err != nil {
				t.Error(err)
			}
		}
	}
	for id := range seen {
		if name, path := registered(t, id); name != "" || path != "" {
			t.Errorf("after removing every volume, id %d is still registered as %q %q", id, name, path)
		}
	}
}

// TestXFSGuestCrashLeftovers: what a crash or an admin leaves behind never
// makes two directories share an id, and stale registrations are reclaimed.
func TestXFSGuestCrashLeftovers(t *testing.T) {
	b, root := newGuestStore(t, "store-crash")
	other, rootOther := newGuestStore(t, "store-crash-other")

	// A registration lost while its directory lives on (an edited
	// /etc/projid, a restored /etc): the id is still in use on the
	// filesystem, so another store must not get it.
	kept := createVolume(t, b, root, "kept", 4<<20)
	keptID, _ := volstore.XFSProject(kept)
	p, n := registryLines(t)
	drop := func(s, needle string) string {
		var out []string
		for _, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
			if !strings.Contains(l, needle) {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n") + "\n"
	}
	os.WriteFile("/etc/projects", []byte(drop(p, fmt.Sprintf("%d:", keptID))), 0o644)
	os.WriteFile("/etc/projid", []byte(drop(n, fmt.Sprintf(":%d", keptID))), 0o644)
	fresh := createVolume(t, other, rootOther, "fresh", 4<<20)
	freshID, _ := volstore.XFSProject(fresh)
	if freshID == keptID {
		t.Errorf("a new volume got id %d, still used by %s whose registration was lost", keptID, kept)
	}
	// Activate (as after a reboot) restores the lost registration.
	if err := b.Activate(t.Context(), kept); err != nil {
		t.Fatal(err)
	}
	if name, path := registered(t, keptID); path != kept || !strings.HasSuffix(name, "-volumes-kept") {
		t.Errorf("after Activate, id %d registered as %q %q; want %s", keptID, name, path, kept)
	}

	// A directory renamed behind the backend's back keeps its id (the
	// inode carries it); Activate records the new path.
	moved := filepath.Join(root, "volumes", "moved")
	if err := os.Rename(filepath.Join(root, "volumes", "kept"), moved); err != nil {
		t.Fatal(err)
	}
	movedData := filepath.Join(moved, "data")
	again := createVolume(t, b, root, "again", 4<<20)
	if id, _ := volstore.XFSProject(again); id == keptID {
		t.Errorf("a new volume got id %d of a renamed, live volume", id)
	}
	if err := b.Activate(t.Context(), movedData); err != nil {
		t.Fatal(err)
	}
	if _, path := registered(t, keptID); path != movedData {
		t.Errorf("after Activate of the moved volume, id %d points at %q, want %s", keptID, path, movedData)
	}

	// A crash after deleting a volume's data but before freeing its id:
	// the next allocation reclaims the registration.
	gone := createVolume(t, b, root, "gone", 4<<20)
	goneID, _ := volstore.XFSProject(gone)
	if _, err := fill(t, filepath.Join(gone, "f"), 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(gone); err != nil {
		t.Fatal(err)
	}
	next := createVolume(t, b, root, "next", 4<<20)
	nextID, _ := volstore.XFSProject(next)
	if _, path := registered(t, goneID); path == gone {
		t.Errorf("stale registration of deleted %s (id %d) was not reclaimed", gone, goneID)
	}
	if nextID != goneID {
		if l, _, _, err := volstore.XFSQuota(root, goneID); err == nil && l != 0 {
			t.Errorf("reclaimed id %d keeps its old limit %d", goneID, l)
		}
	}
	// Remove of a directory that is already gone frees what is left.
	if err := b.Remove(t.Context(), gone); err != nil {
		t.Errorf("Remove of an already deleted dir: %v", err)
	}
	for _, d := range []string{movedData, again, next} {
		if err := b.Remove(t.Context(), d); err != nil {
			t.Error(err)
		}
	}
	if err := other.Remove(t.Context(), fresh); err != nil {
		t.Error(err)
	}
}

// TestXFSGuestDirQuota: a sandbox's writable layer capped the same way.
func TestXFSGuestDirQuota(t *testing.T) {
	b, root := newGuestStore(t, "store-upper")
	upper := filepath.Join(root, "sandboxes", "sb1", "upper")
	if err := os.MkdirAll(upper, 0o755); err != nil {
		t.Fatal(err)
	}
	release, err := b.SetDirQuota(t.Context(), upper, 3<<20)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := volstore.XFSProject(upper)
	if name, _ := registered(t, id); !strings.HasSuffix(name, "-sandboxes-sb1-upper") {
		t.Errorf("upper dir registered as %q", name)
	}
	n, err := fill(t, filepath.Join(upper, "f"), 16<<20)
	t.Logf("upper dir capped at 3 MiB: %d bytes written, then %v", n, err)
	if !errors.Is(err, unix.ENOSPC) {
		t.Errorf("writing 16 MiB into a 3 MiB upper dir: %v, want ENOSPC", err)
	}
	if err := release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(upper); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("release left %s: %v", upper, err)
	}
	if name, path := registered(t, id); name != "" || path != "" {
		t.Errorf("release left id %d registered as %q %q", id, name, path)
	}
}

// TestXFSGuestQuotactlDevice: kernels before 5.14 have no quotactl_fd;
// the backend then reaches the filesystem through its block device.
func TestXFSGuestQuotactlDevice(t *testing.T) {
	b, root := newGuestStore(t, "store-dev")
	defer volstore.ForceQuotactlDevice()()
	data := createVolume(t, b, root, "v", 2<<20)
	if _, err := fill(t, filepath.Join(data, "f"), 8<<20); !errors.Is(err, unix.ENOSPC) {
		t.Errorf("filling a 2 MiB volume set up through the block device: %v, want ENOSPC", err)
	}
	if used, known, err := b.Usage(t.Context(), data); err != nil || !known || used < 1<<20 {
		t.Errorf("Usage through the block device = %d, %v, %v", used, known, err)
	}
	if err := b.Remove(t.Context(), data); err != nil {
		t.Fatal(err)
	}
}

// TestXFSGuestRegistryKeepsOthers: lines of other tools in /etc/projects
// and /etc/projid survive lightbox's rewrites, and their ids are avoided.
func TestXFSGuestRegistryKeepsOthers(t *testing.T) {
	b, root := newGuestStore(t, "store-others")
	p, n := registryLines(t)
	t.Cleanup(func() {
		os.WriteFile("/etc/projects", []byte(p), 0o644)
		os.WriteFile("/etc/projid", []byte(n), 0o644)
	})
	foreignP := "# admin's projects\n100000:/srv/www\n"
	foreignN := "# admin's names\nwww:100000\nlogs:100001\n"
	os.WriteFile("/etc/projects", []byte(p+foreignP), 0o644)
	os.WriteFile("/etc/projid", []byte(n+foreignN), 0o644)
	data := createVolume(t, b, root, "v", 1<<20)
	id, _ := volstore.XFSProject(data)
	if id == 100000 || id == 100001 {
		t.Errorf("allocated id %d, which the admin registered", id)
	}
	if err := b.Remove(t.Context(), data); err != nil {
		t.Fatal(err)
	}
	gotP, gotN := registryLines(t)
	if !bytes.Contains([]byte(gotP), []byte(foreignP)) || !bytes.Contains([]byte(gotN), []byte(foreignN)) {
		t.Errorf("foreign registry lines lost:\n/etc/projects:\n%s/etc/projid:\n%s", gotP, gotN)
	}
}

// TestXFSGuestConformance runs the suite every backend passes.
func TestXFSGuestConformance(t *testing.T) {
	vmtest.GuestOnly(t)
	n := 0
	backendtest.Run(t, func(t *testing.T) (volstore.Backend, string) {
		n++
		b, root := newGuestStore(t, fmt.Sprintf("store-suite-%d", n))
		return b, root
	})
}

// TestXFSGuestNoPrjquota: XFS mounted without prjquota is refused with
// the reason, and a volume with a project there does not activate (its
// limit would silently not hold).
func TestXFSGuestNoPrjquota(t *testing.T) {
	vmtest.GuestOnly(t)
	root := filepath.Join(vmtest.MountPoint(plainDisk), "store")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if ok, err := volstore.XFSQuotaAvailable(root); ok || err != nil {
		t.Errorf("XFSQuotaAvailable on XFS without prjquota = %v, %v; want false, nil", ok, err)
	}
	err := volstore.CheckXFSQuota(root)
	if !errors.Is(err, errdefs.ErrQuotaUnsupported) || !strings.Contains(err.Error(), "prjquota") {
		t.Errorf("CheckXFSQuota on XFS without prjquota = %v; want ErrQuotaUnsupported naming prjquota", err)
	}
	t.Logf("without prjquota: %v", err)
	if _, err := volstore.NewXFSBackend(root, volstore.XFSOptions{}); !errors.Is(err, errdefs.ErrQuotaUnsupported) {
		t.Errorf("NewXFSBackend on XFS without prjquota = %v, want ErrQuotaUnsupported", err)
	}

	// A volume made while the filesystem had prjquota, mounted without
	// it now (the project id stays on the inode).
	b, _ := newGuestStore(t, "store-elsewhere")
	data := filepath.Join(root, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := volstore.SetXFSProject(data, 4242); err != nil {
		t.Fatal(err)
	}
	if err := b.Activate(t.Context(), data); !errors.Is(err, errdefs.ErrQuotaUnsupported) {
		t.Errorf("Activate of a project dir on XFS without prjquota = %v, want ErrQuotaUnsupported", err)
	}
}

// TestXFSGuestOverlayUpperCap: a sandbox's writable layer, capped. The
// overlay's upper and work dirs both live in the capped directory (they
// must share its project: XFS refuses renames across projects with EXDEV,
// and overlayfs copies up through its work dir); copy-up and new files
// count against the cap, and the writer inside gets the kernel's ENOSPC.
func TestXFSGuestOverlayUpperCap(t *testing.T) {
	b, root := newGuestStore(t, "store-overlay")
	sb := filepath.Join(root, "sandboxes", "sb")
	lower, capped := filepath.Join(sb, "lower"), filepath.Join(sb, "fs")
	for _, d := range []string{lower, capped} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(lower, "big"), make([]byte, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	release, err := b.SetDirQuota(t.Context(), capped, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	upper, work, merged := filepath.Join(capped, "upper"), filepath.Join(capped, "work"), filepath.Join(capped, "rootfs")
	for _, d := range []string{upper, work, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// redirect_dir=nofollow, not off: Linux 6.1 refuses userxattr with
	// redirect_dir=off ("conflicting options"); neither creates redirects.
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work + ",userxattr,redirect_dir=nofollow,metacopy=off"
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay (%s): %v", opts, err)
	}
	defer unix.Unmount(merged, unix.MNT_DETACH)

	// Copy-up of a 2 MiB lower file: charged to the cap.
	f, err := os.OpenFile(filepath.Join(merged, "big"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatalf("copy-up through the capped upper dir: %v", err)
	}
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	id, _ := volstore.XFSProject(capped)
	if _, used, _, err := volstore.XFSQuota(capped, id); err != nil || used < 2<<20 {
		t.Errorf("project use after copy-up = %d, %v; want the copied 2 MiB counted", used, err)
	}
	n, err := fill(t, filepath.Join(merged, "new"), 16<<20)
	t.Logf("writing through the overlay into a 4 MiB upper cap: %d bytes, then the kernel said: %v", n, err)
	if !errors.Is(err, unix.ENOSPC) {
		t.Errorf("writing 16 MiB through the overlay: %v, want ENOSPC", err)
	}
	if err := unix.Unmount(merged, 0); err != nil {
		t.Fatal(err)
	}

	// Why the work dir goes inside: with it outside the project, copy-up
	// (a rename from work into upper) fails.
	if err := os.Remove(filepath.Join(upper, "new")); err != nil {
		t.Fatal(err)
	}
	outWork := filepath.Join(sb, "work-outside")
	upper2 := filepath.Join(capped, "upper2")
	for _, d := range []string{outWork, upper2} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts = "lowerdir=" + lower + ",upperdir=" + upper2 + ",workdir=" + outWork + ",userxattr,redirect_dir=nofollow,metacopy=off"
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay (%s): %v", opts, err)
	}
	_, err = os.OpenFile(filepath.Join(merged, "big"), os.O_WRONLY|os.O_APPEND, 0)
	t.Logf("copy-up with the work dir outside the capped dir: %v", err)
	if !errors.Is(err, unix.EXDEV) {
		t.Errorf("copy-up with the work dir outside the project = %v, want EXDEV", err)
	}
	// Releasing while something is still mounted inside is refused, and
	// leaves what is under the mount alone.
	if err := release(t.Context()); !errors.Is(err, unix.EBUSY) {
		t.Errorf("release with an overlay still mounted inside = %v, want EBUSY", err)
	}
	if _, err := os.Stat(filepath.Join(lower, "big")); err != nil {
		t.Errorf("lower file after a refused release: %v", err)
	}
	if err := unix.Unmount(merged, 0); err != nil {
		t.Fatal(err)
	}
	if err := release(t.Context()); err != nil {
		t.Fatal(err)
	}
}
