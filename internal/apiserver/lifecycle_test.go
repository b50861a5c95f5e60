package apiserver

import (
	"bytes"
	"strings"
	"testing"

	"github.com/beamhop/lightbox"
)

// TestTailBuffer: logs keep the newest OutputLimit bytes of a stream and
// count the older ones left out, however the stream was cut into writes;
// as text the kept part starts at a character, the bytes of one the cut
// went through counted as left out.
func TestTailBuffer(t *testing.T) {
	const limit = lightbox.OutputLimit
	long := bytes.Repeat([]byte("0123456789abcdef"), 3*limit/16+1) // past twice the limit
	for _, c := range []struct {
		name  string
		in    []byte
		sizes []int // the writes' sizes, repeated
	}{
		{"short", []byte("hello"), []int{2}},
		{"at the limit", long[:limit], []int{32 << 10}},
		{"long, small writes", long, []int{32 << 10, 7}},
		{"long, one write", long, []int{len(long)}},
		{"long, writes about the limit", long, []int{limit - 1, 3, limit + 5}},
	} {
		var b tailBuffer
		for i, rest := 0, c.in; len(rest) > 0; i++ {
			n := min(c.sizes[i%len(c.sizes)], len(rest))
			if got, err := b.Write(rest[:n]); got != n || err != nil {
				t.Fatalf("%s: Write(%d bytes) = %d, %v", c.name, n, got, err)
			}
			rest = rest[n:]
		}
		want := c.in[max(0, len(c.in)-limit):]
		got, dropped := b.tail(true)
		if !bytes.Equal(got, want) || dropped != int64(len(c.in)-len(want)) {
			t.Errorf("%s: tail = %d bytes (%.20q…), %d dropped; want the last %d, %d dropped", c.name, len(got), got, dropped, len(want), len(c.in)-len(want))
		}
		if len(b.buf) > 2*limit {
			t.Errorf("%s: holds %d bytes, want at most twice the limit", c.name, len(b.buf))
		}
	}

	// A character the cut goes through: left out as text, kept in bytes.
	var b tailBuffer
	in := "é" + strings.Repeat("x", limit-1) // the é's second byte is the first kept
	_, _ = b.Write([]byte(in))
	if got, dropped := b.tail(false); string(got) != in[2:] || dropped != 2 {
		t.Errorf("text tail through a character: %d bytes starting %.4q, %d dropped; want %d from after the é, 2 dropped", len(got), got, dropped, len(in)-2)
	}
	if got, dropped := b.tail(true); string(got) != in[1:] || dropped != 1 {
		t.Errorf("byte tail through a character: %d bytes, %d dropped; want %d, 1 dropped", len(got), dropped, len(in)-1)
	}
}
