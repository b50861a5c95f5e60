// Package lockfile provides flock(2)-based locks on files. A lock dies with
// the process (or the open file description) that holds it, so a kill -9
// never leaves a lock held.
package lockfile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLocked is returned by TryLock when another holder has the lock.
var ErrLocked = errors.New("locked by another process")

// Lock is a held lock. Close releases it.
type Lock struct{ f *os.File }

func open(path string) (*os.File, error) {
	return openFile(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
}

// openFile is os.OpenFile for a lock file: open(2) and os.NewFile, since
// os.OpenFile would try the runtime's poller with every file it opens,
// four more system calls that always fail for a regular file (a launch
// takes two locks: bench/NOTES.md 2026-11-30, lease).
func openFile(path string, flags int, perm uint32) (*os.File, error) {
	for {
		fd, err := unix.Open(path, flags, perm)
		if err == nil {
			return os.NewFile(uintptr(fd), path), nil
		}
		if !errors.Is(err, unix.EINTR) {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
	}
}

// flock is flock(2), retried on EINTR.
func flock(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// Exclusive takes an exclusive lock on path (created if missing), waiting
// until it is free or ctx ends.
func Exclusive(ctx context.Context, path string) (*Lock, error) {
	return acquire(ctx, path, unix.LOCK_EX)
}

// Shared takes a shared lock on path, waiting until it is free or ctx ends.
func Shared(ctx context.Context, path string) (*Lock, error) { return acquire(ctx, path, unix.LOCK_SH) }

func acquire(ctx context.Context, path string, how int) (*Lock, error) {
	f, err := open(path)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := wait(ctx, int(f.Fd()), how); err != nil {
		_ = f.Close() // not locked: nothing to release
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// wait takes a lock of kind how on fd, waiting until it is free or ctx
// ends: the fast path, then polling, since flock has no timeout and a
// blocked flock cannot be interrupted by a context.
func wait(ctx context.Context, fd, how int) error {
	delay := time.Millisecond
	for {
		err := flock(fd, how|unix.LOCK_NB)
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// WaitFD takes an exclusive lock on the open file fd (path names it in
// errors), waiting until it is free or ctx ends.
func WaitFD(ctx context.Context, fd int, path string) error {
	if err := wait(ctx, fd, unix.LOCK_EX); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("lock %s: %w", path, err)
		}
		return &os.PathError{Op: "flock", Path: path, Err: err}
	}
	return nil
}

// TryFD takes an exclusive lock on the open file fd without waiting
// (path names it in errors); an error wrapping ErrLocked if it is held.
func TryFD(fd int, path string) error { return tryFD(fd, unix.LOCK_EX, path) }

// TrySharedFD takes a shared lock on the open file fd without waiting
// (path names it in errors); an error wrapping ErrLocked if someone holds
// it exclusively.
func TrySharedFD(fd int, path string) error { return tryFD(fd, unix.LOCK_SH, path) }

func tryFD(fd, how int, path string) error {
	err := flock(fd, how|unix.LOCK_NB)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EWOULDBLOCK):
		return fmt.Errorf("lock %s: %w", path, ErrLocked)
	}
	return &os.PathError{Op: "flock", Path: path, Err: err}
}

// TryExclusive takes an exclusive lock without waiting; ErrLocked if held.
func TryExclusive(path string) (*Lock, error) {
	f, err := open(path)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := TryFD(int(f.Fd()), path); err != nil {
		_ = f.Close() // not locked: nothing to release
		return nil, err
	}
	return &Lock{f: f}, nil
}

// IsLocked reports whether someone holds any lock on path, shared or
// exclusive (the probe is an exclusive lock, so two probes at once may
// see each other). A missing file is not locked.
func IsLocked(path string) (bool, error) { return probe(path, unix.LOCK_EX) }

// HeldExclusive reports whether someone holds an exclusive lock on path.
// The probe is a shared lock, so probes never make each other see a lock
// that is not there. A missing file is not locked.
func HeldExclusive(path string) (bool, error) { return probe(path, unix.LOCK_SH) }

func probe(path string, how int) (bool, error) {
	f, err := openFile(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer func() { _ = f.Close() }() // closing releases the probe's lock
	err = flock(int(f.Fd()), how|unix.LOCK_NB)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, unix.EWOULDBLOCK):
		return true, nil
	}
	return false, &os.PathError{Op: "flock", Path: path, Err: err}
}

// File returns the locked file, e.g. to hand it to a child process that
// should keep holding the lock.
func (l *Lock) File() *os.File { return l.f }

// Close releases the lock.
func (l *Lock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
