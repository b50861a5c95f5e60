//go:build linux

package ociruntime_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestPodSharesNamespacesByPath: a Kubernetes pod as containerd's CRI
// plugin makes it. A pause container owns the pod's network, IPC and UTS
// namespaces; an app container joins them by path
// ({"type":"network","path":"/proc/<pause>/ns/net"}, ...), gets its own
// mount and pid namespaces, and sees what the pause container's
// namespaces hold (an address on lo, the pod's hostname) and shares
// their inodes. Root only: an unprivileged runtime may not enter a
// network namespace of another user namespace, and joining a user
// namespace by path is refused.
func TestPodSharesNamespacesByPath(t *testing.T) {
	testutil.RootOnly(t)
	root := stateRoot(t)
	pause := bundle(t, func(s *specs.Spec) {
		s.Hostname = "pod-1"
		c := s.Process.Capabilities
		c.Bounding = append(c.Bounding, "CAP_NET_ADMIN")
		c.Effective = append(c.Effective, "CAP_NET_ADMIN")
		c.Permitted = append(c.Permitted, "CAP_NET_ADMIN")
	}, "sh", "-c", "ip link set lo up && ip addr add 10.1.2.3/32 dev lo && touch /tmp/ready && exec sleep 60")
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	if r := runcIn(t, root, out, "create", "--bundle", pause, "pause"); r.code != 0 {
		t.Fatalf("create pause: exit %d: %s", r.code, readAll(out))
	}
	t.Cleanup(func() { runc(t, root, "delete", "--force", "pause") })
	mustRunc(t, root, "start", "pause")
	st := state(t, root, "pause")
	waitFor(t, "the pause container is set up", func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d/root/tmp/ready", st.Pid))
		if st := state(t, root, "pause"); st.Status != "running" {
			t.Fatalf("pause container: %s: %s", st.Status, readAll(out))
		}
		return err == nil
	})

	nsPath := func(typ string) string { return fmt.Sprintf("/proc/%d/ns/%s", st.Pid, typ) }
	app := bundle(t, func(s *specs.Spec) {
		s.Hostname = ""
		var ns []specs.LinuxNamespace
		for _, n := range s.Linux.Namespaces {
			switch n.Type {
			case specs.NetworkNamespace:
				n.Path = nsPath("net")
			case specs.IPCNamespace:
				n.Path = nsPath("ipc")
			case specs.UTSNamespace:
				n.Path = nsPath("uts")
			}
			ns = append(ns, n)
		}
		s.Linux.Namespaces = ns
	}, "sh", "-c", "ip -4 addr show dev lo | grep -o 10.1.2.3; hostname; ls /tmp")
	r := runc(t, root, "run", "--bundle", app, "app")
	if r.code != 0 || r.out != "10.1.2.3\npod-1\n" {
		t.Fatalf("app container in the pause container's namespaces: exit %d, output %q (stderr %q), want the pod's address and hostname and an empty /tmp of its own", r.code, r.out, r.err)
	}

	// The app container was in those very namespaces, and in mount and
	// pid namespaces of its own: compare the inodes while it runs.
	app2 := bundle(t, func(s *specs.Spec) {
		s.Hostname = ""
		for i, n := range s.Linux.Namespaces {
			switch n.Type {
			case specs.NetworkNamespace:
				s.Linux.Namespaces[i].Path = nsPath("net")
			case specs.IPCNamespace:
				s.Linux.Namespaces[i].Path = nsPath("ipc")
			case specs.UTSNamespace:
				s.Linux.Namespaces[i].Path = nsPath("uts")
			}
		}
	}, "sleep", "60")
	mustRunc(t, root, "create", "--bundle", app2, "app2")
	t.Cleanup(func() { runc(t, root, "delete", "--force", "app2") })
	st2 := state(t, root, "app2")
	for typ, same := range map[string]bool{"net": true, "ipc": true, "uts": true, "mnt": false, "pid": false} {
		a, err1 := os.Readlink(nsPath(typ))
		b, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", st2.Pid, typ))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if (a == b) != same {
			t.Errorf("%s namespace: pause %s, app %s: want shared %v", typ, a, b, same)
		}
	}

	// A path that is not a namespace of the named type is refused, and
	// nothing is left of the container.
	bad := bundle(t, func(s *specs.Spec) {
		for i, n := range s.Linux.Namespaces {
			if n.Type == specs.NetworkNamespace {
				s.Linux.Namespaces[i].Path = nsPath("uts")
			}
		}
	}, "true")
	if r := runc(t, root, "create", "--bundle", bad, "bad"); r.code == 0 || !strings.Contains(r.err, "network") {
		t.Fatalf("joining a uts namespace as the network one: exit %d, %q", r.code, r.err)
	}
	if r := runc(t, root, "state", "bad"); r.code == 0 {
		t.Fatalf("state of a refused container: %q", r.out)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, what, ok)
}
