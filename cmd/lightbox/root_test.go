package main

import (
	"strings"
	"testing"
)

func TestEmptyRoot(t *testing.T) {
	for args, want := range map[string]bool{
		"--root  ps":                       true, // two spaces: an empty field
		"--root= ps":                       true,
		"-root= ps":                        true,
		"--log-level debug --root= ps":     true,
		"--root /s ps":                     false,
		"--root=/s ps":                     false,
		"ps --root=":                       false, // past the command: not the global flag
		"--identity-mapping --root= ps":    true,
		"--root":                           false,
		"run busybox sh -c --root=":        false,
		"--log-level --root= --root=/s ps": false, // "--root=" is the log level's value
		"--log-level=x --root=/x --root=":  true,
	} {
		if got := emptyRoot(strings.Split(args, " ")); got != want {
			t.Errorf("emptyRoot(%q) = %v, want %v", args, got, want)
		}
	}
}
