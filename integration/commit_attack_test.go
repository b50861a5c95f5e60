//go:build linux

package integration

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beamhop/lightbox"
)

// exchangerSource is a workload that swaps DIR/f, a regular file of SIZE
// bytes, with DIR/l, a symlink to TARGET (a host path, meaningless inside
// the sandbox), with renameat2(RENAME_EXCHANGE) in a loop, and counts its
// rounds in COUNT, so that a test can see it runs. Its own module, stdlib
// only: it builds offline, as any user.
const exchangerSource = `package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

func exchange(a, b *byte) syscall.Errno {
	_, _, e := syscall.Syscall6(sysRenameat2, ^uintptr(99), uintptr(unsafe.Pointer(a)), ^uintptr(99), uintptr(unsafe.Pointer(b)), 2, 0) // AT_FDCWD, RENAME_EXCHANGE
	return e
}

func main() {
	dir, target, count := os.Args[1], os.Args[2], os.Args[4]
	size, _ := strconv.Atoi(os.Args[3])
	os.MkdirAll(dir, 0o755)
	f, l := dir+"/f", dir+"/l"
	if err := os.WriteFile(f, bytes.Repeat([]byte("x"), size), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := os.Symlink(target, l); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pf, _ := syscall.BytePtrFromString(f)
	pl, _ := syscall.BytePtrFromString(l)
	for i := 1; ; i++ {
		if e := exchange(pf, pl); e != 0 {
			fmt.Fprintln(os.Stderr, "renameat2:", e)
			os.Exit(1)
		}
		if i%2000 == 0 {
			os.WriteFile(count+".new", []byte(strconv.Itoa(i)), 0o644)
			os.Rename(count+".new", count)
		}
	}
}
`

// buildExchanger builds exchangerSource as a static binary into a
// directory the sandbox can read, and returns that directory.
func buildExchanger(t *testing.T) string { return buildSwapper(t, exchangerSource) }

// buildSwapper builds source, a main package that may use sysRenameat2,
// as a static binary named exchanger into a directory the sandbox can
// read, and returns that directory.
func buildSwapper(t *testing.T, source string) string { return buildProgram(t, "exchanger", source) }

// buildProgram builds source, a main package (which may use
// sysRenameat2, the one system call number the frozen syscall package
// lacks), as a static binary called name into a directory the sandbox
// can read, and returns that directory.
func buildProgram(t *testing.T, name, source string) string {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module "+name+"\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"main.go": source,
		// renameat2 is newer than the frozen syscall package.
		"nr_amd64.go": "package main\n\nconst sysRenameat2 = 316\n",
		"nr_arm64.go": "package main\n\nconst sysRenameat2 = 276\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	os.Chmod(out, 0o755)
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", filepath.Join(out, name), ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOTOOLCHAIN=local", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the %s: %v\n%s", name, err, b)
	}
	return out
}

// hostKey writes a 0600 host file with random content, as a private key
// of the committing user would be.
func hostKey(t *testing.T) (string, []byte) {
	t.Helper()
	b := make([]byte, 24)
	rand.Read(b)
	secret := []byte("HOST-SECRET-" + hex.EncodeToString(b))
	dir := t.TempDir()
	p := filepath.Join(dir, "id_key")
	if err := os.WriteFile(p, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, secret
}

// storeHolds reports which blob or layer file of the store at root holds
// needle: every blob (decompressed when gzipped) and every regular file
// of the unpacked layers, none followed through a symlink.
func storeHolds(t *testing.T, root string, needle []byte) string {
	t.Helper()
	found := ""
	filepath.WalkDir(filepath.Join(root, "snapshots"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || found != "" {
			return nil // unreadable trees of other ids hold nothing the attack wrote
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		if bytes.Contains(b, needle) {
			found = p
			return nil
		}
		if zr, err := gzip.NewReader(bytes.NewReader(b)); err == nil {
			if data, err := io.ReadAll(zr); err == nil && bytes.Contains(data, needle) {
				found = p + " (decompressed)"
			}
		}
		return nil
	})
	return found
}

// exchangeCount reads the exchanger's round count inside sb.
func exchangeCount(t *testing.T, sb *lightbox.Sandbox) int {
	t.Helper()
	res, err := sb.Shell(t.Context(), "cat /count 2>/dev/null || echo 0")
	if err != nil {
		t.Fatalf("read the count: %v", err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(res.Stdout)))
	return n
}

// waitCountAbove waits until the exchanger has counted past n: it runs.
func waitCountAbove(t *testing.T, sb *lightbox.Sandbox, n int, what string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c := exchangeCount(t, sb)
		if c > n {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the sandbox's workload is not running (count stays %d)", what, c)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAttackCommitExchange: a workload swaps a regular file with a
// symlink to a 0600 host file of the same size while the sandbox is
// committed, through the API and the CLI, many times. No snapshot may
// hold the host file's content, the host file is unchanged, and the
// workload runs again after every commit.
func TestAttackCommitExchange(t *testing.T) {
	exdir := buildExchanger(t)
	root, r := newStore(t)
	keyPath, secret := hostKey(t)
	ctx := t.Context()
	sb, err := r.LaunchSandbox(ctx, lightbox.SandboxOptions{
		Snapshot: "busybox",
		Name:     "racer",
		Network:  lightbox.NetworkNone,
		Mounts:   map[string]lightbox.Mount{"/helper": {Source: exdir, ReadOnly: true}},
		Command:  []string{"/helper/exchanger", "/x", keyPath, strconv.Itoa(len(secret)), "/count"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	count := waitCountAbove(t, sb, 0, "before the commits")
	const n = 24
	for i := range n {
		name := fmt.Sprintf("racer-%d", i)
		if i%2 == 0 {
			if _, err := sb.Commit(ctx, name); err != nil {
				t.Fatalf("commit %d: %v", i, err)
			}
		} else {
			lbOK(t, root, "commit", "racer", name)
		}
		if where := storeHolds(t, root, secret); where != "" {
			t.Fatalf("commit %d: the host secret is in the store: %s", i, where)
		}
		count = waitCountAbove(t, sb, count, fmt.Sprintf("after commit %d", i))
	}
	t.Logf("%d exchanges over %d commits", count, n)
	// What was committed is what the sandbox had: f and l, one of them
	// a symlink to the host path (never followed), the other the decoy.
	err = r.RunInSandbox(ctx, lightbox.SandboxOptions{Snapshot: fmt.Sprintf("racer-%d", n-1), Network: lightbox.NetworkNone}, func(s2 *lightbox.Sandbox) error {
		res, err := s2.Shell(ctx, "for f in /x/f /x/l; do readlink $f; done; cat /x/f /x/l 2>/dev/null | tr -d x | wc -c | tr -d ' '")
		if err != nil {
			return err
		}
		if got := string(res.Stdout); got != keyPath+"\n0\n" {
			return fmt.Errorf("committed /x: %q, want one symlink to %s and the decoy", got, keyPath)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	got, err := os.ReadFile(keyPath)
	fi, serr := os.Lstat(keyPath)
	if err != nil || serr != nil || !bytes.Equal(got, secret) || fi.Mode() != 0o600 {
		t.Fatalf("host secret changed: %q %v %v %v", got, fi, err, serr)
	}
}

// TestAttackCommitReservedNames: files the sandbox names .wh.* cannot make
// a commit fail; they are left out with a warning, the rest is kept.
func TestAttackCommitReservedNames(t *testing.T) {
	root, _ := newStore(t)
	lbOK(t, root, "run", "-d", "--network", "none", "--name", "wh", "busybox")
	defer lb(t, root, "", "rm", "-f", "wh")
	lbOK(t, root, "exec", "wh", "sh", "-c", "touch /.wh.x /.wh..wh..opq && mkdir -p /d/.wh.sub && echo kept > /d/keep")
	r := lb(t, root, "", "commit", "wh", "wh-snap")
	if r.code != 0 {
		t.Fatalf("commit with .wh.* files: exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, ".wh.x") || !strings.Contains(r.stderr, "reserved") {
		t.Errorf("commit stderr %q: want a warning naming .wh.x", r.stderr)
	}
	out := lbOK(t, root, "run", "--network", "none", "wh-snap", "sh", "-c", "cat /d/keep; ls -a / /d | grep -c '^\\.wh\\.' || true")
	if out != "kept\n0\n" {
		t.Errorf("in the committed snapshot: %q, want /d/keep and no .wh.* file", out)
	}
}
