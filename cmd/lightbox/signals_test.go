//go:build linux

package main

import (
	"context"
	"flag"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// A command that makes things gets a context SIGTERM cancels; exec and
// run (which forward the signal themselves, run -d making its own
// context) and the read-only commands do not pay for it here.
func TestCancelOnSignals(t *testing.T) {
	ctxFor := func(args ...string) *cli.Context {
		set := flag.NewFlagSet("lightbox", flag.ContinueOnError)
		if err := set.Parse(args); err != nil {
			t.Fatal(err)
		}
		c := cli.NewContext(nil, set, nil)
		c.Context = context.Background()
		return c
	}
	for _, cmd := range []string{"exec", "run", "version", "ps", "inspect"} {
		c := ctxFor(cmd, "x")
		stop := cancelOnSignals(c)
		stop()
		if c.Context != context.Background() {
			t.Errorf("%s: context replaced, want none (the command handles signals or only reads)", cmd)
		}
	}
	c := ctxFor("rm", "x")
	stop := cancelOnSignals(c)
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Context.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("rm: SIGTERM did not cancel the command's context")
	}
}
