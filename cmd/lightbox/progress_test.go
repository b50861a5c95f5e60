package main

import (
	"bytes"
	"strings"
	"testing"

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
