package volstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"golang.org/x/sys/unix"

	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/volstore"
)

// The user root keeps volumes for in these tests: any ordinary uid will
// do (the helper runs as it); lbtest's on the test machines.
const delegUID, delegGID = 1001, 1001

type delegFixture struct {
	base, rootDir, store, victim string
	s                            *volstore.Store
	d                            volstore.Delegation
	victimBefore                 string
}

// newDelegFixture makes root's store (base/root) and a user's store
// (base/home/store, the user's), and a root-owned "host" directory,
// base/victim, that attacks aim at.
func newDelegFixture(t *testing.T) *delegFixture {
	t.Helper()
	needLoop(t)
	base := t.TempDir()
	for d := base; d != "/"; d = filepath.Dir(d) {
		// t.TempDir's parents are 0700: let the user pass through.
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
			os.Chmod(d, fi.Mode().Perm()|0o001)
		}
	}
	f := &delegFixture{base: base, rootDir: filepath.Join(base, "root"), store: filepath.Join(base, "home", "store"), victim: filepath.Join(base, "victim")}
	for _, d := range []string{f.rootDir, filepath.Dir(f.store), f.store, f.victim} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{filepath.Dir(f.store), f.store} {
		if err := os.Chown(d, delegUID, delegGID); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(f.victim, "keep"), []byte("host file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(f.victim, old, old)
	f.victimBefore = f.describeVictim(t)
	s, err := volstore.Open(t.Context(), volstore.Options{Root: filepath.Join(f.rootDir, "volumes"), TmpDir: filepath.Join(f.rootDir, "tmp"), Mapping: idmap.Identity()})
	if err != nil {
		t.Fatal(err)
	}
	f.s = s
	f.d = volstore.Delegation{UID: delegUID, GID: delegGID, User: "u", Store: f.store}
	t.Cleanup(func() {
		vols, _ := s.ListDelegated(context.Background(), -1)
		for _, v := range vols {
			if err := s.RemoveDelegated(context.Background(), v.UID, v.Name); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		if n := mountsUnder(t, base); n != 0 {
			t.Errorf("%d mounts left under %s", n, base)
			for _, m := range mountPoints(t, base) {
				unix.Unmount(m, unix.MNT_DETACH) // never delete through a mount
			}
		}
	})
	return f
}

// describeVictim is what must not change: the host directory's entries,
// modes, owners, contents and mtime.
func (f *delegFixture) describeVictim(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(f.victim, func(p string, fi os.FileInfo, err error) error {
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

// hostUnchanged checks the victim is as it was and nothing is mounted on
// it (or anywhere under the test's directory but root's own area).
func (f *delegFixture) hostUnchanged(t *testing.T) {
	t.Helper()
	if got := f.describeVictim(t); got != f.victimBefore {
		t.Errorf("the host directory changed:\nbefore:\n%s\nafter:\n%s", f.victimBefore, got)
	}
	for _, m := range mountPoints(t, f.base) {
		if !strings.HasPrefix(m, filepath.Join(f.rootDir, "delegated")+"/") {
			t.Errorf("mount at %s, outside root's own area", m)
		}
	}
	if l := loopsUnder(f.store); len(l) != 0 {
		t.Errorf("loop devices backed by files of the user's store: %q", l)
	}
}

func mountPoints(t *testing.T, dir string) []string {
	t.Helper()
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range mounts {
		out = append(out, m.Mountpoint)
	}
	return out
}

// asUser runs the test binary's helper as the user on their store.
func (f *delegFixture) asUser(t *testing.T, mode, name string) (string, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(f.base, "volstore.test")
	if _, err := os.Stat(bin); err != nil {
		data, err := os.ReadFile(exe)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %s %s 0", envHelper, mode, filepath.Join(f.store, "volumes"), filepath.Join(f.store, "tmp"), name))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: delegUID, Gid: delegGID}}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func owner(t *testing.T, p string) (uid, gid, mode uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid, st.Mode
}

// TestDelegate: root keeps a quota'd volume for a rootless user in its own
// area (root-owned, the image 0600) and gives the user's store a
// reference the user owns; the user uses it with the quota, cannot remove
// it, gets told how root mounts it again after a "reboot"; root's removal
// waits for the user's sandboxes and takes everything down.
func TestDelegate(t *testing.T) {
	f := newDelegFixture(t)
	ctx := t.Context()
	v, created, err := f.s.Delegate(ctx, "q", f.d, volstore.CreateOptions{QuotaMiB: 8, UID: -1, GID: -1, Labels: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(f.rootDir, "delegated", fmt.Sprint(delegUID), "q")
	if !created || v.Backend != "loop" || v.DataDir != filepath.Join(keep, "data") || v.QuotaMiB != 8 || v.Store != f.store {
		t.Errorf("Delegate = %+v, %v; want a new loop volume at %s/data", v, created, keep)
	}
	for _, p := range []string{"volumes", "volumes/.locks", "volumes/.locks/q.lock", "volumes/q", "volumes/q/meta.json", "volumes/q/lease"} {
		if uid, gid, _ := owner(t, filepath.Join(f.store, p)); uid != delegUID || gid != delegGID {
			t.Errorf("%s in the user's store owned by %d:%d, want the user's %d:%d", p, uid, gid, delegUID, delegGID)
		}
	}
	for _, p := range []string{filepath.Join(f.rootDir, "delegated"), filepath.Dir(keep), keep, filepath.Join(keep, "record.json"), filepath.Join(keep, "data.img")} {
		if uid, gid, mode := owner(t, p); uid != 0 || gid != 0 || mode&0o022 != 0 {
			t.Errorf("%s owned by %d:%d mode %o, want root's and writable by root only", p, uid, gid, mode&0o7777)
		}
	}
	if _, _, mode := owner(t, filepath.Join(keep, "data.img")); mode&0o077 != 0 {
		t.Errorf("the image has mode %o, want 0600", mode&0o7777)
	}
	if uid, gid, _ := owner(t, v.DataDir); uid != delegUID || gid != delegGID {
		t.Errorf("the volume's root is owned by %d:%d, want the user's", uid, gid)
	}
	if out, err := f.asUser(t, "use", "q"); err != nil || out != "ok delegated 8 true" {
		t.Errorf("the user's use of the volume: %v: %s", err, out)
	}
	if data, err := os.ReadFile(filepath.Join(v.DataDir, "mine")); err != nil || string(data) != "x" {
		t.Errorf("what the user wrote: %q, %v", data, err)
	}
	// The user cannot remove what root keeps: they are told how root does.
	if out, err := f.asUser(t, "rm", "q"); err == nil || !strings.Contains(out, "volstore.RemoveDelegated of volume q for user u") {
		t.Errorf("the user's remove: %v: %s; want a refusal naming volume rm --owner", err, out)
	}
	if _, created, err := f.s.Delegate(ctx, "q", f.d, volstore.CreateOptions{UID: -1, GID: -1}); err != nil || created {
		t.Errorf("Delegate of an existing volume = %v, %v; want it as it is", created, err)
	}
	// "Reboot": the image is no longer mounted.
	if err := unix.Unmount(v.DataDir, 0); err != nil {
		t.Fatal(err)
	}
	noLoopsUnder(t, keep)
	out, err := f.asUser(t, "use", "q")
	if err == nil || !strings.Contains(out, "not mounted") || !strings.Contains(out, "volstore.Delegate of volume q for user u (quota 8 MiB, their store "+f.store) {
		t.Errorf("the user's use of an unmounted volume: %v: %s; want the root command that mounts it", err, out)
	}
	if _, _, err := f.s.Delegate(ctx, "q", f.d, volstore.CreateOptions{QuotaMiB: 8, UID: -1, GID: -1}); err != nil {
		t.Fatal(err)
	}
	if out, err := f.asUser(t, "use", "q"); err != nil || out != "ok delegated 8 true" {
		t.Errorf("the user's use after root mounted it again: %v: %s", err, out)
	}
	// The user lost the reference: root writes it again.
	os.RemoveAll(filepath.Join(f.store, "volumes", "q"))
	if _, _, err := f.s.Delegate(ctx, "q", f.d, volstore.CreateOptions{UID: -1, GID: -1}); err != nil {
		t.Fatal(err)
	}
	if uid, _, _ := owner(t, filepath.Join(f.store, "volumes", "q", "meta.json")); uid != delegUID {
		t.Errorf("the written-again reference is owned by %d", uid)
	}
	// A sandbox of the user holds the lease: root's removal waits.
	lf, err := os.Open(filepath.Join(f.store, "volumes", "q", "lease"))
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_SH); err != nil {
		t.Fatal(err)
	}
	if err := f.s.RemoveDelegated(ctx, delegUID, "q"); !errors.Is(err, errdefs.ErrInUse) {
		t.Errorf("RemoveDelegated while leased = %v, want ErrInUse", err)
	}
	lf.Close()
	if err := f.s.RemoveDelegated(ctx, delegUID, "q"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(f.store, "volumes", "q"), keep} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after RemoveDelegated: %v", p, err)
		}
	}
	if n := mountsUnder(t, f.base); n != 0 {
		t.Errorf("%d mounts left", n)
	}
	noLoopsUnder(t, f.base)
	if err := f.s.RemoveDelegated(ctx, delegUID, "q"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("second RemoveDelegated = %v, want ErrNotFound", err)
	}
	if vols, err := f.s.ListDelegated(ctx, -1); err != nil || len(vols) != 0 {
		t.Errorf("ListDelegated after removal = %v, %v", vols, err)
	}
	f.hostUnchanged(t)
}

// TestDelegateRefusesUserPaths: a user's store rigged to send root
// elsewhere (symlinks at each step root takes, a store that is not the
// user's, a hand-made loop volume whose data is a symlink to a host
// directory) makes root refuse or act only on its own records: nothing is
// created, written or mounted outside root's area and the user's store,
// and the host directory is unchanged.
func TestDelegateRefusesUserPaths(t *testing.T) {
	needLoop(t) // root-only: skips here, not in each subtest
	user := func(t *testing.T, paths ...string) {
		for _, p := range paths {
			if err := os.Lchown(p, delegUID, delegGID); err != nil {
				t.Fatal(err)
			}
		}
	}
	mkdirs := func(t *testing.T, f *delegFixture, rel ...string) {
		for _, r := range rel {
			p := filepath.Join(f.store, r)
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
			user(t, p)
		}
	}
	symlink := func(t *testing.T, target, p string) {
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		user(t, p)
	}
	for _, tc := range []struct {
		name   string
		rig    func(t *testing.T, f *delegFixture)
		exists bool // the refusal is ErrExists
	}{
		{"volumes symlinked to a host dir", func(t *testing.T, f *delegFixture) {
			symlink(t, f.victim, filepath.Join(f.store, "volumes"))
		}, false},
		{"volumes/.locks symlinked", func(t *testing.T, f *delegFixture) {
			mkdirs(t, f, "volumes")
			symlink(t, f.victim, filepath.Join(f.store, "volumes", ".locks"))
		}, false},
		{"the lock file symlinked to a host file", func(t *testing.T, f *delegFixture) {
			mkdirs(t, f, "volumes", "volumes/.locks")
			symlink(t, filepath.Join(f.victim, "keep"), filepath.Join(f.store, "volumes", ".locks", "q.lock"))
		}, false},
		{"the lock file hard-linked to a host file", func(t *testing.T, f *delegFixture) {
			mkdirs(t, f, "volumes", "volumes/.locks")
			if err := os.Link(filepath.Join(f.victim, "keep"), filepath.Join(f.store, "volumes", ".locks", "q.lock")); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"volumes/q symlinked to a host dir", func(t *testing.T, f *delegFixture) {
			mkdirs(t, f, "volumes")
			symlink(t, f.victim, filepath.Join(f.store, "volumes", "q"))
		}, true},
		{"the store symlinked to a host dir", func(t *testing.T, f *delegFixture) {
			os.Remove(f.store)
			symlink(t, f.victim, f.store)
		}, false},
		{"a store the user does not own", func(t *testing.T, f *delegFixture) {
			if err := os.Chown(f.store, delegUID+1, delegGID+1); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"a hand-made loop volume whose data is a host dir", func(t *testing.T, f *delegFixture) {
			rigLoopVolume(t, f, "q")
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newDelegFixture(t)
			tc.rig(t, f)
			_, _, err := f.s.Delegate(t.Context(), "q", f.d, volstore.CreateOptions{QuotaMiB: 8, UID: -1, GID: -1})
			t.Logf("Delegate: %v", err)
			if err == nil {
				t.Errorf("Delegate in a rigged store succeeded")
			} else if tc.exists != errors.Is(err, errdefs.ErrExists) {
				t.Errorf("Delegate = %v; ErrExists %v, want %v", err, errors.Is(err, errdefs.ErrExists), tc.exists)
			}
			if err := f.s.RemoveDelegated(t.Context(), delegUID, "q"); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("RemoveDelegated of what root does not keep = %v, want ErrNotFound", err)
			}
			if vols, err := f.s.ListDelegated(t.Context(), -1); err != nil || len(vols) != 0 {
				t.Errorf("root keeps %v (%v) after a refusal", vols, err)
			}
			if got := entries(t, filepath.Join(f.rootDir, "delegated")); slices.ContainsFunc(got, func(e string) bool { return e != ".locks" && e != fmt.Sprint(delegUID) }) {
				t.Errorf("root's area holds %q", got)
			}
			if d := filepath.Join(f.rootDir, "delegated", fmt.Sprint(delegUID)); len(entriesIfAny(d)) != 0 {
				t.Errorf("root's area for the user holds %q", entriesIfAny(d))
			}
			f.hostUnchanged(t)
		})
	}
}

// TestDelegateBesideForgedVolume: with a hand-made loop volume in the
// user's store (meta.json saying "loop", a user-written image, data a
// symlink to a host dir), root keeps another volume for the user, lists,
// removes: it mounts only its own image and never touches the host dir.
func TestDelegateBesideForgedVolume(t *testing.T) {
	f := newDelegFixture(t)
	ctx := t.Context()
	rigLoopVolume(t, f, "evil")
	if _, _, err := f.s.Delegate(ctx, "other", f.d, volstore.CreateOptions{QuotaMiB: 8, UID: -1, GID: -1}); err != nil {
		t.Fatal(err)
	}
	if got := mountPoints(t, f.base); len(got) != 1 || got[0] != filepath.Join(f.rootDir, "delegated", fmt.Sprint(delegUID), "other", "data") {
		t.Errorf("mounts = %q, want root's own image only", got)
	}
	if vols, err := f.s.ListDelegated(ctx, delegUID); err != nil || len(vols) != 1 || vols[0].Name != "other" {
		t.Errorf("ListDelegated = %+v, %v", vols, err)
	}
	if err := f.s.RemoveDelegated(ctx, delegUID, "evil"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("RemoveDelegated(evil) = %v, want ErrNotFound", err)
	}
	if err := f.s.RemoveDelegated(ctx, delegUID, "other"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(f.store, "volumes", "evil", "meta.json")); err != nil {
		t.Errorf("the user's own entry evil: %v", err)
	}
	f.hostUnchanged(t)
	if n := mountsUnder(t, f.base); n != 0 {
		t.Errorf("%d mounts left", n)
	}
}

// rigLoopVolume hand-makes volumes/name as the old admin path left one,
// pointed at the host: meta.json with backend loop, an ext4 image the user
// owns (and could have written), data a symlink to the victim.
func rigLoopVolume(t *testing.T, f *delegFixture, name string) {
	t.Helper()
	dir := filepath.Join(f.store, "volumes", name)
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		os.Lchown(d, delegUID, delegGID)
	}
	meta := `{"version":1,"labels":{},"quotaMiB":8,"backend":"loop"}`
	if err := os.WriteFile(filepath.Join(dir, "meta.json"), []byte(meta), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "data.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 4<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	if err := os.Symlink(f.victim, filepath.Join(dir, "data")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "meta.json"), img, filepath.Join(dir, "data")} {
		os.Lchown(p, delegUID, delegGID)
	}
}

func entriesIfAny(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestXFSGuestDelegate (in the XFS VM): root keeps a user's volume as an
// XFS project directory in its own area; the limit holds, the reference is
// the user's, and removal frees the project id.
func TestXFSGuestDelegate(t *testing.T) {
	_, root := newGuestStore(t, "store-deleg")
	ctx := t.Context()
	store := filepath.Join(filepath.Dir(root), "deleg-user", "store")
	if err := os.MkdirAll(store, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(store)) })
	for _, d := range []string{filepath.Dir(store), store} {
		if err := os.Chown(d, delegUID, delegGID); err != nil {
			t.Fatal(err)
		}
	}
	s, err := volstore.Open(ctx, volstore.Options{Root: filepath.Join(root, "volumes"), TmpDir: filepath.Join(root, "tmp"), Mapping: idmap.Identity()})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := s.QuotaBackend(); b != "xfs" {
		t.Fatalf("QuotaBackend() = %q, %v; want xfs", b, err)
	}
	d := volstore.Delegation{UID: delegUID, GID: delegGID, User: "u", Store: store}
	v, _, err := s.Delegate(ctx, "q", d, volstore.CreateOptions{QuotaMiB: 8, UID: -1, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	if v.Backend != "xfs" || !strings.HasPrefix(v.DataDir, filepath.Join(root, "delegated")+"/") {
		t.Errorf("Delegate = %+v, want an xfs volume in root's area", v)
	}
	if uid, _, _ := owner(t, v.DataDir); uid != delegUID {
		t.Errorf("the volume's root is owned by %d, want the user's %d", uid, delegUID)
	}
	if uid, _, _ := owner(t, filepath.Join(store, "volumes", "q", "meta.json")); uid != delegUID {
		t.Errorf("the reference is owned by %d, want the user's %d", uid, delegUID)
	}
	id, err := volstore.XFSProject(v.DataDir)
	if err != nil || id == 0 {
		t.Fatalf("project of %s = %d, %v", v.DataDir, id, err)
	}
	if n, err := fill(t, filepath.Join(v.DataDir, "big"), 64<<20); !errors.Is(err, unix.ENOSPC) || n > 8<<20 {
		t.Errorf("writing 64 MiB into an 8 MiB delegated volume: %d bytes, %v; want ENOSPC at the limit", n, err)
	}
	if err := s.RemoveDelegated(ctx, delegUID, "q"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(store, "volumes", "q")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the reference is left: %v", err)
	}
	if name, path := registered(t, id); name != "" || path != "" {
		t.Errorf("project %d still registered as %q at %q", id, name, path)
	}
}
