package runtime

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/beamhop/lightbox/nsinit"
	"golang.org/x/sys/unix"
)

// stopSignal is what Stop and Destroy send the main command first.
func (s *Sandbox) stopSignal() syscall.Signal {
	sig := s.stopSig // set at launch, never changed
	if !s.stopKnown {
		if st, err := readState(s.dir); err == nil && st.StopSignal > 0 && st.StopSignal <= 64 {
			sig = syscall.Signal(st.StopSignal)
		}
	}
	if sig == 0 {
		return unix.SIGTERM
	}
	return sig
}

// Signal sends sig to the sandbox's main command, from any handle (one
// Attach found too), as `docker kill` does. A sandbox with no main
// command returns ErrNoCommand; one whose main command has exited, or
// whose init is gone, ErrNotRunning.
func (s *Sandbox) Signal(ctx context.Context, sig syscall.Signal) error {
	if sig < 1 || sig > 64 {
		return fmt.Errorf("signal sandbox %s: signal %d: out of range 1–64", s.name, int(sig))
	}
	r, err := s.call(ctx, nsinit.Request{Op: nsinit.OpSignal, Signal: int(sig)})
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case r.Type != nsinit.ReplyError:
		return err // it says which sandbox, and wraps ErrNotRunning when the init is gone
	case r.Error == nsinit.MsgNoMain:
		return fmt.Errorf("signal sandbox %s: %w", s.name, ErrNoCommand)
	case r.Error == nsinit.MsgMainExited:
		return fmt.Errorf("signal sandbox %s: %w: its main command has exited", s.name, ErrNotRunning)
	}
	return fmt.Errorf("signal sandbox %s: %w", s.name, err)
}

// Stop ends the main command as `docker stop` does: the stop signal
// (Spec.StopSignal, else SIGTERM), then SIGKILL once grace has passed
// (grace 0: SIGKILL at once), and returns once it has exited. The
// sandbox then ends as when its main command exits by itself: its
// status (and a detached one's logs) stay until it is removed. A main
// command that had already exited is no error; a sandbox with no main
// command returns ErrNoCommand.
func (s *Sandbox) Stop(ctx context.Context, grace time.Duration) error {
	sig := s.stopSignal()
	if grace <= 0 {
		sig = unix.SIGKILL
	}
	if err := s.Signal(ctx, sig); err != nil && !errors.Is(err, ErrNotRunning) {
		return err
	}
	// Sent, or it had exited already: Wait tells an exit from a death.
	wctx, cancel := context.WithTimeout(ctx, grace)
	_, err := s.Wait(wctx)
	cancel()
	if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	if err := s.Signal(ctx, unix.SIGKILL); err != nil && !errors.Is(err, ErrNotRunning) {
		return err
	}
	_, err = s.Wait(ctx)
	return err
}
