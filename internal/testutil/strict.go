// Package testutil holds helpers shared by lightbox's tests: strict mode
// (CI turns a skip for a missing capability into a failure), and fixtures.
package testutil

import (
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"testing"
)

// Strict reports whether LIGHTBOX_TEST_STRICT=1: a test that would skip
// for a missing capability (root, user namespaces, a kernel feature, a
// tool) fails instead.
func Strict() bool { return os.Getenv("LIGHTBOX_TEST_STRICT") == "1" }

// RootlessPass reports whether this run is the rootless pass of `make
// test` (LIGHTBOX_TEST_ROOTLESS=1), which runs as an ordinary user.
func RootlessPass() bool { return os.Getenv("LIGHTBOX_TEST_ROOTLESS") == "1" }

// Need skips t, or fails it in strict mode, when ok is false; what names
// the missing capability ("needs mkfs.ext4", "needs the kernel's quota
// support").
func Need(t testing.TB, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if Strict() {
		t.Fatalf("strict mode: %s", what)
	}
	t.Skip(what)
}

// NeedTool is Need for a program in PATH.
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Need(t, err == nil, "needs "+name+" in PATH")
	return p
}

// RootOnly marks a test that only makes sense as real root (loop mounts,
// quotas, identity mapping). The rootless pass of `make test` skips it by
// design (the root pass runs it); anywhere else, not being root is a
// missing capability (a failure in strict mode).
func RootOnly(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if RootlessPass() {
		t.Skip("root-only test: needs root, run by the root pass of make test")
	}
	Need(t, false, "needs root")
}

// RootlessOnly marks a test of rootless behaviour; the root pass skips it
// by design (the rootless pass runs it).
func RootlessOnly(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	if os.Getenv("LIGHTBOX_TEST_ROOT") == "1" {
		t.Skip("rootless-only test: needs a non-root user, run by the rootless pass of make test")
	}
	Need(t, false, "needs to run as a non-root user")
}

// TestUser is the harness's ordinary user (LIGHTBOX_TEST_USER, lbtest by
// default; make test creates it), with its uid and gid; without it t is
// skipped (a failure in strict mode).
func TestUser(t testing.TB) (u *user.User, uid, gid int) {
	t.Helper()
	name := os.Getenv("LIGHTBOX_TEST_USER")
	if name == "" {
		name = "lbtest"
	}
	u, err := user.Lookup(name)
	Need(t, err == nil, "needs the unprivileged test user "+name+" (make test creates it)")
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return u, uid, gid
}
