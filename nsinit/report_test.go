package nsinit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
)

func TestWaitReport(t *testing.T) {
	line := func(r Report) io.Reader {
		var b bytes.Buffer
		if err := WriteReport(&b, r); err != nil {
			t.Fatal(err)
		}
		return &b
	}
	for _, tc := range []struct {
		name string
		in   io.Reader
		want func(error) bool
	}{
		{"ready", line(Report{Type: ReportReady}), func(err error) bool { return err == nil }},
		{"error", line(Report{Type: ReportError, Error: "mount root: EINVAL"}), func(err error) bool {
			return err != nil && err.Error() == "mount root: EINVAL"
		}},
		{"none", strings.NewReader(""), func(err error) bool { return errors.Is(err, ErrNoReport) }},
		{"version", strings.NewReader(`{"version":-1,"type":"ready"}` + "\n"), func(err error) bool { return errors.Is(err, ErrVersion) }},
		{"unknown", strings.NewReader(`{"version":` + strconv.Itoa(Version) + `,"type":"eof"}` + "\n"), func(err error) bool {
			return err != nil && strings.Contains(err.Error(), "unknown type")
		}},
	} {
		if err := WaitReport(t.Context(), tc.in); !tc.want(err) {
			t.Errorf("%s: WaitReport = %v", tc.name, err)
		}
	}
	// A context that ends first: the wait returns without the pipe.
	pr, pw := io.Pipe()
	defer func() { _ = pw.Close() }() // nothing written through it
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := WaitReport(ctx, pr); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitReport with a canceled context = %v, want context.Canceled", err)
	}
}
