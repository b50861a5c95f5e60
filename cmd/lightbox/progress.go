package main

import (
	"io"
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
