package main

import (
	"strings"
	"testing"

	"github.com/beamhop/lightbox"
)

// TestParseMounts: DESIGN.md's rule for -v SRC: a host path when it is .
// or starts with /, ./, ../ or ~, else a volume name; a relative path
// without ./ is neither, and the error says how to write it.
func TestParseMounts(t *testing.T) {
	for _, tc := range []struct {
		v       string
		want    lightbox.Mount
		wantErr string
	}{
		{v: "./p:/w", want: lightbox.Mount{Source: "./p"}},
		{v: "/abs:/w:ro", want: lightbox.Mount{Source: "/abs", ReadOnly: true}},
		{v: "../p:/w:O", want: lightbox.Mount{Source: "../p", Overlay: true}},
		{v: ".:/w", want: lightbox.Mount{Source: "."}},
		{v: "cache:/w", want: lightbox.Mount{Volume: "cache"}},
		{v: "proj/sub:/w", wantErr: `a host path starts with /, ./, ../ or ~: ./proj/sub`},
		{v: "cache:/w:nocopy", want: lightbox.Mount{Volume: "cache", NoCopy: true}},
		{v: "cache:/w:ro,nocopy", want: lightbox.Mount{Volume: "cache", ReadOnly: true, NoCopy: true}},
		{v: "./p:/w:nocopy", wantErr: "nocopy is for a volume"},
		{v: "p:/w:bogus", wantErr: `option "bogus": want SRC:DST[:OPT[,OPT]]`},
		{v: ":/w", wantErr: "want SRC:DST[:OPT[,OPT]]"},
		{v: "a:b:c:d", wantErr: "want SRC:DST[:OPT[,OPT]]"},
	} {
		m, err := parseMounts([]string{tc.v})
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseMounts(%q) = %v, %v; want an error with %q", tc.v, m, err, tc.wantErr)
			}
			continue
		}
		if err != nil || m["/w"] != tc.want {
			t.Errorf("parseMounts(%q) = %+v, %v; want /w: %+v", tc.v, m, err, tc.want)
		}
	}
}
