//go:build linux

package initbin

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"testing"
)

// TestFresh rebuilds the lean init from the current sources the way
// gen.go does and checks that the committed program is that one: a change
// to nsinit (or to anything it links) without `go generate` fails here.
func TestFresh(t *testing.T) {
	if !Available() {
		t.Fatalf("no lean init carried for %s/%s: run go generate ./internal/initbin", goruntime.GOOS, goruntime.GOARCH)
	}
	out := filepath.Join(t.TempDir(), "init")
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", out, "./lightbox-init")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	if got := hex.EncodeToString(h[:]); got != Sum() {
		t.Fatalf("lean init built from the sources = %s, committed %s: run go generate ./internal/initbin", got, Sum())
	}
	if int64(len(b)) != size() {
		t.Fatalf("size() = %d, want %d", size(), len(b))
	}
}

func TestInstall(t *testing.T) {
	dir := t.TempDir()
	p, err := Install(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o555 || fi.Size() != size() {
		t.Fatalf("installed %v %d bytes, want -r-xr-xr-x %d", fi.Mode(), fi.Size(), size())
	}
	// A damaged file (wrong size) is replaced; a good one is kept.
	if err := os.Chmod(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("junk"), 0o555); err != nil {
		t.Fatal(err)
	}
	if p2, err := Install(dir); err != nil || p2 != p {
		t.Fatalf("Install again = %q, %v; want %q", p2, err, p)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	if hex.EncodeToString(h[:]) != Sum() {
		t.Fatal("damaged lean init was not replaced")
	}
	before, _ := os.Stat(p)
	if _, err := Install(dir); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(p)
	if !os.SameFile(before, after) {
		t.Fatal("a good lean init was rewritten")
	}
	// The program refuses any role but the init.
	out, err := exec.Command(p).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 125 {
		t.Fatalf("lean init without a role: %v, %s; want exit 125", err, out)
	}
}

// TestInstallWhileForking installs the program while other goroutines
// fork and exec all the time (as a process launching sandboxes in
// parallel does), then executes it at once: a child forked while the
// program was open for writing must not make that exec fail with ETXTBSY.
func TestInstallWhileForking(t *testing.T) {
	stop := make(chan struct{})
	done := make(chan struct{})
	for i := 0; i < 4; i++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = exec.Command("/bin/true").Run() // only the forks matter here
			}
		}()
	}
	defer func() {
		close(stop)
		for i := 0; i < 4; i++ {
			<-done
		}
	}()
	for i := 0; i < 40; i++ {
		p, err := Install(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		err = exec.Command(p).Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 125 {
			t.Fatalf("run %d: exec of the just-installed init: %v; want exit 125", i, err)
		}
	}
}
