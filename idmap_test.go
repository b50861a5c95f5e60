//go:build linux

package lightbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/testutil"
	"golang.org/x/sys/unix"
)

// readStoreFile reads root's store.json.
func readStoreFile(t *testing.T, root string) storeFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "store.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sf storeFile
	if err := json.Unmarshal(data, &sf); err != nil {
		t.Fatal(err)
	}
	return sf
}

// subRanges reads the [start, start+count) intervals of a subuid/subgid
// file.
func subRanges(t *testing.T, p string) [][2]uint64 {
	t.Helper()
	f, err := os.Open(p)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][2]uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(p) != 3 {
			continue
		}
		a, err1 := strconv.ParseUint(p[1], 10, 32)
		n, err2 := strconv.ParseUint(p[2], 10, 32)
		if err1 == nil && err2 == nil {
			out = append(out, [2]uint64{a, a + n})
		}
	}
	return out
}

func TestRootStoreGetsPrivateRange(t *testing.T) {
	testutil.RootOnly(t)
	a := filepath.Join(t.TempDir(), "a")
	b := filepath.Join(t.TempDir(), "b")
	for _, root := range []string{a, b} {
		r, err := Open(Options{Root: root})
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
	}
	ma, mb := readStoreFile(t, a).Mapping, readStoreFile(t, b).Mapping
	ba, ok1 := ma.PrivateRange()
	bb, ok2 := mb.PrivateRange()
	if !ok1 || !ok2 {
		t.Fatalf("root stores map %s and %s, want private ranges", ma, mb)
	}
	if uint64(ba) < uint64(bb)+idmap.RangeSize && uint64(bb) < uint64(ba)+idmap.RangeSize {
		t.Errorf("two stores got overlapping ranges: %s and %s", ma, mb)
	}
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		for _, iv := range subRanges(t, f) {
			for _, base := range []uint32{ba, bb} {
				if iv[0] < uint64(base)+idmap.RangeSize && uint64(base) < iv[1] {
					t.Errorf("range at %d overlaps the %s entry %d–%d", base, f, iv[0], iv[1]-1)
				}
			}
		}
	}
	// Reopening keeps the range.
	r, err := Open(Options{Root: a})
	if err != nil {
		t.Fatal(err)
	}
	if !r.mapping.Equal(ma) {
		t.Errorf("reopened store maps %s, want its recorded %s", r.mapping, ma)
	}
	r.Close()
}

// TestRemovedStoreRangeReused uses a registry of its own: other root
// processes on this host may take a freed range of the real one.
func TestRemovedStoreRangeReused(t *testing.T) {
	testutil.RootOnly(t)
	saved := ranges
	ranges = &idmap.Registry{Dir: t.TempDir(), Slots: 1}
	t.Cleanup(func() { ranges = saved })
	first := filepath.Join(t.TempDir(), "first")
	r, err := Open(Options{Root: first})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	m := readStoreFile(t, first).Mapping
	second := filepath.Join(t.TempDir(), "second")
	_, err = Open(Options{Root: second})
	if err == nil || !strings.Contains(err.Error(), first) || !strings.Contains(err.Error(), "no free id range") {
		t.Fatalf("a second store with one range held = %v, want an error naming the range's store %s", err, first)
	}
	if err := os.RemoveAll(first); err != nil {
		t.Fatal(err)
	}
	r, err = Open(Options{Root: second})
	if err != nil {
		t.Fatalf("once the first store is gone: %v", err)
	}
	r.Close()
	if got := readStoreFile(t, second).Mapping; !got.Equal(m) {
		t.Errorf("second store got %s, want the removed store's range %s", got, m)
	}
}

func TestIdentityMappingOptIn(t *testing.T) {
	testutil.RootOnly(t)
	root := filepath.Join(t.TempDir(), "store")
	r, err := Open(Options{Root: root, IDMapping: IDMappingIdentity})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	sf := readStoreFile(t, root)
	if !sf.Mapping.IsIdentity() || !sf.IdentityMapping {
		t.Fatalf("store.json = %+v, want the identity, recorded as asked for", sf)
	}
	// Later opens need not repeat it, and do not warn.
	var logs bytes.Buffer
	r, err = Open(Options{Root: root, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if strings.Contains(logs.String(), "identity") {
		t.Errorf("opening a store made with the identity on purpose warned: %s", logs.String())
	}
	_, err = Open(Options{Root: root, IDMapping: IDMappingRange})
	if err == nil || !strings.Contains(err.Error(), idmap.Identity().String()) {
		t.Errorf("a range asked of an identity store = %v, want a refusal naming %q", err, idmap.Identity().String())
	}

	rangeRoot := filepath.Join(t.TempDir(), "store")
	r, err = Open(Options{Root: rangeRoot})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	rec := readStoreFile(t, rangeRoot).Mapping
	_, err = Open(Options{Root: rangeRoot, IDMapping: IDMappingIdentity})
	if err == nil || !strings.Contains(err.Error(), rec.String()) {
		t.Errorf("identity asked of a range store = %v, want a refusal naming %q", err, rec.String())
	}
	if got := readStoreFile(t, rangeRoot).Mapping; !got.Equal(rec) {
		t.Errorf("a refused open changed the recorded mapping to %s", got)
	}
}

func TestIDMappingRootlessRefused(t *testing.T) {
	testutil.RootlessOnly(t)
	for _, m := range []IDMapping{IDMappingIdentity, IDMappingRange} {
		_, err := Open(Options{Root: filepath.Join(t.TempDir(), "store"), IDMapping: m})
		if err == nil || !strings.Contains(err.Error(), "only real root") {
			t.Errorf("rootless Open with IDMapping %q = %v, want a refusal", m, err)
		}
	}
	_, err := Open(Options{Root: filepath.Join(t.TempDir(), "store"), IDMapping: "bogus"})
	if err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("Open with IDMapping \"bogus\" = %v, want an error naming it", err)
	}
}

// busyboxStore opens a new store in a temporary directory, closed when
// the test ends, with the busybox rootfs imported as "busybox".
func busyboxStore(t *testing.T) (*Runtime, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "store")
	r, err := Open(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	importBusybox(t, r)
	return r, root
}

// importBusybox imports the busybox rootfs as "busybox".
func importBusybox(t *testing.T, r *Runtime) {
	t.Helper()
	if _, err := r.ImportSnapshot(t.Context(), "busybox", testutil.BusyboxRootfs(t), ImportOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestOldIdentityStoreWarnsOnce: a store made by root before private
// ranges (store.json with the identity, not marked as asked for) keeps
// working, and Open says once that its sandboxes' root is the host's.
func TestOldIdentityStoreWarnsOnce(t *testing.T) {
	testutil.RootOnly(t)
	root := filepath.Join(t.TempDir(), "store")
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}
	old := map[string]any{"version": 1, "mapping": idmap.Identity(), "createdAt": time.Now().UTC()}
	data, _ := json.Marshal(old)
	if err := os.WriteFile(filepath.Join(root, "store.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	r, err := Open(Options{Root: root, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	importBusybox(t, r)
	err = r.RunInSandbox(t.Context(), SandboxOptions{Snapshot: "busybox", Network: NetworkNone}, func(sb *Sandbox) error {
		res, err := sb.Shell(t.Context(), "touch /f && stat -c %u /f")
		if err == nil && strings.TrimSpace(string(res.Stdout)) != "0" {
			t.Errorf("in an identity store the sandbox's root writes as %q, want 0", res.Stdout)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "host's root"); n != 1 {
		t.Errorf("warnings about the identity mapping: %d, want 1:\n%s", n, logs.String())
	}
	if !readStoreFile(t, root).Mapping.IsIdentity() {
		t.Error("opening an old store changed its mapping")
	}
}

// statOwner returns a host path's owner.
func statOwner(t *testing.T, p string) (uint32, uint32, uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid, st.Mode
}

// testUser is the ordinary user of the harness (LIGHTBOX_TEST_USER,
// lbtest by default).
func testUser(t *testing.T) (uint32, uint32) {
	t.Helper()
	_, uid, gid := testutil.TestUser(t)
	return uint32(uid), uint32(gid)
}

// TestRangeStoreOwnership: in a store with a private range, what the
// sandbox's root writes in its upper dir and in a volume is owned by the
// range on the host, never by root; a bind of a directory an ordinary
// user owns is written as that user, and a setuid file planted there
// (break 4 of issue 12) is neither root's nor setuid-effective inside;
// a root-owned directory shared read-write is written as root (the one
// place, as documented).
func TestRangeStoreOwnership(t *testing.T) {
	testutil.RootOnly(t)
	uid, gid := testUser(t)
	r, err := Open(Options{Root: filepath.Join(t.TempDir(), "store")})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	base, ok := r.mapping.PrivateRange()
	if !ok {
		t.Fatalf("root store maps %s, want a private range", r.mapping)
	}
	importBusybox(t, r)
	// The layers are the range's too.
	if u, _, _ := statOwner(t, filepath.Join(r.root, "snapshots", "layers")); u != 0 {
		t.Errorf("layers dir owned by %d, want root (store metadata)", u)
	}
	ents, _ := os.ReadDir(filepath.Join(r.root, "snapshots", "layers"))
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if u, _, _ := statOwner(t, filepath.Join(r.root, "snapshots", "layers", e.Name(), "bin", "busybox")); u != base {
			t.Errorf("layer %s: /bin/busybox owned by %d, want the range's root %d", e.Name(), u, base)
		}
	}

	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	proj := filepath.Join(dir, "proj")
	shared := filepath.Join(dir, "shared")
	for _, d := range []string{proj, shared} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(proj, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}
	sb, err := r.LaunchSandbox(t.Context(), SandboxOptions{
		Snapshot: "busybox", Network: NetworkNone,
		Mounts: map[string]Mount{
			"/work":  {Source: proj},
			"/share": {Source: shared},
			"/vol":   {Volume: "v"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(context.WithoutCancel(t.Context()))
	res, err := sb.Shell(t.Context(), `set -e
echo x > /upper-file
echo x > /vol/f
mkdir /work/node_modules && echo x > /work/node_modules/f
cp /bin/busybox /work/rs && chmod 4755 /work/rs
echo x > /share/f
stat -c '%u %g' /work /work/rs
grep -E ' /(work|share|vol) ' /proc/self/mountinfo`)
	if err != nil {
		t.Fatalf("%v: %s", err, res.Stderr)
	}
	lines := strings.Split(strings.TrimSpace(string(res.Stdout)), "\n")
	if lines[0] != "0 0" || lines[1] != "0 0" {
		t.Errorf("inside, /work and /work/rs are owned by %q and %q, want the sandbox's root (0 0)", lines[0], lines[1])
	}
	for _, l := range lines[2:] {
		f := strings.Fields(l)
		if len(f) < 6 || !strings.Contains(f[5], "nosuid") || !strings.Contains(f[5], "nodev") {
			t.Errorf("bind without nosuid,nodev: %s", l)
		}
		if len(f) > 4 && (f[4] == "/work" || f[4] == "/share") && !strings.Contains(f[5], "idmapped") {
			t.Errorf("host bind not idmapped: %s", l)
		}
	}

	upper := filepath.Join(r.root, "sandboxes", sb.Name(), "upper", "upper-file")
	if u, g, _ := statOwner(t, upper); u != base || g != base {
		t.Errorf("file written by the sandbox's root in its upper dir: owner %d:%d on the host, want the range's root %d", u, g, base)
	}
	if u, g, _ := statOwner(t, filepath.Join(r.root, "volumes", "v", "data", "f")); u != base || g != base {
		t.Errorf("file written by the sandbox's root in a volume: owner %d:%d on the host, want the range's root %d", u, g, base)
	}
	for _, p := range []string{"node_modules", "node_modules/f", "rs"} {
		if u, g, _ := statOwner(t, filepath.Join(proj, p)); u != uid || g != gid {
			t.Errorf("%s in a checkout of uid %d: owner %d:%d on the host, want the checkout's owner", p, uid, u, g)
		}
	}
	// The planted setuid file is the user's, not root's: running it gives
	// nobody more than that user has.
	if u, _, mode := statOwner(t, filepath.Join(proj, "rs")); u == 0 {
		t.Errorf("planted setuid file: owner %d mode %o on the host: a root escalation", u, mode)
	}
	// Only the files the sandbox wrote changed in the checkout.
	ents, _ = os.ReadDir(proj)
	if len(ents) != 2 {
		t.Errorf("checkout holds %d entries, want node_modules and rs", len(ents))
	}
	if u, g, _ := statOwner(t, proj); u != uid || g != gid {
		t.Errorf("checkout now owned by %d:%d, want %d:%d", u, g, uid, gid)
	}
	if u, _, _ := statOwner(t, filepath.Join(shared, "f")); u != 0 {
		t.Errorf("file written in a root-owned shared dir: owner %d, want root (documented)", u)
	}
}

// TestRangeStoreSetuidBindNotEffective: a setuid file in a bind does not
// raise an ordinary user inside the sandbox (nosuid), whoever owns it.
func TestRangeStoreSetuidBindNotEffective(t *testing.T) {
	testutil.RootOnly(t)
	r, err := Open(Options{Root: filepath.Join(t.TempDir(), "store")})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	importBusybox(t, r)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	err = r.RunInSandbox(t.Context(), SandboxOptions{
		Snapshot: "busybox", Network: NetworkNone, Mounts: map[string]Mount{"/work": {Source: dir}},
	}, func(sb *Sandbox) error {
		// A setuid-root copy of busybox's "id" in the bind, run as uid
		// 1000: with nosuid its euid stays 1000.
		res, err := sb.Shell(t.Context(), "cp /bin/busybox /work/id && chmod 4755 /work/id && ls -ln /work/id")
		if err != nil {
			t.Fatalf("%v: %s", err, res.Stderr)
		}
		cmd := sb.Command(t.Context(), "/work/id", "-u")
		cmd.User = "1000"
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Run(); err != nil {
			return err
		}
		if got := strings.TrimSpace(out.String()); got != "1000" {
			t.Errorf("setuid-root file in a bind run by uid 1000: euid %s, want 1000 (nosuid)", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRangeStoreIdmapRefusedSaysWhich: a bind of a filesystem that cannot
// be idmapped (sysfs) fails the launch naming the mount and the reason,
// never a plain bind that shows the files as nobody's; nothing is left.
func TestRangeStoreIdmapRefusedSaysWhich(t *testing.T) {
	testutil.RootOnly(t)
	r, err := Open(Options{Root: filepath.Join(t.TempDir(), "store")})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	importBusybox(t, r)
	_, err = r.LaunchSandbox(t.Context(), SandboxOptions{
		Snapshot: "busybox", Network: NetworkNone, Mounts: map[string]Mount{"/k": {Source: "/sys/kernel"}},
	})
	if err == nil || !strings.Contains(err.Error(), "mount /k") || !strings.Contains(err.Error(), "idmapped") {
		t.Fatalf("launch with a sysfs bind = %v, want an error naming /k and the idmapped mount", err)
	}
	list, err := r.ListSandboxes(t.Context())
	if err != nil || len(list) != 0 {
		t.Errorf("after the failed launch: sandboxes %v (%v), want none", list, err)
	}
}
