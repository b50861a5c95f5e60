//go:build linux

package ociruntime_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A bind mount's options are applied or refused, never dropped: runc's
// recursive forms ("rro", "rnoexec", …, which engines pass when
// `features` lists them, and Kubernetes' recursive read-only mounts) and
// "nosymfollow" were dropped unapplied, so the container wrote to a host
// directory its engine mounted read-only. The attack writes through the
// mount and follows a symlink in it; the host directory must stay as it
// was. An option lightbox-runc does not know is refused, naming it; a
// filesystem parameter (key=value) means nothing to a bind and is
// dropped, as runc drops it (runtime-tools' mounts gives "mode=755").
func TestBindMountOptionsApplied(t *testing.T) {
	root := stateRoot(t)
	host := t.TempDir()
	if err := os.Chmod(host, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/hostname", filepath.Join(host, "link")); err != nil {
		t.Fatal(err)
	}
	b := bundle(t, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/h", Type: "bind", Source: host, Options: []string{"rbind", "rro", "rnosymfollow", "mode=755"}})
	}, "sh", "-c", `echo pwned > /h/planted && echo WROTE; cat /h/link >/dev/null && echo FOLLOWED; grep " /h " /proc/self/mountinfo`)
	r := runc(t, root, "run", "--bundle", b, "ro")
	if _, err := os.Lstat(filepath.Join(host, "planted")); err == nil {
		t.Errorf("the container wrote into the host directory mounted rro")
	}
	if r.code != 0 || strings.Contains(r.out, "WROTE") || strings.Contains(r.out, "FOLLOWED") || !strings.Contains(r.out, " ro,") || !strings.Contains(r.out, "nosymfollow") {
		t.Errorf("run: exit %d, stdout %q, stderr %q; want the mount read-only and nosymfollow", r.code, r.out, r.err)
	}

	b = bundle(t, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/h", Type: "bind", Source: host, Options: []string{"rbind", "ro", "rnotanoption"}})
	}, "true")
	r = runc(t, root, "run", "--bundle", b, "unknown")
	if r.code == 0 || !strings.Contains(r.err, `option "rnotanoption"`) || !strings.Contains(r.err, "not supported") {
		t.Errorf("run with an unknown bind option: exit %d, %q; want a refusal naming it", r.code, r.err)
	}
}
