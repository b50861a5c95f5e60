//go:build !linux

package reexec

import (
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/beamhop/lightbox/internal/idmap"
)

// Command prepares a re-exec that cannot start: user namespaces are
// Linux's. Start returns an error wrapping errors.ErrUnsupported.
func Command(exe, role string, m idmap.Mapping, cloneflags uintptr, args ...string) *Cmd {
	return &Cmd{Cmd: exec.Command(exe, args...), mapping: m}
}

// Start fails: there are no user namespaces off Linux.
func (c *Cmd) Start() error {
	return fmt.Errorf("re-exec in a user namespace: %w", errors.ErrUnsupported)
}

// Large is false off Linux: nothing is cloned there.
func Large() bool { return false }

// StartFork fails as Start does.
func (c *Cmd) StartFork() error { return c.Start() }

// StartVia fails as Start does.
func (c *Cmd) StartVia(tasks []*os.File, cgroupDir *os.File) error { return c.Start() }
