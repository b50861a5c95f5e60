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
