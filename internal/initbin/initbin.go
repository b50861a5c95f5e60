// Package initbin carries the lean sandbox init (./lightbox-init: nsinit
// and its leaves, nothing else) inside every binary that links lightbox,
// and writes it once per store, read-only and named by its content, for
// the runtime to execute as each sandbox's PID 1.
//
// Why a second program: a Go process runs the init of every package it
// links before main. The lightbox binary links umoci, protobuf, buildkit
// and urfave/cli, whose inits cost ~2 ms and ~0.5 MB per process start
// (bench/NOTES.md); the init of a sandbox needs none of them. Executing
// the lean program instead of re-executing the whole binary makes every
// sandbox start cheaper and every idle sandbox smaller, while lightbox
// stays one static binary that `go install` builds, and an embedding
// program still needs nothing but lightbox.Init (the init never runs the
// embedding program's code).
//
// The compressed programs are generated (go generate ./internal/initbin,
// which `make build` and `make test` run) and committed, so that a plain
// `go install` carries them; TestFresh fails when nsinit changed since.
// A GOARCH without a committed program (or the build tag
// lightbox_noleaninit) carries none: Available reports false and the
// runtime re-executes its own binary, as before.
package initbin

//go:generate go run gen.go

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/beamhop/lightbox/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// ErrNone is returned by Install when this build carries no lean init.
var ErrNone = errors.New("no lean init in this build")

// Available reports whether this build carries the lean init.
func Available() bool { return len(compressed) > 0 && sum != "" }

// Sum is the sha256 of the lean init program ("" when none is carried).
func Sum() string { return strings.TrimSpace(sum) }

// prefix names the installed programs in a store's directory; the leading
// dot keeps them out of every listing of sandbox names.
const prefix = ".init-"

// Install returns the path of the lean init under dir, writing it first
// when it is not there yet (read-only, named by its sha256, written to a
// temporary file, synced and renamed, so that a crash leaves the old state
// or the whole file). A file of that name with the wrong size or mode is
// replaced.
func Install(dir string) (string, error) {
	if !Available() {
		return "", ErrNone
	}
	s := Sum()
	p := filepath.Join(dir, prefix+s[:32])
	var st unix.Stat_t
	err := unix.Lstat(p, &st)
	if err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Mode&0o7777 == 0o555 && st.Size == size() && int(st.Uid) == os.Geteuid() {
		return p, nil
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return "", &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	b, err := program()
	if err != nil {
		return "", err
	}
	// While the temporary file is open for writing, a child that another
	// goroutine forks holds a copy of that descriptor until its exec
	// closes it; an exec of the program meanwhile (a sandbox launched at
	// once) fails with ETXTBSY (golang.org/issue/22315). Holding
	// ForkLock for writing keeps every fork of this process out of that
	// window: os/exec takes it for reading around each fork.
	syscall.ForkLock.Lock()
	err = atomicfile.Write(p, b, 0o555)
	syscall.ForkLock.Unlock()
	if err != nil {
		return "", fmt.Errorf("install the sandbox init: %w", err)
	}
	return p, nil
}

// RemoveTemps removes from dir the temporary files of Installs that were
// killed before their rename (a few MB each), and returns their paths.
// The caller must know that no Install into dir is under way: package
// runtime installs and collects under its store lock.
func RemoveTemps(dir string) ([]string, error) {
	var removed []string
	var errs []error
	for _, p := range atomicfile.Leftovers(filepath.Join(dir, prefix+"*")) {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, p)
	}
	return removed, errors.Join(errs...)
}

// program decompresses the lean init and checks its sum.
func program() ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(compressed))
	if err != nil {
		return nil, fmt.Errorf("lean init: %w", err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("lean init: %w", err)
	}
	h := sha256.Sum256(b)
	if got := hex.EncodeToString(h[:]); got != Sum() {
		return nil, fmt.Errorf("lean init: sha256 %s, want %s", got, Sum())
	}
	return b, nil
}

// size is the lean init's size, from the gzip trailer (ISIZE: the size
// modulo 2^32, which a program of a few MB is below).
func size() int64 {
	n := len(compressed)
	if n < 4 {
		return -1
	}
	t := compressed[n-4:]
	return int64(uint32(t[0]) | uint32(t[1])<<8 | uint32(t[2])<<16 | uint32(t[3])<<24)
}
