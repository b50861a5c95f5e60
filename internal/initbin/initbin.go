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
	"time"

	"github.com/beamhop/lightbox/internal/atomicfile"
	"github.com/beamhop/lightbox/internal/lockfile"
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

// Which installed programs a collection may remove.
//
// Every lightbox build writes its own program into a store (named by its
// content), so each upgrade, and each embedding program built with another
// nsinit, adds one of a few MB. Several programs of different builds may
// use one store at the same time, so "not this build's" alone is no rule:
// the other build may be about to execute its own (rootless, a launch
// executes the program by path, and a process installs it once and
// launches from it for as long as it runs).
//
// The rule: a process that installed a program holds a shared flock on it
// (Hold) for as long as it may launch from it; RemoveStale removes a
// program only while it can take an exclusive flock on it, so never one a
// live process holds (a process that dies releases its lock with it).
// Install and Hold on one side, RemoveStale on the other, run under the
// caller's lock on dir (package runtime's store lock), so no program is
// removed between its Install and its Hold. This build's program is always
// kept (the next launch would write it again).
//
// Builds from before that rule hold no lock. For them, a program is also
// kept while it was executed or written in the last staleAfter (its atime
// or mtime: an exec updates atime, at least once a day under the default
// relatime), so that an older long-running process that launches now and
// then keeps its program; as real root it never needs the file again
// (it launches from a read-only bind it opened once).
//
// A sandbox that runs never needs its program's file again either: its
// init runs from the executed inode, and hands over (re-executes itself)
// through a descriptor of /proc/self/exe it opened at its start, which
// keeps working after the file is unlinked.

// staleAfter is how long a program nobody holds must have gone unused
// before RemoveStale removes it (see above).
const staleAfter = 7 * 24 * time.Hour

// Hold takes a shared lock on the program Install returned, which keeps
// RemoveStale (of any process) from removing it until the returned file is
// closed. Call it under the same lock as Install.
func Hold(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("hold the sandbox init: %w", err)
	}
	if err := lockfile.TrySharedFD(int(f.Fd()), path); err != nil {
		_ = f.Close() // read-only, not locked
		return nil, fmt.Errorf("hold the sandbox init: %w", err)
	}
	return f, nil
}

// installed reports whether name is an installed program's name.
func installed(name string) bool {
	h, ok := strings.CutPrefix(name, prefix)
	if !ok || len(h) != 32 {
		return false
	}
	for _, c := range h {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// RemoveStale removes from dir the programs of other builds that no
// process holds and nothing used for staleAfter (the rule above), and
// returns their names. The caller holds the lock it Installs under.
func RemoveStale(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("remove unused sandbox inits: %w", err)
	}
	var own string
	if Available() {
		own = prefix + Sum()[:32]
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		if !installed(e.Name()) || e.Name() == own || !e.Type().IsRegular() {
			continue
		}
		ok, err := removeIfStale(filepath.Join(dir, e.Name()))
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			removed = append(removed, e.Name())
		}
	}
	return removed, errors.Join(errs...)
}

// removeIfStale removes the program at p if nobody holds it and nothing
// used it for staleAfter, holding the exclusive lock across the unlink.
func removeIfStale(p string) (bool, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer func() { _ = f.Close() }() // read-only; closing releases the probe's lock
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false, &os.PathError{Op: "fstat", Path: p, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false, nil
	}
	used := time.Unix(st.Atim.Unix())
	if m := time.Unix(st.Mtim.Unix()); m.After(used) {
		used = m
	}
	if time.Since(used) < staleAfter {
		return false, nil
	}
	if err := lockfile.TryFD(int(f.Fd()), p); err != nil {
		if errors.Is(err, lockfile.ErrLocked) {
			return false, nil // a live process may still launch from it
		}
		return false, err
	}
	// Still the file probed (dir is the caller's, but a name is cheap to check).
	var now unix.Stat_t
	if err := unix.Lstat(p, &now); err != nil || now.Dev != st.Dev || now.Ino != st.Ino {
		return false, nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	return true, nil
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
