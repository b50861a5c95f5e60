package volstore_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"golang.org/x/sys/unix"

	"github.com/beamhop/lightbox/internal/testutil"
	"github.com/beamhop/lightbox/volstore"
)

func needLoop(t *testing.T) {
	t.Helper()
	testutil.RootOnly(t)
	testutil.NeedTool(t, "mkfs.ext4")
	_, err := volstore.NewLoopBackend()
	testutil.Need(t, err == nil, "needs the loop backend: "+errString(err))
}

// loopsUnder lists the loop devices backed by files under dir.
func loopsUnder(dir string) []string {
	var out []string
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(data)), dir+"/") {
			out = append(out, p)
		}
	}
	return out
}

// noLoopsUnder waits (auto-clear runs asynchronously) until no loop
// device is backed by a file under dir.
func noLoopsUnder(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := loopsUnder(dir)
		if len(l) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("loop devices still backed by files under %s: %q", dir, l)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mountsUnder(t *testing.T, dir string) int {
	t.Helper()
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range mounts {
		if m.Mountpoint != dir {
			n++
		}
	}
	return n
}

// TestLoopQuotaVolume: a 16 MiB volume stops a writer with ENOSPC at its
// limit while a neighbour keeps working; it is mounted once however often
// it is used, mounted again after a "reboot", and Remove takes everything
// down.
func TestLoopQuotaVolume(t *testing.T) {
	needLoop(t)
	f := newStore(t)
	ctx := t.Context()
	if b, err := f.s.QuotaBackend(); b != "loop" && b != "xfs" {
		t.Fatalf("QuotaBackend() = %q, %v; want loop", b, err)
	}
	o := defaults()
	o.QuotaMiB = 16
	o.Labels = map[string]string{"quota": "yes"}
	v, created, err := f.s.Ensure(ctx, "models", o)
	if err != nil || !created {
		t.Fatalf("Ensure(quota 16) = %v, %v", created, err)
	}
	if v.Backend != "loop" || v.QuotaMiB != 16 {
		t.Fatalf("volume = %+v, want backend loop, quota 16", v)
	}
	n, _, err := f.s.Ensure(ctx, "neighbour", defaults())
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(v.DataDir, &st); err != nil {
		t.Fatal(err)
	}
	if size := int64(st.Blocks) * st.Bsize; size > 16<<20 || size < 14<<20 {
		t.Errorf("df size of the volume = %d, want about 16 MiB", size)
	}
	w, err := os.Create(filepath.Join(v.DataDir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	var written int
	for written < 64<<20 {
		k, err2 := w.Write(buf)
		written += k
		if err2 != nil {
			err = err2
			break
		}
	}
	w.Close()
	if !errors.Is(err, unix.ENOSPC) || written > 16<<20 || written < 14<<20 {
		t.Fatalf("writer stopped after %d bytes with %v, want ENOSPC at about 16 MiB", written, err)
	}
	if err := os.WriteFile(filepath.Join(n.DataDir, "ok"), make([]byte, 4<<20), 0o644); err != nil {
		t.Fatalf("neighbour volume while the quota'd one is full: %v", err)
	}
	g, err := f.s.Get(ctx, "models")
	if err != nil || !g.UsageKnown || g.UsedBytes < int64(written) {
		t.Errorf("Get usage = %d known %v (%v), want >= %d", g.UsedBytes, g.UsageKnown, err, written)
	}
	os.Remove(filepath.Join(v.DataDir, "big"))
	if err := os.WriteFile(filepath.Join(v.DataDir, "kept"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Every use shares the one mount.
	for range 3 {
		l, _, err := f.s.Acquire(ctx, "models", defaults())
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
	}
	if c := mountsUnder(t, f.root); c != 1 {
		t.Errorf("%d mounts under the store after three uses, want 1", c)
	}
	// After a reboot the image is not mounted: the next use mounts it.
	if err := unix.Unmount(v.DataDir, 0); err != nil {
		t.Fatal(err)
	}
	noLoopsUnder(t, f.root)
	l, _, err := f.s.Acquire(ctx, "models", defaults())
	if err != nil {
		t.Fatalf("Acquire after a reboot = %v", err)
	}
	l.Close()
	if _, err := os.Stat(filepath.Join(v.DataDir, "kept")); err != nil {
		t.Errorf("contents after remount: %v", err)
	}
	if c := mountsUnder(t, f.root); c != 1 {
		t.Errorf("%d mounts under the store after remount, want 1", c)
	}

	if err := f.s.Remove(ctx, "models"); err != nil {
		t.Fatalf("Remove = %v", err)
	}
	if c := mountsUnder(t, filepath.Dir(f.root)); c != 0 {
		t.Errorf("%d mounts left after Remove", c)
	}
	noLoopsUnder(t, filepath.Dir(f.root))
	if got := volumeEntries(t, f); len(got) != 1 || got[0] != "neighbour" {
		t.Errorf("volumes after Remove: %q", got)
	}
	if got := entries(t, f.tmp); len(got) != 0 {
		t.Errorf("tmp after Remove: %q", got)
	}
}

// TestLoopKilledCreate: a kill -9 with the image made and mounted in tmp
// leaves no volume; the next use unmounts, detaches and deletes it.
func TestLoopKilledCreate(t *testing.T) {
	needLoop(t)
	f := newStore(t)
	killedCreate(t, f, "q", 16)
	if c := mountsUnder(t, f.tmp); c != 1 {
		t.Fatalf("fixture: %d mounts in tmp after the kill, want the half-made volume's", c)
	}
	o := defaults()
	o.QuotaMiB = 8
	v, created, err := f.s.Ensure(t.Context(), "q", o)
	if err != nil || !created || v.QuotaMiB != 8 {
		t.Fatalf("Ensure after the kill = %+v, %v, %v", v, created, err)
	}
	if c := mountsUnder(t, f.tmp); c != 0 {
		t.Errorf("%d mounts left in tmp", c)
	}
	noLoopsUnder(t, f.tmp)
	if got := entries(t, f.tmp); len(got) != 0 {
		t.Errorf("tmp still holds %q", got)
	}
}
