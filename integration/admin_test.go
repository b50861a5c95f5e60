//go:build linux

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/beamhop/lightbox/internal/testutil"
)

// adminFixture is a rootless user's store (base/home/store, made by the
// user's own lightbox) and root's store (base/root), with a root-owned
// "host" directory (base/host) that attacks aim at.
type adminFixture struct {
	base, home, store, rootStore, host string
	user                               string
	uid, gid                           int
	hostBefore                         string
}

func newAdminFixture(t *testing.T) *adminFixture {
	t.Helper()
	testutil.RootOnly(t)
	u, _, _ := testutil.TestUser(t)
	name := u.Username
	testutil.NeedTool(t, "runuser")
	base, err := os.MkdirTemp("", "lightbox-admin-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(base, 0o755)
	f := &adminFixture{base: base, home: filepath.Join(base, "home"), rootStore: filepath.Join(base, "root"), host: filepath.Join(base, "host"), user: name}
	f.store = filepath.Join(f.home, "store")
	fmtSscan(u.Uid, &f.uid)
	fmtSscan(u.Gid, &f.gid)
	t.Cleanup(func() {
		// Root takes down what it keeps for the user (the loop mounts).
		// (t.Context is done by now: exec directly.)
		if out, err := exec.Command(binPath, "--root", f.rootStore, "volume", "ls", "--owner", name, "--format", "json").Output(); err == nil {
			for _, n := range jsonNames(string(out)) {
				if out, err := exec.Command(binPath, "--root", f.rootStore, "volume", "rm", "--owner", name, n).CombinedOutput(); err != nil {
					t.Errorf("cleanup: volume rm --owner %s %s: %v: %s", name, n, err, out)
				}
			}
		}
		if n := hostMountsUnder(t, base+"/"); n != 0 {
			t.Errorf("%d mounts left under %s", n, base)
			return // never delete through a mount
		}
		os.RemoveAll(base)
	})
	os.Mkdir(f.home, 0o755)
	os.Chown(f.home, f.uid, f.gid)
	if err := os.Mkdir(f.host, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.host, "job"), []byte("* * * * * root true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(f.host, old, old)
	f.hostBefore = describeTree(t, f.host)
	if r := f.asUser(t, "volume", "ls"); r.code != 0 {
		t.Fatalf("the user's first command: %+v", r)
	}
	return f
}

func jsonNames(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), `"name": "`); ok {
			out = append(out, strings.TrimSuffix(v, `",`))
		}
	}
	return out
}

// asUser runs lightbox as the user on their store.
func (f *adminFixture) asUser(t *testing.T, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command("runuser", append([]string{"-u", f.user, "--", "env", "HOME=" + f.home, binPath, "--root", f.store}, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return cliResult{out.String(), errb.String(), code}
}

// describeTree is what must not change in a host directory: its entries'
// modes, owners, contents and mtimes.
func describeTree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", p, err)
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s %v %d:%d %d", p, fi.Mode(), st.Uid, st.Gid, fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			data, _ := os.ReadFile(p)
			fmt.Fprintf(&b, " %q", data)
		}
		b.WriteString("\n")
		return nil
	})
	return b.String()
}

// mountsAndLoops lists the mounts under base and the loop devices backed
// by files under it, except root's own area in its store.
func (f *adminFixture) mountsAndLoops(t *testing.T) []string {
	t.Helper()
	own := filepath.Join(f.rootStore, "delegated") + "/"
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (bool, bool) {
		return !strings.HasPrefix(m.Mountpoint, f.base+"/") || strings.HasPrefix(m.Mountpoint, own), false
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range mounts {
		out = append(out, "mount "+m.Mountpoint)
	}
	backs, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, p := range backs {
		b, err := os.ReadFile(p)
		if s := strings.TrimSpace(string(b)); err == nil && strings.HasPrefix(s, f.base+"/") && !strings.HasPrefix(s, own) {
			out = append(out, "loop "+s)
		}
	}
	sort.Strings(out)
	return out
}

// hostUnchanged checks the host directory is as it was and nothing is
// mounted outside root's own area.
func (f *adminFixture) hostUnchanged(t *testing.T) {
	t.Helper()
	if got := describeTree(t, f.host); got != f.hostBefore {
		t.Errorf("the host directory changed:\nbefore:\n%s\nafter:\n%s", f.hostBefore, got)
	}
	if got := f.mountsAndLoops(t); len(got) != 0 {
		t.Errorf("mounts or loop devices outside root's own area: %q", got)
	}
}

// importBusybox imports the busybox rootfs into the user's store, as the
// user, from a copy they can read.
func (f *adminFixture) importBusybox(t *testing.T) {
	t.Helper()
	rootfs := filepath.Join(f.base, "rootfs")
	if out, err := exec.Command("cp", "-a", testutil.BusyboxRootfs(t), rootfs).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	if out, err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", f.uid, f.gid), rootfs).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}
	if r := f.asUser(t, "snapshot", "import", "busybox", rootfs); r.code != 0 {
		t.Fatalf("import as the user: %+v", r)
	}
}

// TestQuotaVolumeForRootlessUser is the administrator's path that the
// rootless refusal points to: root keeps a quota'd volume for an ordinary
// user (volume create --owner) in root's own store, the user's store gets
// a reference, and the user then uses it as any other volume, with the
// quota enforced; root removes it.
func TestQuotaVolumeForRootlessUser(t *testing.T) {
	f := newAdminFixture(t)
	f.importBusybox(t)
	r := f.asUser(t, "volume", "create", "--quota-mib", "16", "q")
	want := "lightbox volume create --quota-mib 16 --owner " + f.user + " --owner-root " + f.store + " q"
	if r.code == 0 || !strings.Contains(r.stderr, "--owner") || !strings.Contains(r.stderr, want) {
		t.Fatalf("rootless quota: code %d stderr %q, want a refusal naming %q", r.code, r.stderr, want)
	}
	// The command the refusal names, with root's store given.
	lbOK(t, f.rootStore, strings.Fields(strings.TrimPrefix(want, "lightbox "))...)
	r = f.asUser(t, "run", "--network", "none", "-v", "q:/q", "busybox", "sh", "-c",
		"echo mine > /q/f && cat /q/f && dd if=/dev/zero of=/q/big bs=1M count=64 2>&1")
	if !strings.Contains(r.stdout, "mine") || !strings.Contains(r.stdout, "No space left") {
		t.Errorf("the user writing to its quota'd volume: %+v", r)
	}
	if r := f.asUser(t, "volume", "ls"); r.code != 0 || !strings.Contains(r.stdout, "16 MiB") {
		t.Errorf("the user's volume ls: %+v", r)
	}
	r = f.asUser(t, "volume", "rm", "q")
	if r.code == 0 || !strings.Contains(r.stderr, "volume rm --owner "+f.user+" q") {
		t.Errorf("the user's volume rm of what root keeps: %+v, want a refusal naming volume rm --owner", r)
	}
	lbOK(t, f.rootStore, "volume", "rm", "--owner", f.user, "q")
	for _, p := range []string{filepath.Join(f.store, "volumes", "q"), filepath.Join(f.rootStore, "delegated", fmt.Sprint(f.uid), "q")} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after root's volume rm --owner: %v", p, err)
		}
	}
	if n := hostMountsUnder(t, f.base+"/"); n != 0 {
		t.Errorf("%d mounts left under %s", n, f.base)
	}
	if r := f.asUser(t, "volume", "ls", "--format", "json"); r.code != 0 || strings.Contains(r.stdout, `"q"`) {
		t.Errorf("the user's volume ls after root's removal: %+v", r)
	}
}

// TestQuotaVolumeForRootlessUserFilled: a volume root keeps for a user
// is new to the user as one they make themselves: mounted over a
// directory of their image it starts with the image's files, once (an
// emptied volume stays empty), and nocopy keeps another one empty.
// Root-only by design: only root keeps volumes for a user.
func TestQuotaVolumeForRootlessUserFilled(t *testing.T) {
	f := newAdminFixture(t)
	f.importBusybox(t)
	for _, n := range []string{"q", "nc"} {
		lbOK(t, f.rootStore, "volume", "create", "--quota-mib", "16", "--owner", f.user, "--owner-root", f.store, n)
	}
	r := f.asUser(t, "run", "--network", "none", "-v", "q:/home", "busybox", "sh", "-c", "ls -A /home; rm -rf /home/*")
	if r.code != 0 || r.stdout != "user\n" {
		t.Errorf("the user's first run with the volume root keeps for them over /home: %+v; want the image's /home", r)
	}
	if r := f.asUser(t, "run", "--network", "none", "-v", "q:/home", "busybox", "ls", "-A", "/home"); r.code != 0 || r.stdout != "" {
		t.Errorf("the emptied volume: %+v; want it left empty (filled once only)", r)
	}
	if r := f.asUser(t, "run", "--network", "none", "-v", "nc:/home:nocopy", "busybox", "ls", "-A", "/home"); r.code != 0 || r.stdout != "" {
		t.Errorf("-v nc:/etc:nocopy: %+v; want an empty volume", r)
	}
	f.hostUnchanged(t)
}

// TestRootNeverFollowsUserStore: a user's store rigged to send root
// elsewhere. A hand-made loop volume (meta.json saying "loop", an image
// the user wrote, data a symlink to a host directory, and the same as a
// half-removed volume in the store's tmp), a volume name symlinked to the
// host directory: root's commands on that store (ls, inspect, rm, prune,
// run, gc) refuse to open it, and root's --owner commands act on root's
// own records only. Nothing is mounted outside root's own area and the
// host directory is unchanged. A store whose volumes/ is a symlink to a
// root-owned directory gets nothing created there.
func TestRootNeverFollowsUserStore(t *testing.T) {
	f := newAdminFixture(t)
	f.importBusybox(t) // so that root's run gets as far as mounting volumes
	vols := filepath.Join(f.store, "volumes")
	evil := filepath.Join(vols, "evil")
	img := filepath.Join(evil, "data.img")
	os.Mkdir(evil, 0o700)
	meta := `{"version":1,"labels":{},"quotaMiB":16,"backend":"loop"}`
	os.WriteFile(filepath.Join(evil, "meta.json"), []byte(meta), 0o644)
	os.WriteFile(filepath.Join(evil, "lease"), nil, 0o600)
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Truncate(img, 8<<20)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	os.Symlink(f.host, filepath.Join(evil, "data"))
	stale := filepath.Join(f.store, "tmp", "volrm+evil2+0123456789ab")
	os.MkdirAll(stale, 0o700)
	os.WriteFile(filepath.Join(stale, "meta.json"), []byte(meta), 0o644)
	os.Symlink(f.host, filepath.Join(stale, "data"))
	os.Symlink(f.host, filepath.Join(vols, "sym"))
	os.Symlink(filepath.Join(f.host, "job"), filepath.Join(vols, ".locks", "evil3.lock"))
	for _, p := range []string{evil, filepath.Join(evil, "meta.json"), filepath.Join(evil, "lease"), img, filepath.Join(evil, "data"),
		filepath.Dir(stale), stale, filepath.Join(stale, "meta.json"), filepath.Join(stale, "data"), filepath.Join(vols, "sym"),
		filepath.Join(vols, ".locks", "evil3.lock")} {
		if err := os.Lchown(p, f.uid, f.gid); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.mountsAndLoops(t); len(got) != 0 {
		t.Fatalf("before the test: %q", got)
	}

	for _, args := range [][]string{
		{"run", "--network", "none", "-v", "evil:/x", "busybox", "true"},
		{"volume", "ls"},
		{"volume", "inspect", "evil"},
		{"gc"},
		{"volume", "rm", "sym"},
		{"volume", "rm", "evil"},
		{"volume", "prune"},
	} {
		r := lb(t, f.store, "", args...)
		if r.code == 0 || !strings.Contains(r.stderr, "root does not act in a store another user controls") {
			t.Errorf("root's lightbox --root <user's store> %s: %+v, want a refusal", strings.Join(args, " "), r)
		}
		f.hostUnchanged(t)
	}
	for _, name := range []string{"evil", "sym", "evil2"} {
		r := lb(t, f.rootStore, "", "volume", "rm", "--owner", f.user, name)
		if r.code == 0 || !strings.Contains(r.stderr, "not found") {
			t.Errorf("root's volume rm --owner %s: %+v, want not found (root keeps no such volume)", name, r)
		}
	}
	for _, name := range []string{"evil", "sym"} {
		r := lb(t, f.rootStore, "", "volume", "create", "--quota-mib", "16", "--owner", f.user, "--owner-root", f.store, name)
		if r.code == 0 || !strings.Contains(r.stderr, "already exists") {
			t.Errorf("root's volume create --owner %s over the user's own entry: %+v, want already exists", name, r)
		}
		f.hostUnchanged(t)
	}
	r := lb(t, f.rootStore, "", "volume", "create", "--quota-mib", "16", "--owner", f.user, "--owner-root", f.store, "evil3")
	if r.code == 0 || !strings.Contains(r.stderr, "symlink") {
		t.Errorf("root's volume create --owner with the lock file a symlink: %+v, want a refusal", r)
	}
	// Another volume beside the rigged ones: root mounts its own image, in
	// its own area, and nothing else.
	lbOK(t, f.rootStore, "volume", "create", "--quota-mib", "16", "--owner", f.user, "--owner-root", f.store, "other")
	f.hostUnchanged(t)
	lbOK(t, f.rootStore, "volume", "ls", "--owner", f.user)
	lbOK(t, f.rootStore, "gc")
	lbOK(t, f.rootStore, "volume", "rm", "--owner", f.user, "other")
	f.hostUnchanged(t)
	for _, p := range []string{filepath.Join(evil, "meta.json"), img, filepath.Join(stale, "meta.json")} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("the user's own %s: %v", p, err)
		}
	}

	// volumes symlinked to a root-owned directory elsewhere.
	target := filepath.Join(f.base, "target")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	store2 := filepath.Join(f.home, "store2")
	os.Mkdir(store2, 0o700)
	os.Symlink(target, filepath.Join(store2, "volumes"))
	for _, p := range []string{store2, filepath.Join(store2, "volumes")} {
		os.Lchown(p, f.uid, f.gid)
	}
	r = lb(t, f.rootStore, "", "volume", "create", "--quota-mib", "16", "--owner", f.user, "--owner-root", store2, "q")
	if r.code == 0 || !strings.Contains(r.stderr, "symlink") {
		t.Errorf("root's volume create --owner into a store whose volumes is a symlink: %+v, want a refusal", r)
	}
	if ents, _ := os.ReadDir(target); len(ents) != 0 {
		t.Errorf("root created %v in the directory the user's volumes pointed at", ents)
	}
	if ents, _ := os.ReadDir(filepath.Join(f.rootStore, "delegated", fmt.Sprint(f.uid))); len(ents) != 0 {
		t.Errorf("root's area keeps %v after the refusals", ents)
	}
	f.hostUnchanged(t)
}
