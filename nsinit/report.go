package nsinit

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// WaitReport waits for the init's Report on r, the parent's end of the
// report pipe: nil when the init is ready; the init's own error when it
// reported one; ErrNoReport when it exited without a report; ctx's
// error when ctx ends first (the read then goes on until the pipe
// closes: the caller kills the init, which closes it).
func WaitReport(ctx context.Context, r io.Reader) error {
	type result struct {
		rep Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := ReadReport(r)
		done <- result{rep, err}
	}()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case res := <-done:
		switch {
		case errors.Is(res.err, ErrNoReport):
			return ErrNoReport
		case res.err != nil:
			return fmt.Errorf("init's report: %w", res.err)
		case res.rep.Type == ReportError:
			return errors.New(res.rep.Error)
		}
		return nil
	}
}
