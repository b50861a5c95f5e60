//go:build unix

package sys

import (
	"errors"
	"io/fs"

	"golang.org/x/sys/unix"
)

// retry calls f until it fails with something other than EINTR.
func retry(f func() error) error {
	for {
		err := f()
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func pathErr(op, path string, err error) error {
	if err == nil {
		return nil
	}
	return &fs.PathError{Op: op, Path: path, Err: err}
}

// Openat is openat(2) with O_CLOEXEC.
func Openat(dir int, path string, flags int, mode uint32) (int, error) {
	var fd int
	err := retry(func() (err error) { fd, err = unix.Openat(dir, path, flags|unix.O_CLOEXEC, mode); return })
	return fd, pathErr("open", path, err)
}

// Read is read(2); its error is the errno alone (the caller knows the
// file).
func Read(fd int, b []byte) (int, error) {
	var n int
	err := retry(func() (err error) { n, err = unix.Read(fd, b); return })
	return n, err
}
