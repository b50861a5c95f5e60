package main

import "testing"

func TestSafe(t *testing.T) {
	for in, want := range map[string]string{
		"plain":           "plain",
		"with space ✓":    "with space ✓",
		"":                "",
		"a\nb":            `"a\nb"`,
		"\x1b[2J":         `"\x1b[2J"`,
		"a\tb":            `"a\tb"`,
		"evil\u202egnp":   `"evil\u202egnp"`,
		"\xff":            `"\xff"`,
		"row\nNAME\tfake": `"row\nNAME\tfake"`,
	} {
		if got := safe(in); got != want {
			t.Errorf("safe(%q) = %s, want %s", in, got, want)
		}
	}
}
