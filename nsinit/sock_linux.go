package nsinit

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// SockAddr is the path to connect to or bind the exec socket of a sandbox
// whose state dir is dir: dir/init.sock when it fits sun_path's 108 bytes,
// else the same file through an O_PATH fd of dir (the returned file, to be
// closed after connect or bind). Shared by the runtime and lightbox-runc.
func SockAddr(dir string) (string, *os.File, error) {
	p := filepath.Join(dir, "init.sock")
	if len(p) < 100 {
		return p, nil, nil
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return "/proc/self/fd/" + strconv.Itoa(fd) + "/init.sock", os.NewFile(uintptr(fd), dir), nil
}

// ListenSock binds the exec socket in dir and returns it as a file for the
// init to inherit (the file stays when it is closed: the init owns it).
func ListenSock(dir string) (*os.File, error) {
	addr, df, err := SockAddr(dir)
	if err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: addr, Net: "unixpacket"})
	if df != nil {
		_ = df.Close() // an O_PATH descriptor: nothing written through it
	}
	if err != nil {
		return nil, fmt.Errorf("exec socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	f, err := ln.File()
	_ = ln.Close() // f is a dup: the socket stays open through it
	if err != nil {
		return nil, fmt.Errorf("exec socket: %w", err)
	}
	return f, nil
}
