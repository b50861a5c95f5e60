//go:build linux

package ociruntime_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A tmpfs with the option tmpcopyup starts with what the image has where
// it is mounted, as runc makes it: podman passes it for every --tmpfs and
// for /tmp, /run and /var/tmp under --read-only, which lightbox-runc
// refused. The copy keeps modes and symlinks as they are (a symlink
// pointing out of the root is copied, not followed), the container writes
// to the tmpfs, not the image, and a read-only tmpfs is filled before it
// is made read-only.
func TestTmpfsCopyUp(t *testing.T) {
	root := stateRoot(t)
	b := bundle(t, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/data", Type: "tmpfs", Source: "tmpfs", Options: []string{"rw", "rprivate", "nosuid", "nodev", "tmpcopyup"}},
			specs.Mount{Destination: "/rodata", Type: "tmpfs", Source: "tmpfs", Options: []string{"ro", "tmpcopyup"}})
	}, "sh", "-c", `cat /data/f /data/sub/g; stat -c %a /data /data/f; readlink /data/out; echo new > /data/new && cat /data/new; `+
		`cat /rodata/f; echo x > /rodata/y || echo ro; grep -c " /data .*- tmpfs " /proc/self/mountinfo`)
	img := filepath.Join(b, "rootfs")
	for _, d := range []string{"data/sub", "rodata"} {
		if err := os.MkdirAll(filepath.Join(img, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{"data/f": "one\n", "data/sub/g": "two\n", "rodata/f": "three\n"} {
		if err := os.WriteFile(filepath.Join(img, name), []byte(body), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(img, "data"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../etc", filepath.Join(img, "data", "out")); err != nil {
		t.Fatal(err)
	}
	r := runc(t, root, "run", "--bundle", b, "cu")
	want := "one\ntwo\n750\n640\n../../../../../../etc\nnew\nthree\nro\n1\n"
	if r.code != 0 || r.out != want {
		t.Errorf("run: exit %d, stdout %q, stderr %q; want %q", r.code, r.out, r.err, want)
	}
	if _, err := os.Lstat(filepath.Join(img, "data", "new")); err == nil {
		t.Errorf("the container's write reached the image's /data, not the tmpfs")
	}
	if r := runc(t, root, "run", "--bundle", bundle(t, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "proc", Source: "proc", Options: []string{"tmpcopyup"}})
	}, "true"), "notmpfs"); r.code == 0 || !strings.Contains(r.err, "tmpcopyup") {
		t.Errorf("tmpcopyup on a proc mount: exit %d, %q; want a refusal naming it", r.code, r.err)
	}
}
