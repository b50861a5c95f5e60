package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/beamhop/lightbox"
)

// progressBars draws the library's transfer reports as progress bars on w
// (stderr, when it is a terminal). One bar at a time: while one transfer
// is drawn, reports on another (two layers unpacking at once) wait their
// turn and are drawn from their next report on, so bars never garble each
// other.
type progressBars struct {
	w       io.Writer
	mu      sync.Mutex
	current string // What of the transfer drawn; "" = none
	bar     *progressbar.ProgressBar
}

func newProgressBars(w io.Writer) func(lightbox.TransferProgress) {
	return (&progressBars{w: w}).report
}

func (b *progressBars) report(p lightbox.TransferProgress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.current != p.What {
		if b.current != "" || p.Finished {
			return // another transfer is drawn; a finished one needs no bar
		}
		b.current = p.What
		b.bar = progressbar.NewOptions64(p.Total,
			progressbar.OptionSetWriter(b.w),
			progressbar.OptionSetDescription(p.What),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	// A terminal that cannot be drawn on is no reason to fail a transfer.
	_ = b.bar.Set64(p.Done)
	if p.Finished {
		_ = b.bar.Finish()
		b.current, b.bar = "", nil
	}
}

// buildBar draws a build's progress on a terminal: a bar of the steps,
// described by the step that runs, with each finished step's line (as
// printProgress writes it) and the RUN output passing above it. It owns
// the terminal for the build: a transfer of the store's meanwhile (a
// step's layer unpacked) is shown in its description, never as a bar of
// its own that the two would draw over each other.
type buildBar struct {
	w    io.Writer
	mu   sync.Mutex
	bar  *progressbar.ProgressBar
	step string // the running step's description
	// xfer is the What of the transfer shown; "" = none. One at a time,
	// as progressBars.
	xfer string
}

func newBuildBar(w io.Writer) *buildBar { return &buildBar{w: w} }

func (b *buildBar) report(p lightbox.BuildProgress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar == nil {
		b.bar = progressbar.NewOptions(p.Total,
			progressbar.OptionSetWriter(b.w),
			progressbar.OptionSetWidth(20),
			progressbar.OptionShowCount(),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionClearOnFinish(), // no throttle: a build reports a few events a step
		)
	}
	// A terminal that cannot be drawn on is no reason to fail a build.
	if !p.Done {
		b.step = shorten(p.Instruction, 48)
		b.bar.Describe(b.step)
		_ = b.bar.Set(p.Step - 1)
		return
	}
	_ = b.bar.Clear()
	_, _ = io.WriteString(b.w, stepLine(p)+"  "+shorten(p.Instruction, 60)+"\n")
	_ = b.bar.Set(p.Step)
	if p.Step >= p.Total {
		_ = b.bar.Finish()
		b.bar = nil
	}
}

// transfer shows a transfer report of the store (Options.Progress) after
// the running step's description, until the transfer finishes.
func (b *buildBar) transfer(p lightbox.TransferProgress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.xfer != p.What {
		if b.xfer != "" || p.Finished {
			return // another transfer is shown; a finished one needs no line
		}
		b.xfer = p.What
	}
	if p.Finished {
		b.xfer = ""
	}
	if b.bar == nil {
		return // between builds' bars: nothing to describe (the build reports its steps)
	}
	if p.Finished {
		b.bar.Describe(b.step)
		return
	}
	b.bar.Describe(fmt.Sprintf("%s · %s %s/%s", b.step, p.What, humanBytes(p.Done), humanBytes(p.Total)))
}

// Write passes a RUN's output above the bar (drawn again at the next
// report).
func (b *buildBar) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar != nil {
		_ = b.bar.Clear()
	}
	return b.w.Write(p)
}

// shorten cuts s (one line of it) to n runes.
func shorten(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
