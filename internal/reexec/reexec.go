// Package reexec starts the running binary again in a given role (the
// sandbox init, a rootless layer unpacker, a rootless remover) inside a new
// user namespace with the store's id mapping.
//
// The Go runtime is multithreaded, so a process cannot enter a new user
// namespace itself; it re-executes /proc/self/exe with Cloneflags. When the
// mapping needs newuidmap/newgidmap (rootless with a subordinate range), the
// child is started with every capability ambient (it would lose them when it
// execs unmapped) and waits on a pipe until the parent has run the helpers;
// the child side of that handshake is WaitMapped, which every role calls
// first.
package reexec

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"sync"

	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/reexec/child"
)

// EnvRole names the role of a re-executed process; the marker that
// lightbox.Init dispatches on.
const EnvRole = child.EnvRole

// Role returns the role this process was started in, "" for an ordinary
// process.
func Role() string { return child.Role() }

// LargeAnon is the anonymous memory above which a launcher should start
// its children with StartVia: a fork (which Go uses for a child in a new
// user namespace) copies the page tables of every anonymous page, ~35 ms
// a GiB here, against ~1 ms for the intermediate's own start
// (bench/NOTES.md, 2026-12-01).
const LargeAnon = 64 << 20

// Cmd is a re-execution of the running binary in a role.
type Cmd struct {
	*exec.Cmd
	mapping idmap.Mapping
	syncW   *os.File

	// The pipes of StdoutPipe and of StartVia's streams: the child's
	// ends, closed once it is started, and ours, closed by Wait; and the
	// copies between StartVia's pipes and the caller's streams, which
	// Wait waits for.
	closeAfterStart []*os.File
	closeAfterWait  []*os.File
	copies          sync.WaitGroup
}

// StdoutPipe is exec.Cmd's, for a Cmd that StartVia may start as well as
// Start: the pipe is this Cmd's, its write end closed once the child is
// started and its read end by Wait.
func (c *Cmd) StdoutPipe() (io.ReadCloser, error) {
	if c.Stdout != nil {
		return nil, errors.New("reexec: Stdout already set")
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	c.Stdout = pw
	c.closeAfterStart = append(c.closeAfterStart, pw)
	c.closeAfterWait = append(c.closeAfterWait, pr)
	return pr, nil
}

// Wait is exec.Cmd's, and waits for StartVia's copies and closes this
// Cmd's pipes too.
func (c *Cmd) Wait() error {
	err := c.Cmd.Wait()
	c.copies.Wait()
	closeFiles(&c.closeAfterWait)
	return err
}

// closeFiles closes *fs (pipe ends nobody reads or writes any more) and
// empties it.
func closeFiles(fs *[]*os.File) {
	for _, f := range *fs {
		_ = f.Close() // a pipe end we are done with: nothing buffered on our side
	}
	*fs = nil
}

// WaitMapped is the child's side of the handshake (package child, which
// the lean init links without this package; off Linux it returns at
// once).
func WaitMapped() error { return child.WaitMapped() }

// ReexecIfMappedLate: see package child.
func ReexecIfMappedLate() error { return child.ReexecIfMappedLate() }
