package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

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
	bar     *bar
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
		b.bar = &bar{w: b.w, desc: p.What, total: p.Total, bytes: true, width: 30, throttle: 100 * time.Millisecond}
	}
	b.bar.set(p.Done)
	if p.Finished {
		b.bar.clear()
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
	bar  *bar
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
		// No throttle: a build reports a few events a step.
		b.bar = &bar{w: b.w, total: int64(p.Total), width: 20, elapsed: true, start: time.Now()}
	}
	if !p.Done {
		b.step = shorten(p.Instruction, 48)
		b.bar.done = int64(p.Step - 1)
		b.bar.describe(b.step)
		return
	}
	b.bar.clear()
	// A terminal that cannot be written to is no reason to fail a build.
	_, _ = io.WriteString(b.w, stepLine(p)+"  "+shorten(p.Instruction, 60)+"\n")
	b.bar.set(int64(p.Step))
	if p.Step >= p.Total {
		b.bar.clear()
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
		b.bar.describe(b.step)
		return
	}
	b.bar.describe(fmt.Sprintf("%s · %s %s/%s", b.step, p.What, humanBytes(p.Done), humanBytes(p.Total)))
}

// Write passes a RUN's output above the bar (drawn again at the next
// report).
func (b *buildBar) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar != nil {
		b.bar.clear()
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

// bar is one progress bar drawn on a terminal line: the description, a
// gauge, the counts (as sizes when bytes) and the time since start when
// elapsed, redrawn in place after a carriage return. Drawn here rather
// than with a progress bar library: schollz/progressbar links net/http
// (for a status server the CLI never starts) and with it crypto/tls and
// x509, ~5 MB of the binary and ~35 package inits that every command,
// exec and run among them, paid at start. Not safe for concurrent use
// (its owners hold their mutex).
type bar struct {
	w           io.Writer
	desc        string
	done, total int64
	bytes       bool
	width       int
	elapsed     bool
	start       time.Time
	// throttle is the least time between two draws of a set that does
	// not finish the bar; last is the time of the last draw.
	throttle time.Duration
	last     time.Time
	drawn    bool // the line shows the bar
}

// set moves the bar to done and draws it (at most once a throttle,
// except when it reaches the total).
func (b *bar) set(done int64) {
	b.done = done
	if now := time.Now(); b.throttle == 0 || done >= b.total || now.Sub(b.last) >= b.throttle {
		b.last = now
		b.draw()
	}
}

// describe changes the description and draws the bar.
func (b *bar) describe(desc string) {
	b.desc = desc
	b.draw()
}

func (b *bar) draw() {
	fill := 0
	if b.total > 0 {
		fill = int(min(b.done, b.total) * int64(b.width) / b.total)
	}
	gauge := strings.Repeat("=", fill)
	if fill < b.width {
		gauge += ">" + strings.Repeat(" ", b.width-fill-1)
	}
	var line strings.Builder
	line.WriteString("\r")
	if b.desc != "" {
		line.WriteString(b.desc + " ")
	}
	if b.total > 0 {
		fmt.Fprintf(&line, "%3d%% ", min(b.done, b.total)*100/b.total)
	}
	line.WriteString("[" + gauge + "] ")
	if b.bytes {
		fmt.Fprintf(&line, "(%s/%s)", humanBytes(b.done), humanBytes(b.total))
	} else {
		fmt.Fprintf(&line, "(%d/%d)", b.done, b.total)
	}
	if b.elapsed {
		fmt.Fprintf(&line, " [%s]", time.Since(b.start).Round(time.Second))
	}
	line.WriteString(eraseLine)
	// A terminal that cannot be drawn on is no reason to fail the work
	// the bar shows.
	_, _ = io.WriteString(b.w, line.String())
	b.drawn = true
}

// clear erases the bar's line, if it is drawn.
func (b *bar) clear() {
	if b.drawn {
		_, _ = io.WriteString(b.w, "\r"+eraseLine) // as in draw
		b.drawn = false
	}
}

// eraseLine is the terminal's erase in line (EL) from the cursor on.
const eraseLine = "\x1b[K"
