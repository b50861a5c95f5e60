package main

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// safe returns s for a table cell or a line of output: as it is when it is
// valid UTF-8 of printable characters, else quoted with Go's escapes
// (strconv.Quote), so that a value lightbox did not validate (a hand-edited
// meta.json, a snapshot's config) can neither forge rows or columns (a
// newline, a tab) nor drive the terminal (ESC sequences, bidirectional
// overrides).
func safe(s string) string {
	if utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0 {
		return s
	}
	return strconv.Quote(s)
}

// safeJoin is safe of each element, joined by sep.
func safeJoin(l []string, sep string) string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = safe(s)
	}
	return strings.Join(out, sep)
}
