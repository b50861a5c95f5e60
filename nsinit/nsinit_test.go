//go:build linux

package nsinit

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestExecErrorCode(t *testing.T) {
	if _, err := lookPath("surely-no-such-command-here", "/", []string{"PATH=/nonexistent"}); err == nil {
		t.Fatal("lookPath of a missing command succeeded")
	} else if se, ok := err.(*startError); !ok || se.code != 127 {
		t.Errorf("lookPath of a missing command: %v, want code 127", err)
	}
	if p, err := lookPath("sh", "/", []string{"PATH=/nonexistent:/bin"}); err != nil || p != "/bin/sh" {
		t.Errorf("lookPath(sh) = %q, %v", p, err)
	}
	for _, f := range []string{"/etc/passwd", "/tmp"} {
		if _, err := lookPath(f, "/", nil); err == nil {
			t.Errorf("lookPath(%s) succeeded", f)
		} else if se, ok := err.(*startError); !ok || se.code != 126 {
			t.Errorf("lookPath(%s): %v, want code 126", f, err)
		}
	}
}

// TestDeps keeps what runs inside every sandbox small: nsinit, and the
// internal packages it pulls in, import only the standard library, x/sys,
// x/net/bpf and lightbox's internal packages, and none of the launcher's
// side (heavy, below). (It reads the sources: the test runs in the package
// directory.)
func TestDeps(t *testing.T) {
	const mod = "github.com/beamhop/lightbox/"
	// The launcher's side, which the lean init (internal/initbin) must not
	// link: reexec's Command and the id mapping pull in os/exec, os/user,
	// crypto/sha256 and their package inits (nsinit uses reexec/child).
	heavy := map[string]bool{
		mod + "internal/reexec": true, mod + "internal/idmap": true,
		"os/exec": true, "os/user": true, "crypto/sha256": true,
	}
	seen := map[string]bool{}
	var visit func(pkg, dir string)
	visit = func(pkg, dir string) {
		if seen[pkg] {
			return
		}
		seen[pkg] = true
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("sources of %s in %s: %v", pkg, dir, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, im := range af.Imports {
				p, _ := strconv.Unquote(im.Path.Value)
				if heavy[p] {
					t.Errorf("%s (via %s) imports %s, the launcher's side", pkg, filepath.Base(f), p)
				}
				switch {
				case strings.HasPrefix(p, mod+"internal/"):
					visit(p, filepath.Join("..", strings.TrimPrefix(p, mod)))
				case strings.HasPrefix(p, "golang.org/x/sys/"):
				case p == "golang.org/x/net/bpf":
					// internal/sys/seccomp's assembler: no package
					// init, no tables (measured: the lean init's
					// inits and start time unchanged).
				case !strings.Contains(strings.Split(p, "/")[0], "."):
					// standard library
				default:
					t.Errorf("%s (via %s) imports %s", pkg, filepath.Base(f), p)
				}
			}
		}
	}
	visit(mod+"nsinit", ".")
}

func TestRootedIn(t *testing.T) {
	v1 := "9:name=systemd:/\n8:pids:/\n5:cpu,cpuacct:/\n4:memory:/\n0::/\n"
	for _, tc := range []struct {
		text  string
		ctrls []string
		want  bool
	}{
		{v1, []string{"pids", "memory", "cpu", "cpuacct"}, true},
		{"8:pids:/\n5:cpu,cpuacct:/lightbox/x\n4:memory:/\n", []string{"pids", "memory", "cpu"}, false},
		{"8:pids:/\n4:memory:/\n", []string{"pids", "cpu"}, false}, // cpu is not mounted: not known to be rooted
		{"0::/\n", []string{"cgroup2"}, true},
		{"0::/user.slice/x\n", []string{"cgroup2"}, false},
		{"8:pids:/\n", []string{"cgroup2"}, false},
		{"5:cpu,cpuacct:/\n", []string{"cpuacct"}, true},
	} {
		if got := rootedIn(tc.text, tc.ctrls); got != tc.want {
			t.Errorf("rootedIn(%q, %q) = %v, want %v", tc.text, tc.ctrls, got, tc.want)
		}
	}
}
