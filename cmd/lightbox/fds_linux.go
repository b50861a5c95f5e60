package main

import (
	"io"
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// closeOnExecInherited marks every descriptor from 3 on close-on-exec.
// What this process opens is close-on-exec already, but a descriptor it
// inherited without the flag (a shell's, a CI runner's, make's jobserver
// pipe) would reach every process it starts: a sandbox's init (which
// closes what its config does not name, see nsinit), and the network
// helpers and id mappers, which would hold it as long as they run. What
// the CLI hands a process on purpose (stdio, lightbox-runc's
// --preserve-fds) it passes explicitly, which the flag does not affect.
// A kernel without close_range (before 5.9) leaves them as they are.
func closeOnExecInherited() {
	_ = unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC) // best effort: see above
}

// commandStdin is the stdin a command run without -t gets: this
// process's, except when it is the controlling terminal and this process
// is not in its foreground (`lightbox run … &` from an interactive
// shell). lightbox copies a terminal's input to the command through a
// pipe, and that read would stop lightbox with SIGTTIN ("Stopped (tty
// input)") before the command could end; the command reads nothing
// instead, as with docker run without -i.
func commandStdin() io.Reader {
	pgrp, err := unix.IoctlGetInt(int(os.Stdin.Fd()), unix.TIOCGPGRP)
	if err == nil && pgrp != unix.Getpgrp() {
		return nil
	}
	return os.Stdin // not a terminal, not ours, or ours in the foreground
}
