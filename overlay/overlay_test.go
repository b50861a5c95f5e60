//go:build linux

package overlay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/beamhop/lightbox/internal/sys"
	"github.com/beamhop/lightbox/internal/testutil"
	"github.com/google/go-cmp/cmp"
)

func TestParams(t *testing.T) {
	s := Spec{Layers: []string{"/l/bottom", "/l/middle", "/l/top"}, Upper: "/s/upper", Work: "/s/work"}
	want := []sys.Param{
		{Key: "userxattr"}, {Key: "redirect_dir", Value: "nofollow"}, {Key: "metacopy", Value: "off"},
		{Key: "lowerdir+", Value: "/l/top"}, {Key: "lowerdir+", Value: "/l/middle"}, {Key: "lowerdir+", Value: "/l/bottom"},
		{Key: "upperdir", Value: "/s/upper"}, {Key: "workdir", Value: "/s/work"},
	}
	if diff := cmp.Diff(want, s.Params()); diff != "" {
		t.Errorf("Params() mismatch (-want +got):\n%s", diff)
	}
	d, err := s.Data()
	if err != nil || d != "userxattr,redirect_dir=nofollow,metacopy=off,lowerdir=/l/top:/l/middle:/l/bottom,upperdir=/s/upper,workdir=/s/work" {
		t.Errorf("Data() = %q, %v", d, err)
	}
}

// TestParamsVolatile: a volatile overlay says so among the options, before
// the layers, in both forms.
func TestParamsVolatile(t *testing.T) {
	s := Spec{Layers: []string{"/l/bottom"}, Upper: "/s/upper", Work: "/s/work", Volatile: true}
	want := []sys.Param{
		{Key: "userxattr"}, {Key: "redirect_dir", Value: "nofollow"}, {Key: "metacopy", Value: "off"}, {Key: "volatile"},
		{Key: "lowerdir+", Value: "/l/bottom"}, {Key: "upperdir", Value: "/s/upper"}, {Key: "workdir", Value: "/s/work"},
	}
	if diff := cmp.Diff(want, s.Params()); diff != "" {
		t.Errorf("Params() mismatch (-want +got):\n%s", diff)
	}
	if d, err := s.Data(); err != nil || d != "userxattr,redirect_dir=nofollow,metacopy=off,volatile,lowerdir=/l/bottom,upperdir=/s/upper,workdir=/s/work" {
		t.Errorf("Data() = %q, %v", d, err)
	}
	if ps := CopyOnWrite("/lower", "/u", "/w"); !slices.Contains(ps, sys.Param{Key: "volatile"}) {
		t.Errorf("CopyOnWrite = %v: not volatile", ps)
	}
}

func TestDataTooLong(t *testing.T) {
	var s Spec
	for i := range 200 {
		s.Layers = append(s.Layers, fmt.Sprintf("/var/lib/lightbox/snapshots/layers/%064d", i))
	}
	s.Upper, s.Work = "/u", "/w"
	if _, err := s.Data(); !errors.Is(err, ErrTooLong) {
		t.Errorf("Data() of 200 layers: %v, want ErrTooLong", err)
	}
	if got := len(s.Params()); got != 205 {
		t.Errorf("len(Params()) = %d, want 205", got)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		s    Spec
		want string
	}{
		{Spec{Upper: "/u", Work: "/w"}, "no layers"},
		{Spec{Layers: []string{"rel"}, Upper: "/u", Work: "/w"}, "not a clean absolute path"},
		{Spec{Layers: []string{"/a/../b"}, Upper: "/u", Work: "/w"}, "not a clean absolute path"},
		{Spec{Layers: []string{"/a:b"}, Upper: "/u", Work: "/w"}, "cannot take"},
		{Spec{Layers: []string{"/a"}, Upper: "/u,x", Work: "/w"}, "cannot take"},
		{Spec{Layers: []string{"/a"}, Upper: "/u", Work: ""}, "work dir"},
	} {
		err := tc.s.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want an error saying %q", tc.s, err, tc.want)
		}
	}
	if err := (Spec{Layers: []string{"/a"}, Upper: "/u", Work: "/w"}).Validate(); err != nil {
		t.Errorf("Validate of a good spec: %v", err)
	}
}

// TestMount mounts 150 layers (far past a page of options) in the host's
// mount namespace: real root only (sandboxes mount theirs inside their own
// namespaces; the runtime's tests cover that, root and rootless).
func TestMount(t *testing.T) {
	testutil.RootOnly(t)
	dir := t.TempDir()
	var s Spec
	for i := range 150 {
		l := filepath.Join(dir, fmt.Sprintf("layer-with-a-long-name-%04d", i))
		if err := os.MkdirAll(l, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(l, "top"), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		s.Layers = append(s.Layers, l)
	}
	s.Upper, s.Work = filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	target := filepath.Join(dir, "merged")
	for _, d := range []string{s.Upper, s.Work, target} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := Mount(s, target); err != nil {
		t.Fatal(err)
	}
	defer Unmount(target)
	if b, err := os.ReadFile(filepath.Join(target, "top")); err != nil || string(b) != "149" {
		t.Errorf("top = %q, %v; want the top layer's 149", b, err)
	}
	if err := os.WriteFile(filepath.Join(target, "new"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Upper, "new")); err != nil {
		t.Errorf("write did not land in the upper dir: %v", err)
	}
	if err := Unmount(target); err != nil {
		t.Fatal(err)
	}
	if err := Unmount(target); err != nil {
		t.Errorf("second Unmount: %v, want nil", err)
	}
	if _, err := os.Stat(filepath.Join(target, "top")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("still mounted after Unmount: %v", err)
	}
}

// TestMountLegacy mounts with the fallback kernels before 6.8 get (no
// "lowerdir+"): the classic option string, with the layers' own paths for
// a short stack and named by descriptor for 120 layers with digest-long
// names (over a page as paths). Real root only, in the host's mount
// namespace; the VM test in the root package runs it on Linux 6.1.
func TestMountLegacy(t *testing.T) {
	testutil.RootOnly(t)
	for _, n := range []int{3, 120} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			dir := t.TempDir()
			var s Spec
			for i := range n {
				l := filepath.Join(dir, fmt.Sprintf("%064x", i))
				if err := os.MkdirAll(l, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(l, "top"), []byte(fmt.Sprint(i)), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(l, fmt.Sprint("only-", i)), nil, 0o644); err != nil {
					t.Fatal(err)
				}
				s.Layers = append(s.Layers, l)
			}
			s.Upper, s.Work = filepath.Join(dir, "upper"), filepath.Join(dir, "work")
			target := filepath.Join(dir, "merged")
			for _, d := range []string{s.Upper, s.Work, target} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			_, derr := s.Data()
			if tooLong := errors.Is(derr, ErrTooLong); tooLong != (n > 50) {
				t.Fatalf("Data() of %d layers: %v", n, derr)
			}
			wd, _ := os.Getwd()
			if err := mountLegacy(s, target); err != nil {
				t.Fatal(err)
			}
			defer Unmount(target)
			if now, _ := os.Getwd(); now != wd {
				t.Errorf("working directory after the mount: %q, want %q", now, wd)
			}
			if b, err := os.ReadFile(filepath.Join(target, "top")); err != nil || string(b) != fmt.Sprint(n-1) {
				t.Errorf("top = %q, %v; want the top layer's %d", b, err, n-1)
			}
			ents, err := os.ReadDir(target)
			if err != nil || len(ents) != n+1 {
				t.Errorf("merged root has %d entries (%v), want every layer's file and top: %d", len(ents), err, n+1)
			}
			if err := os.WriteFile(filepath.Join(target, "new"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(s.Upper, "new")); err != nil {
				t.Errorf("write did not land in the upper dir: %v", err)
			}
			if err := os.Remove(filepath.Join(target, "only-0")); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(filepath.Join(target, "only-0")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a removed lower file is still there: %v", err)
			}
			if err := Unmount(target); err != nil {
				t.Fatal(err)
			}
		})
	}
}
