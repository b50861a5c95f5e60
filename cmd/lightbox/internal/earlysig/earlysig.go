// Package earlysig registers the signals that `lightbox exec` and an
// attached `lightbox run` forward to their command while the process's
// package inits still run.
//
// A signal's first signal.Notify is a round trip to the Go runtime's
// signal-mask thread (~0.1 ms a signal on this VM). Made from main, the
// four forwarded signals took ~0.4 ms, longer than the store's open they
// overlapped, and exec waited for them before it could send its command
// (bench/NOTES.md, 2026-12-01). This is a package of its own because a
// package's init runs before those of the packages that sort after it
// (urfave/cli, umoci, protobuf: ~1 ms of inits here), while the CLI's
// main package initializes last. It imports os, os/signal and syscall
// only, which are initialized among the first: any other import (even
// strings or path/filepath) would hold its init back behind the packages
// that sort before that one.
package earlysig

import (
	"os"
	"os/signal"
	"syscall"
)

// Forwarded are the signals exec and an attached run forward to their
// command (SIGWINCH as a resize, with a terminal): those a user sends a
// workload to end it, or to make it log, reload or dump (SIGQUIT,
// SIGUSR1, SIGUSR2), as docker run's and podman run's signal proxy do.
// Left unregistered, SIGQUIT would end lightbox with the Go runtime's
// goroutine dump and SIGUSR1/SIGUSR2 would be swallowed. Job control
// (SIGTSTP, SIGTTIN, SIGTTOU, SIGCONT) is left to lightbox's own process.
var Forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH}

// What init registered, for Take.
var (
	earlySigs  chan os.Signal
	earlyReady chan struct{}
)

func init() {
	if Wanted(os.Args) {
		earlySigs, earlyReady = Notify()
	}
}

// Notify starts signal.Notify for Forwarded into a new channel; ready is
// closed once it is in place.
func Notify() (sigs chan os.Signal, ready chan struct{}) {
	sigs, ready = make(chan os.Signal, 8), make(chan struct{})
	go func() {
		signal.Notify(sigs, Forwarded...)
		close(ready)
	}()
	return sigs, ready
}

// Take returns the channel the process's start registered, or Notify's
// when the command line did not ask for it there. Called once, from the
// command that forwards.
func Take() (sigs chan os.Signal, ready chan struct{}) {
	if earlySigs != nil {
		sigs, ready = earlySigs, earlyReady
		earlySigs, earlyReady = nil, nil
		return sigs, ready
	}
	return Notify()
}

// RuncName is the name (argv[0]'s base) under which the binary speaks
// runc's command line (cmd/lightbox: RuncMain), whose run and exec handle
// signals their own way: `ln -s lightbox /usr/local/bin/lightbox-runc`.
const RuncName = "lightbox-runc"

// Wanted says whether args (os.Args) run `exec` or a `run` without
// -d/--detach: the commands that forward every one of Forwarded from the
// start on. It errs towards false (the command then registers them
// itself, as before): a registered signal nobody reads would no longer
// end the process.
func Wanted(args []string) bool {
	if len(args) < 2 || base(args[0]) == RuncName {
		return false
	}
	i := 1
	for ; i < len(args); i++ {
		a := args[i]
		if !hasPrefix(a, "-") {
			break
		}
		if a == "--" {
			return false
		}
		name := trimDashes(a)
		if index(name, '=') >= 0 {
			continue
		}
		switch name {
		case "root", "log-level": // the global flags that take a value
			i++
		}
	}
	if i >= len(args) {
		return false
	}
	switch args[i] {
	case "exec":
		return true
	case "run":
		for _, a := range args[i+1:] {
			if mayDetach(a) {
				return false
			}
		}
		return true
	}
	return false
}

// mayDetach says whether a could be run's -d flag: -d, --detach, -d=...,
// or a group of short options (-dt) with a d in it. Anything in the
// command's own arguments that looks like one counts too.
func mayDetach(a string) bool {
	if !hasPrefix(a, "-") {
		return false
	}
	name := trimDashes(a)
	eq := index(name, '=')
	if eq >= 0 {
		name = name[:eq]
	}
	if name == "d" || name == "detach" {
		return true
	}
	return !hasPrefix(a, "--") && eq < 0 && index(name, 'd') >= 0
}

// The strings and path/filepath functions Wanted needs (see the package
// comment for why not those packages).

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

func trimDashes(s string) string {
	for len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	return s
}

func index(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// base is filepath.Base for a program name (no trailing slash).
func base(s string) string {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '/' {
			return s[i+1:]
		}
	}
	return s
}
