//go:build linux

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// etcImage imports, as "etcimg" into root, busybox with its own
// /etc/hostname, /etc/hosts and another file in /etc.
func etcImage(t *testing.T, root string) {
	t.Helper()
	rootfs := testBusybox(t)
	for name, data := range map[string]string{"hostname": "image-hostname\n", "hosts": "image hosts\n", "motd": "image motd\n"} {
		if err := os.WriteFile(filepath.Join(rootfs, "etc", name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lbOK(t, root, "snapshot", "import", "etcimg", rootfs)
}

// readVolFile reads a file of a volume's data on the host ("" when
// missing).
func readVolFile(t *testing.T, root, vol, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "volumes", vol, "data", name))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// TestEtcVolumeKeepsOwnFiles: a volume mounted at /etc does not hide the
// sandbox's own /etc/hostname and /etc/hosts (docker's and podman's are
// mounted over a volume at /etc): two sandboxes on one volume each see
// their own name, a new volume is filled with the image's files (not
// the first sandbox's), and a mount exactly at /etc/hostname still
// covers the sandbox's.
func TestEtcVolumeKeepsOwnFiles(t *testing.T) {
	root, _ := newStore(t)
	etcImage(t, root)
	for _, name := range []string{"first", "second"} {
		out := lbOK(t, root, "run", "--rm", "--name", name, "--network", "none", "-v", "ev:/etc", "etcimg", "sh", "-c", "cat /etc/hostname; grep -c "+name+" /etc/hosts; cat /etc/motd")
		if want := name + "\n1\nimage motd\n"; out != want {
			t.Errorf("sandbox %s on a volume at /etc shows:\n%s\nwant its own hostname and hosts, and the image's motd:\n%s", name, out, want)
		}
	}
	for name, want := range map[string]string{"hostname": "image-hostname\n", "hosts": "image hosts\n", "motd": "image motd\n"} {
		if got := readVolFile(t, root, "ev", name); got != want {
			t.Errorf("the new volume's %s on the host = %q; want the image's %q", name, got, want)
		}
	}
	mine := filepath.Join(t.TempDir(), "myname")
	if err := os.WriteFile(mine, []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := lbOK(t, root, "run", "--rm", "--network", "none", "-v", "ev:/etc", "-v", mine+":/etc/hostname", "etcimg", "cat", "/etc/hostname"); out != "mine\n" {
		t.Errorf("a mount at /etc/hostname over a volume at /etc shows %q; want the mount's mine", out)
	}
}

// TestEtcVolumeReadOnly: a read-only volume or host directory at /etc is
// never written for the sandbox's own etc files: a new one is filled
// with the image's files and the sandbox sees its own over them; one
// with no /etc/hostname to mount over fails the launch, saying why, and
// stays empty (docker's runc fails too); a read-only host directory is
// left as it was.
func TestEtcVolumeReadOnly(t *testing.T) {
	root, _ := newStore(t)
	etcImage(t, root)
	out := lbOK(t, root, "run", "--rm", "--name", "ro", "--network", "none", "-v", "rov:/etc:ro", "etcimg", "sh", "-c", "cat /etc/hostname /etc/motd; (echo x > /etc/motd) 2>/dev/null && echo wrote; true")
	if want := "ro\nimage motd\n"; out != want {
		t.Errorf("a new read-only volume at /etc shows:\n%s\nwant:\n%s", out, want)
	}
	if got := readVolFile(t, root, "rov", "hostname"); got != "image-hostname\n" {
		t.Errorf("the read-only volume's hostname on the host = %q; want the image's", got)
	}

	r := lb(t, root, "", "run", "--rm", "--network", "none", "-v", "empty:/etc:ro,nocopy", "etcimg", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "read-only mount at /etc has no") {
		t.Errorf("an empty read-only volume at /etc: exit %d, stderr %q; want the launch refused, saying the mount has no mount point", r.code, r.stderr)
	}
	if names := dirNames(t, filepath.Join(root, "volumes", "empty", "data")); len(names) != 0 {
		t.Errorf("the empty read-only volume holds %v; want it unwritten", names)
	}

	host := t.TempDir()
	for _, n := range []string{"hostname", "hosts", "resolv.conf"} {
		if err := os.WriteFile(filepath.Join(host, n), []byte("host's "+n+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out := lbOK(t, root, "run", "--rm", "--name", "hd", "--network", "none", "-v", host+":/etc:ro", "etcimg", "cat", "/etc/hostname"); out != "hd\n" {
		t.Errorf("a read-only host directory at /etc shows hostname %q; want the sandbox's hd", out)
	}
	for _, n := range []string{"hostname", "hosts", "resolv.conf"} {
		if b, err := os.ReadFile(filepath.Join(host, n)); err != nil || string(b) != "host's "+n+"\n" {
			t.Errorf("the host directory's %s = %q, %v; want it unchanged", n, b, err)
		}
	}
}

// TestEtcVolumeSymlinkAttack: a sandbox that shares a volume plants
// symlinks where another sandbox's etc files go (/etc/hosts to a file of
// the volume, /etc/hostname dangling into the volume, /etc/resolv.conf
// to a host file): the other sandbox, with the volume at /etc, follows
// none of them — its launch is refused, nothing is made or covered
// where they point, and the host's file is unchanged.
func TestEtcVolumeSymlinkAttack(t *testing.T) {
	for kind, root := range attackStores(t) {
		t.Run(kind, func(t *testing.T) {
			hostFile := filepath.Join(t.TempDir(), "target")
			if err := os.WriteFile(hostFile, []byte("host\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			hostBefore := lstatOf(t, hostFile)
			lbOK(t, root, "run", "--rm", "--network", "none", "-v", "shared:/x:nocopy", "busybox", "sh", "-c",
				"echo keep > /x/victim && ln -s /etc/victim /x/hosts && ln -s /etc/planted /x/hostname && ln -s "+hostFile+" /x/resolv.conf")
			r := lb(t, root, "", "run", "--rm", "--network", "none", "-v", "shared:/etc", "busybox", "sh", "-c", "cat /etc/hosts; cat /etc/hostname")
			if r.code == 0 || !strings.Contains(r.stderr, "a symlink, not followed") {
				t.Errorf("a volume at /etc whose etc files are symlinks: exit %d, stdout %q, stderr %q; want the launch refused (a symlink, not followed)", r.code, r.stdout, r.stderr)
			}
			vol := filepath.Join(root, "volumes", "shared", "data")
			if got, want := strings.Join(dirNames(t, vol), " "), "hostname hosts resolv.conf victim"; got != want {
				t.Errorf("the volume holds %q; want only what the attacker made, %q", got, want)
			}
			for name, to := range map[string]string{"hosts": "/etc/victim", "hostname": "/etc/planted", "resolv.conf": hostFile} {
				if got, err := os.Readlink(filepath.Join(vol, name)); err != nil || got != to {
					t.Errorf("the volume's %s = %q, %v; want the attacker's symlink to %s", name, got, err, to)
				}
			}
			if got := readVolFile(t, root, "shared", "victim"); got != "keep\n" {
				t.Errorf("the volume's victim = %q; want keep", got)
			}
			if got := lstatOf(t, hostFile); got != hostBefore {
				t.Errorf("the host's file changed: %s, was %s", got, hostBefore)
			}
			if b, err := os.ReadFile(hostFile); err != nil || string(b) != "host\n" {
				t.Errorf("the host's file = %q, %v; want host", b, err)
			}
		})
	}
}
