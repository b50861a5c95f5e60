package main

import (
	"testing"
	"time"
)

// TestGrace: stop's and rm's --time takes docker's and podman's whole
// seconds and a Go duration; nothing negative, nothing else.
func TestGrace(t *testing.T) {
	for in, want := range map[string]time.Duration{"0": 0, "1": time.Second, "30": 30 * time.Second, "1.5s": 1500 * time.Millisecond, "500ms": 500 * time.Millisecond} {
		var g grace
		if err := g.Set(in); err != nil || time.Duration(g) != want {
			t.Errorf("--time %s = %v, %v; want %v", in, time.Duration(g), err, want)
		}
	}
	for _, in := range []string{"", "x", "-1", "-1s", "1 s", "1e3"} {
		var g grace
		if err := g.Set(in); err == nil {
			t.Errorf("--time %q = %v, want refused", in, time.Duration(g))
		}
	}
}
