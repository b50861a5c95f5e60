//go:build linux

package initbin

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
	"time"
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

// TestRemoveStale: a collection removes the programs of other builds that
// nobody holds and nothing used for staleAfter, and nothing else: not
// this build's, not a held one, not a recent one, not what only looks
// like a program.
func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-staleAfter - time.Hour)
	mk := func(name string, when time.Time) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("\x7fELF another build's init"), 0o555); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, when, when); err != nil {
			t.Fatal(err)
		}
		return p
	}
	own, err := Install(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(own, old, old); err != nil {
		t.Fatal(err)
	}
	stale := mk(".init-"+strings.Repeat("a", 32), old)
	recent := mk(".init-"+strings.Repeat("b", 32), time.Now())
	held := mk(".init-"+strings.Repeat("c", 32), old)
	short := mk(".init-abc", old)
	upper := mk(".init-"+strings.Repeat("A", 32), old)
	outside := mk("elsewhere", old)
	link := filepath.Join(dir, ".init-"+strings.Repeat("e", 32))
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, ".init-"+strings.Repeat("d", 32))
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	h, err := Hold(held)
	if err != nil {
		t.Fatal(err)
	}
	got, err := RemoveStale(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Base(stale)}; !slices.Equal(got, want) {
		t.Errorf("RemoveStale = %q, want %q", got, want)
	}
	for _, p := range []string{own, recent, held, short, upper, outside, link, sub} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v; want it kept", filepath.Base(p), err)
		}
	}
	if _, err := os.Lstat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s: %v; want it removed", filepath.Base(stale), err)
	}
	// Once its holder lets go (a process that ends does), it goes too.
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	got, err = RemoveStale(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Base(held)}; !slices.Equal(got, want) {
		t.Errorf("RemoveStale after the hold = %q, want %q", got, want)
	}
}
