package names

import (
	"errors"
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"a", true},
		{"npm-cache", true},
		{"A_b.c-1", true},
		{strings.Repeat("x", 63), true},
		{strings.Repeat("x", 64), false},
		{"", false},
		{"../x", false},
		{"a/b", false},
		{"-a", false},
		{".a", false},
		{"_a", false},
		{"a\x00b", false},
		{"a b", false},
		{"a\n", false},
	} {
		if got := Valid(tc.name); got != tc.want {
			t.Errorf("Valid(%q) = %v, want %v", tc.name, got, tc.want)
		}
		if err := Check("volume", tc.name); (err == nil) != tc.want || (err != nil && !errors.Is(err, ErrInvalid)) {
			t.Errorf("Check(%q) = %v, want ok=%v", tc.name, err, tc.want)
		}
	}
}
