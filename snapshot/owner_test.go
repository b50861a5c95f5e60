package snapshot

import (
	"archive/tar"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/testutil"
	"golang.org/x/sys/unix"
)

// capNetRaw is a VFS_CAP_REVISION_2 security.capability granting
// cap_net_raw+ep.
func capNetRaw() string {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000001) // revision 2, effective
	binary.LittleEndian.PutUint32(b[4:], 1<<13)      // permitted: CAP_NET_RAW
	return string(b)
}

func ownersLayer(t testing.TB) []byte {
	pax := func(k, v string) map[string]string { return map[string]string{"SCHILY.xattr." + k: v} }
	hdr := func(name string, uid, gid int, mode int64) tar.Header {
		return tar.Header{Name: name, Uid: uid, Gid: gid, Mode: mode, Format: tar.FormatPAX}
	}
	dir := hdr("home/u/", 1000, 1000, 0o755) // searchable, so that the host test can look inside
	dir.Typeflag = tar.TypeDir
	su := hdr("bin/su", 0, 0, 0o4755)
	ping := hdr("bin/ping", 0, 0, 0o755)
	ping.PAXRecords = pax("security.capability", capNetRaw())
	apt := hdr("var/cache/apt/f", 100, 65534, 0o644) // readable: the host test reads its xattr
	apt.PAXRecords = pax("user.note", "hello")
	return testutil.Tar(t,
		testutil.TarFile{Hdr: tar.Header{Name: "bin/", Typeflag: tar.TypeDir}},
		testutil.TarFile{Hdr: tar.Header{Name: "home/", Typeflag: tar.TypeDir}},
		testutil.TarFile{Hdr: tar.Header{Name: "var/cache/apt/", Typeflag: tar.TypeDir}},
		testutil.TarFile{Hdr: dir},
		testutil.TarFile{Hdr: hdr("home/u/f", 1000, 1000, 0o600), Body: "mine"},
		testutil.TarFile{Hdr: su, Body: "su"},
		testutil.TarFile{Hdr: ping, Body: "ping"},
		testutil.TarFile{Hdr: apt, Body: "apt"},
		testutil.TarFile{Hdr: hdr("root-file", 0, 0, 0o644), Body: "root"},
	)
}

// TestOwnership imports a layer whose files belong to root, uid 100 and
// uid 1000, with a setuid file, a file capability and a user xattr, and
// checks the host owners are the ids the store's mapping gives them.
func TestOwnership(t *testing.T) {
	m := testMapping(t)
	mappings := map[string]idmap.Mapping{"detected": m}
	if os.Geteuid() != 0 {
		// The single-id fallback (no subordinate range): umoci's rootless
		// mode, every file owned by the caller.
		mappings["single"] = idmap.Mapping{
			UIDs: []idmap.Range{{ContainerID: 0, HostID: uint32(os.Getuid()), Size: 1}},
			GIDs: []idmap.Range{{ContainerID: 0, HostID: uint32(os.Getgid()), Size: 1}},
		}
	}
	layout := testutil.NewOCILayout(t)
	testutil.AddOCIImage(t, layout, "v", busyCfg, ownersLayer(t))
	for mname, m := range mappings {
		t.Run(mname, func(t *testing.T) {
			ctx := t.Context()
			s := openStoreAt(t, t.TempDir(), m, nil)
			sn, err := s.Import(ctx, "owners", layout, ImportOptions{})
			if err != nil {
				t.Fatal(err)
			}
			single := m.Single()
			for _, c := range []struct {
				path     string
				uid, gid uint32
				mode     os.FileMode
			}{
				{"home/u", 1000, 1000, os.ModeDir | 0o755},
				{"home/u/f", 1000, 1000, 0o600},
				{"bin/su", 0, 0, os.ModeSetuid | 0o755},
				{"bin/ping", 0, 0, 0o755},
				{"var/cache/apt/f", 100, 65534, 0o644},
				{"root-file", 0, 0, 0o644},
			} {
				p := filepath.Join(sn.Layers[0], c.path)
				fi, err := os.Lstat(p)
				if err != nil {
					t.Fatal(err)
				}
				st := fi.Sys().(*syscall.Stat_t)
				wantUID, ok1 := m.HostUID(c.uid)
				wantGID, ok2 := m.HostGID(c.gid)
				if single {
					wantUID, wantGID, ok1, ok2 = uint32(os.Getuid()), uint32(os.Getgid()), true, true
				}
				if !ok1 || !ok2 {
					t.Fatalf("mapping %s does not map %d:%d", m, c.uid, c.gid)
				}
				if st.Uid != wantUID || st.Gid != wantGID {
					t.Errorf("%s owner = %d:%d, want %d:%d (container %d:%d)", c.path, st.Uid, st.Gid, wantUID, wantGID, c.uid, c.gid)
				}
				wantMode := c.mode
				if single && fi.IsDir() {
					wantMode |= 0o700 // umoci's rootless mode keeps directories usable
				}
				if fi.Mode() != wantMode && !(single && fi.IsDir()) {
					t.Errorf("%s mode = %v, want %v", c.path, fi.Mode(), wantMode)
				}
			}
			buf := make([]byte, 64)
			n, err := unix.Lgetxattr(filepath.Join(sn.Layers[0], "var/cache/apt/f"), "user.note", buf)
			if err != nil || string(buf[:n]) != "hello" {
				t.Errorf("user.note = %q, %v; want hello", buf[:max(n, 0)], err)
			}
			if !single {
				n, err := unix.Lgetxattr(filepath.Join(sn.Layers[0], "bin/ping"), "security.capability", buf)
				if err != nil || n < 20 {
					t.Errorf("security.capability of bin/ping: %d bytes, %v; want the capability kept", n, err)
				} else if perm := binary.LittleEndian.Uint32(buf[4:]); perm != 1<<13 {
					t.Errorf("security.capability permitted = %#x, want CAP_NET_RAW", perm)
				}
			}
			// A root filesystem directory with these owners (the layer
			// directory itself) imports with the same owners.
			again, err := s.Import(ctx, "again", sn.Layers[0], ImportOptions{Format: FormatRootfsDir})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{"home/u/f", "bin/su", "var/cache/apt/f", "root-file"} {
				a, err1 := os.Lstat(filepath.Join(sn.Layers[0], p))
				b, err2 := os.Lstat(filepath.Join(again.Layers[0], p))
				if err1 != nil || err2 != nil {
					t.Fatal(err1, err2)
				}
				sa, sb := a.Sys().(*syscall.Stat_t), b.Sys().(*syscall.Stat_t)
				if sa.Uid != sb.Uid || sa.Gid != sb.Gid || a.Mode() != b.Mode() {
					t.Errorf("%s re-imported as a directory: %d:%d %v, want %d:%d %v", p, sb.Uid, sb.Gid, b.Mode(), sa.Uid, sa.Gid, a.Mode())
				}
			}
			if err := s.Remove(ctx, "again"); err != nil {
				t.Fatal(err)
			}
			// Removing the snapshot removes trees of other owners too.
			if err := s.Remove(ctx, "owners"); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(sn.Layers[0]); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("layer after Remove: %v", err)
			}
		})
	}
}

// TestKilledImport kills an importing process at several points and
// checks the same import then succeeds and leaves nothing behind.
func TestKilledImport(t *testing.T) {
	ctx := t.Context()
	m := testMapping(t)
	root := t.TempDir()
	s := openStoreAt(t, root, m, nil)
	layout := slowUnpackLayout(t)

	kill := func(wait func(*exec.Cmd) bool) {
		t.Helper()
		cmd := exec.Command("/proc/self/exe", "-test.run=^$")
		cmd.Env = append(os.Environ(), envChildImport+"="+root+" victim "+layout)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killed := wait(cmd)
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		t.Logf("killed=%v: %v", killed, err)
	}
	// At fixed delays: before, during and after the blob copy.
	for _, d := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond} {
		kill(func(*exec.Cmd) bool { time.Sleep(d); return true })
		if _, err := s.Get(ctx, "victim"); err == nil {
			// The child finished before the kill: start over.
			if err := s.Remove(ctx, "victim"); err != nil {
				t.Fatal(err)
			}
		}
	}
	// While a layer is being unpacked: when its temporary directory shows.
	kill(func(*exec.Cmd) bool {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			ents, _ := os.ReadDir(s.tmp)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), tmpPrefix+"unpack-") {
					return true
				}
			}
			time.Sleep(time.Millisecond)
		}
		return false
	})
	if _, err := s.Get(ctx, "victim"); err == nil {
		t.Log("the import finished before the kill")
	}
	sn, err := s.Import(ctx, "victim", layout, ImportOptions{Replace: true})
	if err != nil {
		t.Fatalf("import after kills: %v", err)
	}
	if len(sn.Layers) != 2 {
		t.Fatalf("layers = %v", sn.Layers)
	}
	// A collection leaves only the snapshot's blobs and layers. An
	// unpacker orphaned by a kill may still hold its directory for a
	// moment: wait for it, with a deadline.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := s.GC(ctx); err != nil {
			t.Fatal(err)
		}
		st := storeState(t, s)
		var extra []string
		for _, e := range st {
			if strings.HasPrefix(e, "tmp/") || strings.HasPrefix(e, "oci/") {
				extra = append(extra, e)
			}
		}
		if n := countDir(t, s.layersDir()); len(extra) == 0 && n == 2 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("left behind: %v, %d layer dirs", extra, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := countDir(t, filepath.Join(s.ociDir(), "blobs", "sha256")); n != 4 {
		t.Fatalf("%d blobs, want 4 (manifest, config, 2 layers)", n)
	}
}

// TestKilledUnpackLeavesNoLock: an import killed while it unpacked a
// layer, and never tried again, leaves nothing after a gc: not the
// layer's lock file either, which no layer directory will ever free.
func TestKilledUnpackLeavesNoLock(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	s := openStoreAt(t, root, testMapping(t), nil)
	layout := slowUnpackLayout(t)

	// Kill the importer once its unpack's temporary directory shows (the
	// layer's lock is taken by then), until one such kill leaves no
	// snapshot (the import did not finish in between).
	unpacking := func() bool {
		ents, _ := os.ReadDir(s.tmp)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), tmpPrefix+"unpack-") {
				return true
			}
		}
		return false
	}
	for attempt := 0; ; attempt++ {
		if attempt == 5 {
			t.Fatal("every import finished before it was killed")
		}
		cmd := exec.Command("/proc/self/exe", "-test.run=^$")
		cmd.Env = append(os.Environ(), envChildImport+"="+root+" victim "+layout)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for !unpacking() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if _, err := s.Get(ctx, "victim"); err != nil {
			break
		}
		if err := s.Remove(ctx, "victim"); err != nil {
			t.Fatal(err)
		}
	}
	// An unpacker orphaned by the kill may hold its directory a moment.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := s.GC(ctx); err != nil {
			t.Fatal(err)
		}
		tmps, _ := os.ReadDir(s.tmp)
		if len(tmps) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, d := range []string{s.layersDir(), filepath.Join(root, "locks"), s.tmp} {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			t.Errorf("left after the killed import and gc: %s", filepath.Join(filepath.Base(d), e.Name()))
		}
	}
}

// slowUnpackLayout is an OCI layout whose image "v" is busybox plus a
// layer of 3000 files (~48 MB), large enough for its unpack to take a
// while: long enough to kill an import in the middle of it.
func slowUnpackLayout(t *testing.T) string {
	t.Helper()
	var files []testutil.TarFile
	body := strings.Repeat("lightbox snapshot data ", 700)
	for i := range 3000 {
		files = append(files, testutil.TarFile{Hdr: tar.Header{Name: "d" + string(rune('a'+i%26)) + "/f" + strconv.Itoa(i)}, Body: body})
	}
	layout := testutil.NewOCILayout(t)
	testutil.AddOCIImage(t, layout, "v", busyCfg, testutil.TarDir(t, testutil.BusyboxRootfs(t)), testutil.Tar(t, files...))
	return layout
}
