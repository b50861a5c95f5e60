//go:build linux

package lightbox

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	Init()
	guestMain() // as the test VM's PID 1: boot duties, never returns (vm_test.go)
	os.Exit(m.Run())
}

func TestOpenRecordsMapping(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	r, err := Open(Options{Root: root})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	r.Close()
	data, err := os.ReadFile(filepath.Join(root, "store.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sf storeFile
	if err := json.Unmarshal(data, &sf); err != nil {
		t.Fatal(err)
	}
	want, _ := idmap.Detect()
	if os.Geteuid() == 0 {
		if _, ok := sf.Mapping.PrivateRange(); !ok {
			t.Errorf("as root the mapping is %s, want a private range", sf.Mapping)
		}
	} else if !sf.Mapping.Equal(want) {
		t.Errorf("store.json mapping = %s, want %s", sf.Mapping, want)
	}
	// Opening again works.
	r, err = Open(Options{Root: root})
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	r.Close()
}

func TestOpenRefusesChangedMapping(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	r, err := Open(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	other := storeFile{Version: 1, Mapping: idmap.Mapping{
		UIDs: []idmap.Range{{ContainerID: 0, HostID: 4242, Size: 1}},
		GIDs: []idmap.Range{{ContainerID: 0, HostID: 4242, Size: 1}},
	}}
	data, _ := json.Marshal(other)
	if err := os.WriteFile(filepath.Join(root, "store.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(Options{Root: root})
	if err == nil || !strings.Contains(err.Error(), "id mapping") {
		t.Fatalf("Open of a store with another mapping = %v, want an error about the id mapping", err)
	}
}

func TestOpenRefusesBadFilesystems(t *testing.T) {
	testutil.RootOnly(t)
	for _, tc := range []struct {
		fstype, opts, want string
	}{
		{"ramfs", "", "user xattrs"},
		{"overlay", "", "overlayfs"},
	} {
		t.Run(tc.fstype, func(t *testing.T) {
			dir := t.TempDir()
			mnt := filepath.Join(dir, "mnt")
			os.Mkdir(mnt, 0o755)
			opts := tc.opts
			if tc.fstype == "overlay" {
				for _, d := range []string{"lower", "upper", "work"} {
					os.Mkdir(filepath.Join(dir, d), 0o755)
				}
				opts = "lowerdir=" + dir + "/lower,upperdir=" + dir + "/upper,workdir=" + dir + "/work"
			}
			if err := unix.Mount(tc.fstype, mnt, tc.fstype, 0, opts); err != nil {
				t.Fatalf("mount %s: %v", tc.fstype, err)
			}
			t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
			_, err := Open(Options{Root: filepath.Join(mnt, "store")})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open on %s = %v, want an error mentioning %q", tc.fstype, err, tc.want)
			}
		})
	}
}

func TestDefaultRoot(t *testing.T) {
	t.Setenv("LIGHTBOX_ROOT", "/x/y")
	if got, _ := DefaultRoot(); got != "/x/y" {
		t.Errorf("DefaultRoot() with LIGHTBOX_ROOT = %q, want /x/y", got)
	}
	t.Setenv("LIGHTBOX_ROOT", "")
	t.Setenv("XDG_DATA_HOME", "/d")
	want := "/d/lightbox"
	if os.Geteuid() == 0 {
		want = "/var/lib/lightbox"
	}
	if got, _ := DefaultRoot(); got != want {
		t.Errorf("DefaultRoot() = %q, want %q", got, want)
	}
}

// TestForgotInit checks that a program that never called Init gets an
// error saying so instead of a second copy of its main in the sandbox.
func TestForgotInit(t *testing.T) {
	initCalled.Store(false)
	defer initCalled.Store(true)
	r, err := Open(Options{Root: filepath.Join(t.TempDir(), "store")})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = r.LaunchSandbox(t.Context(), SandboxOptions{Snapshot: "x", Network: NetworkNone})
	if err == nil || !strings.Contains(err.Error(), "lightbox.Init()") {
		t.Fatalf("LaunchSandbox without Init = %v, want an error telling to call lightbox.Init()", err)
	}
}
