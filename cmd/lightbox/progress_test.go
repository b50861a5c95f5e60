package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/beamhop/lightbox"
)

// Two transfers reported at once are drawn one after the other.
func TestProgressBarsOneAtATime(t *testing.T) {
	var out bytes.Buffer
	report := newProgressBars(&out)
	const mib = 1 << 20
	for _, p := range []lightbox.TransferProgress{
		{What: "unpack a", Total: 32 * mib},
		{What: "unpack b", Total: 32 * mib},
		{What: "unpack b", Done: 8 * mib, Total: 32 * mib},
		{What: "unpack a", Done: 16 * mib, Total: 32 * mib},
	} {
		report(p)
	}
	if s := out.String(); !strings.Contains(s, "unpack a") || strings.Contains(s, "unpack b") {
		t.Fatalf("with a drawn and b reported: %q, want a's bar alone", s)
	}
	report(lightbox.TransferProgress{What: "unpack a", Done: 32 * mib, Total: 32 * mib, Finished: true})
	report(lightbox.TransferProgress{What: "unpack b", Done: 16 * mib, Total: 32 * mib})
	if s := out.String(); !strings.Contains(s, "unpack b") {
		t.Fatalf("after a finished: %q, want b's bar", s)
	}
}

// A build on a terminal: a bar described by the running step, finished
// steps' lines and the RUN output above it.
func TestBuildBar(t *testing.T) {
	var out bytes.Buffer
	b := newBuildBar(&out)
	b.report(lightbox.BuildProgress{Step: 1, Total: 2, Instruction: "FROM busybox"})
	b.report(lightbox.BuildProgress{Step: 1, Total: 2, Instruction: "FROM busybox", Done: true, Cached: true})
	b.report(lightbox.BuildProgress{Step: 2, Total: 2, Instruction: "RUN make all\nand more"})
	if _, err := b.Write([]byte("compiling\n")); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"[1/2] cached  FROM busybox\n", "RUN make all", "compiling\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("output %q lacks %q", s, want)
		}
	}
	if strings.Contains(s, "and more") {
		t.Errorf("output %q: the bar's description is the instruction's first line only", s)
	}
	b.report(lightbox.BuildProgress{Step: 2, Total: 2, Instruction: "RUN make all\nand more", Done: true, LayerSize: 2048})
	if s := out.String(); !strings.Contains(s, "[2/2] done in 0.0s, layer 2.0 KiB  RUN make all\n") {
		t.Errorf("output %q lacks the last step's line", s)
	}
}

// During a build, the store's transfer reports (a step's layer unpacked)
// are shown in the step bar's description, one transfer at a time, and
// the description is the step's again once the transfer finishes: one
// renderer draws on the terminal.
func TestBuildBarShowsTransfers(t *testing.T) {
	var out bytes.Buffer
	b := newBuildBar(&out)
	const mib = 1 << 20
	b.report(lightbox.BuildProgress{Step: 1, Total: 2, Instruction: "RUN make all"})
	b.transfer(lightbox.TransferProgress{What: "unpack sha256:aaaa", Total: 32 * mib})
	b.transfer(lightbox.TransferProgress{What: "unpack sha256:bbbb", Total: 32 * mib})
	b.transfer(lightbox.TransferProgress{What: "unpack sha256:aaaa", Done: 8 * mib, Total: 32 * mib})
	// The last drawing of the line (the bar redraws after a carriage
	// return).
	last := func() string {
		s := out.String()
		return s[strings.LastIndex(s, "\r")+1:]
	}
	if l := last(); !strings.Contains(l, "RUN make all · unpack sha256:aaaa 8.0 MiB/32.0 MiB") {
		t.Errorf("the bar during the transfer reads %q, want the step and the transfer", l)
	}
	if s := out.String(); strings.Contains(s, "bbbb") {
		t.Errorf("output %q shows a second transfer while the first is shown", s)
	}
	b.transfer(lightbox.TransferProgress{What: "unpack sha256:aaaa", Done: 32 * mib, Total: 32 * mib, Finished: true})
	if l := last(); !strings.Contains(l, "RUN make all") || strings.Contains(l, "unpack") {
		t.Errorf("the bar after the transfer reads %q, want the step alone", l)
	}
	b.transfer(lightbox.TransferProgress{What: "unpack sha256:bbbb", Done: 16 * mib, Total: 32 * mib})
	if l := last(); !strings.Contains(l, "unpack sha256:bbbb 16.0 MiB/32.0 MiB") {
		t.Errorf("the bar reads %q, want the next transfer once the first finished", l)
	}
	b.report(lightbox.BuildProgress{Step: 2, Total: 2, Instruction: "RUN make all", Done: true})
	b.transfer(lightbox.TransferProgress{What: "unpack sha256:bbbb", Done: 32 * mib, Total: 32 * mib, Finished: true})
	// After the build's last step there is no bar: a late report draws
	// nothing.
	before := out.Len()
	b.transfer(lightbox.TransferProgress{What: "unpack sha256:cccc", Done: 1, Total: 32 * mib})
	if out.Len() != before {
		t.Errorf("a transfer after the build drew %q", out.String()[before:])
	}
}

// A bar draws its description, gauge and counts after a carriage return,
// at most once a throttle until it is full, and clear erases it.
func TestBar(t *testing.T) {
	var out bytes.Buffer
	const mib = 1 << 20
	b := &bar{w: &out, desc: "unpack a", total: 32 * mib, bytes: true, width: 10, throttle: time.Hour}
	b.set(8 * mib)
	if got, want := out.String(), "\runpack a  25% [==>       ] (8.0 MiB/32.0 MiB)"+eraseLine; got != want {
		t.Errorf("drawn %q, want %q", got, want)
	}
	out.Reset()
	b.set(16 * mib)
	if out.Len() != 0 {
		t.Errorf("a set within the throttle drew %q", out.String())
	}
	b.set(32 * mib)
	if got, want := out.String(), "\runpack a 100% [==========] (32.0 MiB/32.0 MiB)"+eraseLine; got != want {
		t.Errorf("full bar drawn %q, want %q", got, want)
	}
	out.Reset()
	b.clear()
	b.clear()
	if got, want := out.String(), "\r"+eraseLine; got != want {
		t.Errorf("cleared twice: %q, want %q once", got, want)
	}
	steps := &bar{w: &out, total: 3, width: 6}
	out.Reset()
	steps.describe("RUN make")
	if got, want := out.String(), "\rRUN make   0% [>     ] (0/3)"+eraseLine; got != want {
		t.Errorf("step bar drawn %q, want %q", got, want)
	}
}
