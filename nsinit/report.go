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
	_, err := WaitReady(ctx, r)
	return err
}

// WaitReady is WaitReport returning the ready Report.
func WaitReady(ctx context.Context, r io.Reader) (Report, error) {
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
		return Report{}, ctx.Err()
	case res := <-done:
		switch {
		case errors.Is(res.err, ErrNoReport):
			return Report{}, ErrNoReport
		case res.err != nil:
			return Report{}, fmt.Errorf("init's report: %w", res.err)
		case res.rep.Type == ReportError:
			return Report{}, errors.New(res.rep.Error)
		}
		return res.rep, nil
	}
}
