//go:build linux

package ociruntime_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A config's sysctl that the container does not own is refused, as runc
// refuses it: the init writes sysctls before it drops anything, so as
// root without a user namespace one that is not per namespace
// (kernel.printk_ratelimit_burst), or whose namespace is the host's (a
// net.* sysctl with no network namespace, or with the runtime's own
// joined by path), was written to the host. The attack asks for the host's
// value plus one and checks the host's is unchanged; the sysctls of the
// container's own namespaces still reach it.
func TestSysctlOfTheHostRefused(t *testing.T) {
	root := stateRoot(t)
	noNet := func(s *specs.Spec) {
		s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.NetworkNamespace })
	}
	for _, tc := range []struct {
		name, key string
		edit      func(*specs.Spec)
	}{
		{"not per namespace", "kernel.printk_ratelimit_burst", nil},
		{"no network namespace", "net.core.somaxconn", noNet},
		{"slash separators", "net/core/somaxconn", noNet},
		{"the host's network namespace joined", "net.core.somaxconn", func(s *specs.Spec) {
			noNet(s)
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/proc/self/ns/net"})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/proc/sys/" + strings.ReplaceAll(strings.ReplaceAll(tc.key, "/", "."), ".", "/")
			before := readSysctl(t, path)
			n, err := strconv.Atoi(before)
			if err != nil {
				t.Fatalf("%s = %q: %v", path, before, err)
			}
			b := bundle(t, func(s *specs.Spec) {
				if tc.edit != nil {
					tc.edit(s)
				}
				s.Linux.Sysctl = map[string]string{tc.key: strconv.Itoa(n + 1)}
			}, "true")
			r := runc(t, root, "run", "--bundle", b, "sc")
			if after := readSysctl(t, path); after != before {
				t.Errorf("the host's %s is %s after the run, was %s", path, after, before)
				if err := os.WriteFile(path, []byte(before), 0); err != nil {
					t.Errorf("put back %s: %v", path, err)
				}
			}
			if r.code == 0 || !strings.Contains(r.err, "linux.sysctl \""+tc.key+"\"") || !strings.Contains(r.err, "host") {
				t.Errorf("run with sysctl %s: exit %d, %q; want a refusal naming it", tc.key, r.code, r.err)
			}
			if _, err := os.Stat(filepath.Join(root, "sc")); err == nil {
				t.Errorf("the refused create left its state dir")
			}
		})
	}
	b := bundle(t, func(s *specs.Spec) {
		noNet(s)
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
		s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"}
	}, "sh", "-c", "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni")
	r := runc(t, root, "run", "--bundle", b, "own")
	if r.code != 0 || r.out != "1\n1234\n" {
		t.Errorf("run with the container's own sysctls: exit %d, stdout %q, stderr %q; want 1 and 1234", r.code, r.out, r.err)
	}
}

func readSysctl(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
