//go:build linux

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/beamhop/lightbox"
	"github.com/beamhop/lightbox/internal/lockfile"
	"github.com/beamhop/lightbox/internal/testutil"
)

// fillImage imports, as "img" into root, busybox with a populated /data:
// a file, a directory with a mode of its own, an empty directory, and
// symlinks that point out of the sandbox (a host file, a climb out of
// any root); and many files more in /data/many/ (a copy that takes a
// while). It returns what /etc/shadow and / look like on the host.
func fillImage(t *testing.T, root string, many int) (shadow, slash string) {
	t.Helper()
	rootfs := testBusybox(t)
	data := filepath.Join(rootfs, "data")
	for _, d := range []string{data, filepath.Join(data, "sub"), filepath.Join(data, "empty")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(data, "a.txt"), []byte("from image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "sub", "b.txt"), []byte("b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(data, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	for name, to := range map[string]string{"evil": "/etc/shadow", "up": "../../../../../../..", "dirlink": "/etc"} {
		if err := os.Symlink(to, filepath.Join(data, name)); err != nil {
			t.Fatal(err)
		}
	}
	if many > 0 {
		if err := os.Mkdir(filepath.Join(data, "many"), 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range many {
			if err := os.WriteFile(filepath.Join(data, "many", strconv.Itoa(i)), []byte(strings.Repeat("x", i)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	lbOK(t, root, "snapshot", "import", "img", rootfs)
	return lstatOf(t, "/etc/shadow"), strings.Join(dirNames(t, "/"), " ")
}

// lstatOf renders a file's mode, size and mtime, which a reader of any
// uid can see.
func lstatOf(t *testing.T, p string) string {
	t.Helper()
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%v %d %v", st.Mode(), st.Size(), st.ModTime())
}

// TestVolumeFilledFromImage: a new volume mounted over a directory of the
// image starts with the image's content (docker's and podman's copy-up)
// instead of hiding it; it is filled once — a second sandbox sees the
// first's changes, and an emptied volume stays empty; an existing volume
// with content is not touched; :nocopy keeps a new volume empty; the
// image's symlinks are copied as symlinks and never followed. (A
// read-only mount: TestVolumeFillReadOnly.)
func TestVolumeFilledFromImage(t *testing.T) {
	for kind, root := range attackStores(t) {
		t.Run(kind, func(t *testing.T) {
			shadow, slash := fillImage(t, root, 0)
			run := func(args ...string) string {
				t.Helper()
				return lbOK(t, root, append([]string{"run", "--network", "none"}, args...)...)
			}
			out := run("-v", "newvol:/data", "img", "sh", "-c",
				"cat /data/a.txt /data/sub/b.txt; stat -c '%a %U' /data/sub /data/sub/b.txt; for l in evil up dirlink; do readlink /data/$l; done; ls -A /data/empty | wc -l; echo changed > /data/a.txt; rm /data/sub/b.txt")
			want := "from image\nb\n750 root\n600 root\n/etc/shadow\n../../../../../../..\n/etc\n0\n"
			if out != want {
				t.Errorf("a new volume over the image's /data shows:\n%s\nwant:\n%s", out, want)
			}
			// On the host: symlinks, as they were, in the volume.
			vdata := filepath.Join(root, "volumes", "newvol", "data")
			for name, to := range map[string]string{"evil": "/etc/shadow", "up": "../../../../../../..", "dirlink": "/etc"} {
				if got, err := os.Readlink(filepath.Join(vdata, name)); err != nil || got != to {
					t.Errorf("volume's %s = %q, %v; want a symlink to %s", name, got, err, to)
				}
			}
			if out := run("-v", "newvol:/data", "img", "sh", "-c", "cat /data/a.txt; ls /data/sub; rm -rf /data/* /data/.[!.]*; true"); out != "changed\n" {
				t.Errorf("the second sandbox sees %q; want the first one's change and no second copy (changed, an empty sub)", out)
			}
			if out := run("-v", "newvol:/data", "img", "ls", "-A", "/data"); out != "" {
				t.Errorf("an emptied volume shows %q; want it left empty (filled once only)", out)
			}

			// A volume with content is left as it is, though never filled:
			// first used where the image has nothing.
			run("-v", "used:/nothing", "img", "sh", "-c", "echo mine > /nothing/mine")
			if out := run("-v", "used:/data", "img", "ls", "-A", "/data"); out != "mine\n" {
				t.Errorf("a volume with content over /data shows %q; want only its own file", out)
			}
			if out := run("-v", "nc:/data:nocopy", "img", "ls", "-A", "/data"); out != "" {
				t.Errorf("-v nc:/data:nocopy shows %q; want an empty volume", out)
			}
			if got := lstatOf(t, "/etc/shadow"); got != shadow {
				t.Errorf("the host's /etc/shadow changed: %s, was %s", got, shadow)
			}
			if got := strings.Join(dirNames(t, "/"), " "); got != slash {
				t.Errorf("the host's / changed: %s, was %s", got, slash)
			}
		})
	}
}

// TestVolumeFillReadOnly: a new volume mounted read-only over a
// directory of the image is filled all the same (docker and podman copy
// before they mount read-only), and the workload can neither write it
// nor remount it writable: the volume on the host holds the image's
// files, unchanged, and a later writable mount sees them.
func TestVolumeFillReadOnly(t *testing.T) {
	for kind, root := range attackStores(t) {
		t.Run(kind, func(t *testing.T) {
			fillImage(t, root, 0)
			vdata := filepath.Join(root, "volumes", "rovol", "data")
			// Each attack prints what it got; the file's content after them
			// says whether any got through.
			out := lbOK(t, root, "run", "--network", "none", "-v", "rovol:/data:ro", "img", "sh", "-c", `
cat /data/a.txt; ls -A /data | tr '\n' ' '; echo
echo x > /data/new 2>/dev/null && echo wrote new
echo x >> /data/a.txt 2>/dev/null && echo appended
rm /data/sub/b.txt 2>/dev/null && echo removed
mount -o remount,rw /data 2>/dev/null && echo remounted
mount -o remount,rw,bind /data 2>/dev/null && echo remounted bind
mount --bind /data /data 2>/dev/null && mount -o remount,rw,bind /data 2>/dev/null && echo rebound
echo x > /data/new 2>/dev/null && echo wrote new
cat /data/a.txt`)
			want := "from image\na.txt dirlink empty evil sub up \nfrom image\n"
			if out != want {
				t.Errorf("a new volume mounted read-only over the image's /data, attacked from inside, shows:\n%s\nwant:\n%s", out, want)
			}
			if got, want := strings.Join(dirNames(t, vdata), " "), "a.txt dirlink empty evil sub up"; got != want {
				t.Errorf("the volume on the host holds %q; want the image's %q", got, want)
			}
			if b, err := os.ReadFile(filepath.Join(vdata, "a.txt")); err != nil || string(b) != "from image\n" {
				t.Errorf("the volume's a.txt on the host = %q, %v; want the image's", b, err)
			}
			if out := lbOK(t, root, "run", "--network", "none", "-v", "rovol:/data", "img", "cat", "/data/sub/b.txt"); out != "b\n" {
				t.Errorf("the filled volume mounted writable later shows %q; want the image's b.txt", out)
			}
		})
	}
}

// TestVolumeFillAPI: the Go API fills a new volume too, and Mount.NoCopy
// keeps one empty; four sandboxes launched at once with one new volume
// fill it once (a second copy would fail on the first's files, or mix
// with them).
func TestVolumeFillAPI(t *testing.T) {
	root, r := newStore(t)
	fillImage(t, root, 3000)
	ctx := t.Context()
	err := r.RunInSandbox(ctx, lightbox.SandboxOptions{Snapshot: "img", Network: lightbox.NetworkNone,
		Mounts: map[string]lightbox.Mount{"/data": {Volume: "apivol"}, "/keep": {Volume: "nc", NoCopy: true}, "/data/sub": {Volume: "ncsub", NoCopy: true}},
	}, func(sb *lightbox.Sandbox) error {
		res, err := sb.Shell(ctx, "cat /data/a.txt; ls -A /data/sub | wc -l")
		if err != nil {
			return err
		}
		if string(res.Stdout) != "from image\n0\n" {
			t.Errorf("API: /data shows %q; want the image's a.txt and an empty nocopy volume at /data/sub", res.Stdout)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	outs := make([]string, 4)
	errs := make([]error, 4)
	for i := range outs {
		wg.Go(func() {
			errs[i] = r.RunInSandbox(ctx, lightbox.SandboxOptions{Snapshot: "img", Network: lightbox.NetworkNone,
				Mounts: map[string]lightbox.Mount{"/data": {Volume: "shared"}},
			}, func(sb *lightbox.Sandbox) error {
				res, err := sb.Shell(ctx, "ls -A /data | tr '\\n' ' '; cat /data/sub/b.txt; ls /data/many | wc -l")
				if res != nil {
					outs[i] = string(res.Stdout)
				}
				return err
			})
		})
	}
	wg.Wait()
	for i := range outs {
		if errs[i] != nil || outs[i] != "a.txt dirlink empty evil many sub up b\n3000\n" {
			t.Errorf("sandbox %d of 4 launched at once with a new volume: %q, %v; want the image's /data, filled once", i, outs[i], errs[i])
		}
	}
}

// TestVolumeFillQuota: as root (quotas), a new volume whose quota is
// smaller than what the image has at its mount point fails the launch
// with an error that says so, and is left empty and unfilled: mounted
// with nocopy it is empty, and a volume large enough fills.
func TestVolumeFillQuota(t *testing.T) {
	testutil.RootOnly(t)
	root, r := newStore(t)
	rootfs := testBusybox(t)
	if err := os.MkdirAll(filepath.Join(rootfs, "big"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"one", "two", "three"} {
		if err := os.WriteFile(filepath.Join(rootfs, "big", n), []byte(strings.Repeat(n, 4<<20)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lbOK(t, root, "snapshot", "import", "big", rootfs)
	ctx := t.Context()
	if _, err := r.EnsureVolume(ctx, "small", lightbox.VolumeOptions{QuotaMiB: 16}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Its loop mount goes with it, before the store's files.
		if err := r.RemoveVolume(context.Background(), "small"); err != nil {
			t.Error(err)
		}
	})
	res := lb(t, root, "", "run", "--network", "none", "-v", "small:/big", "big", "true")
	if res.code != 125 || !strings.Contains(res.stderr, "fill volume from the image's /big") || !strings.Contains(res.stderr, "nocopy") {
		t.Errorf("filling a 16 MiB volume with 48 MiB: exit %d, stderr %q; want a launch error naming the copy and nocopy", res.code, res.stderr)
	}
	if out := lbOK(t, root, "run", "--network", "none", "-v", "small:/big:nocopy", "big", "ls", "-A", "/big"); out != "" {
		t.Errorf("after the failed fill the volume holds %q; want it empty", out)
	}
	var ue *lightbox.ExitError
	err := r.RunInSandbox(ctx, lightbox.SandboxOptions{Snapshot: "big", Network: lightbox.NetworkNone,
		Mounts: map[string]lightbox.Mount{"/big": {Volume: "large"}}}, func(sb *lightbox.Sandbox) error {
		res, err := sb.Shell(context.WithoutCancel(ctx), "ls /big | tr '\\n' ' '")
		if err == nil && string(res.Stdout) != "one three two " {
			t.Errorf("a volume without a quota over /big shows %q", res.Stdout)
		}
		return err
	})
	if err != nil && !errors.As(err, &ue) {
		t.Fatal(err)
	}
}

// importManyFiles imports into root's store the snapshot img: busybox
// with /data/a.txt ("from image") and /data/many/0 … many-1, a fill
// long enough to be caught in the middle.
func importManyFiles(t *testing.T, root string, many int) {
	t.Helper()
	rootfs := testBusybox(t)
	dir := filepath.Join(rootfs, "data", "many")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "data", "a.txt"), []byte("from image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range many {
		if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lbOK(t, root, "snapshot", "import", "img", rootfs)
}

// TestVolumeFillKilled: a launcher killed with kill -9 in the middle of
// filling a new volume, alone or with its sandbox's init (the job's
// whole process group, a machine that went down), leaves no half copy
// that a later sandbox takes for the volume's content: the next run
// sees every file of the image's directory, and gc is not needed.
func TestVolumeFillKilled(t *testing.T) {
	const many = 5000
	root, r := newStore(t)
	importManyFiles(t, root, many)
	for _, withInit := range []bool{false, true} {
		vol := "launcher"
		if withInit {
			vol = "launcher-and-init"
		}
		t.Run(vol, func(t *testing.T) {
			cmd := exec.Command(binPath, "--root", root, "run", "--network", "none", "-v", vol+":/data", "img", "true")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// The copy has begun once the volume holds an entry.
			data := filepath.Join(root, "volumes", vol, "data")
			testutil.WaitFor(t, time.Minute, "the copy into the new volume to begin", func() bool {
				ents, _ := os.ReadDir(data) // missing until the volume is made
				return len(ents) > 0
			})
			var inits []int
			if withInit {
				inits = childrenOf(t, cmd.Process.Pid)
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			for _, pid := range inits {
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
					t.Fatal(err)
				}
			}
			_ = cmd.Wait() // killed: the status says so
			out := lbOK(t, root, "run", "--network", "none", "-v", vol+":/data", "img", "sh", "-c", "cat /data/a.txt; ls /data/many | wc -l; ls -A /data | tr '\\n' ' '")
			if want := fmt.Sprintf("from image\n%d\na.txt many ", many); out != want {
				t.Errorf("after a launcher killed mid-fill (its init too: %v), the next run sees %q; want the image's whole /data, %q", withInit, out, want)
			}
		})
	}
	// What the killed launches left goes with gc; the volumes stay.
	testutil.WaitFor(t, time.Minute, "gc to remove the killed sandboxes", func() bool {
		lbOK(t, root, "gc")
		list, err := r.ListSandboxes(t.Context())
		return err == nil && len(list) == 0
	})
	if out := lbOK(t, root, "run", "--network", "none", "-v", "launcher:/data", "img", "sh", "-c", "ls /data/many | wc -l"); out != fmt.Sprint(many, "\n") {
		t.Errorf("after gc the volume holds %q files; want %d", out, many)
	}
}

// TestVolumeFillDoneLost: a launcher killed after its sandbox's init
// filled a new volume but before it recorded the fill (held off here by
// the volume's lock, which recording takes) leaves a volume that is
// filled: a later run sees the image's files, and once a run empties
// the volume it stays empty, as for any filled volume (before: the
// volume was still taken for never filled, and filled again).
func TestVolumeFillDoneLost(t *testing.T) {
	const many = 5000
	root, r := newStore(t)
	importManyFiles(t, root, many)
	const vol = "lost"
	data := filepath.Join(root, "volumes", vol, "data")
	cmd := exec.Command(binPath, "--root", root, "run", "--network", "none", "-v", vol+":/data", "img", "true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Once the copy has begun the launcher has its fill and let go of the
	// volume's lock; held from here, it keeps the fill from being
	// recorded.
	testutil.WaitFor(t, time.Minute, "the copy into the new volume to begin", func() bool {
		ents, _ := os.ReadDir(data) // missing until the volume is made
		return len(ents) > 0
	})
	lk, err := lockfile.Exclusive(t.Context(), filepath.Join(root, "volumes", ".locks", vol+".lock"))
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, time.Minute, "the fill to end", func() bool {
		return strings.Join(dirNames(t, data), " ") == "a.txt many"
	})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // killed: the status says so
	meta, err := os.ReadFile(filepath.Join(root, "volumes", vol, "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(meta), `"unfilled": true`) {
		t.Fatalf("the killed launcher recorded the fill before the test held the volume's lock (meta.json %s): the case is not reached", meta)
	}
	if err := lk.Close(); err != nil {
		t.Fatal(err)
	}
	out := lbOK(t, root, "run", "--network", "none", "-v", vol+":/data", "img", "sh", "-c", "cat /data/a.txt; ls /data/many | wc -l; rm -rf /data/*")
	if want := fmt.Sprintf("from image\n%d\n", many); out != want {
		t.Errorf("after a launcher killed before it recorded the fill, the next run sees %q; want the image's /data, %q", out, want)
	}
	if out := lbOK(t, root, "run", "--network", "none", "-v", vol+":/data", "img", "ls", "-A", "/data"); out != "" {
		t.Errorf("the volume emptied by the last run shows %q; want it left empty (filled once only)", out)
	}
	// The killed launcher's sandbox may have run its command (then it
	// stays, exited, as docker's does): rm -f takes it either way.
	list, err := r.ListSandboxes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, sb := range list {
		lbOK(t, root, "rm", "-f", sb.Name)
	}
}

// childrenOf returns the pids of pid's children (a launcher's: its
// sandbox's init).
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid …: comm may hold spaces and parentheses.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, c)
		}
	}
	return out
}
