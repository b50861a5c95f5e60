package volstore

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds on labels, checked before anything touches the disk.
const (
	// MaxLabels is how many labels a volume may have.
	MaxLabels = 64
	// MaxLabelKey is the longest label key, in bytes.
	MaxLabelKey = 128
	// MaxLabelValue is the longest label value, in bytes.
	MaxLabelValue = 1024
)

// CheckLabels checks labels: at most MaxLabels; each key 1 to MaxLabelKey
// bytes with no '=' (the filters' separator) and no space; each value at
// most MaxLabelValue bytes; keys and values valid UTF-8 made of printable
// characters only (unicode.IsPrint: no control characters such as "\n" or
// ESC, no tab, no invisible format characters such as bidirectional
// overrides; a value may hold plain spaces). A bad label is an error
// wrapping ErrInvalidOption that quotes it escaped.
func CheckLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return fmt.Errorf("%d labels: %w: at most %d", len(labels), ErrInvalidOption, MaxLabels)
	}
	for k, v := range labels {
		if err := checkLabelKey(k); err != nil {
			return err
		}
		if len(v) > MaxLabelValue {
			return fmt.Errorf("label %q: value of %d bytes: %w: at most %d", k, len(v), ErrInvalidOption, MaxLabelValue)
		}
		if err := checkPrintable(v); err != nil {
			return fmt.Errorf("label %q: value %q: %w: %v", k, v, ErrInvalidOption, err)
		}
	}
	return nil
}

func checkLabelKey(k string) error {
	switch {
	case k == "":
		return fmt.Errorf("label key %q: %w: keys must not be empty", k, ErrInvalidOption)
	case len(k) > MaxLabelKey:
		return fmt.Errorf("label key %.40q…: %w: %d bytes, at most %d", k, ErrInvalidOption, len(k), MaxLabelKey)
	case strings.ContainsAny(k, "= "):
		return fmt.Errorf("label key %q: %w: keys contain no '=' and no space", k, ErrInvalidOption)
	}
	if err := checkPrintable(k); err != nil {
		return fmt.Errorf("label key %q: %w: %v", k, ErrInvalidOption, err)
	}
	return nil
}

// CheckLabelFilter checks a label filter, "K" or "K=V", by the rules of
// CheckLabels.
func CheckLabelFilter(f string) error {
	k, v, _ := strings.Cut(f, "=")
	if err := checkLabelKey(k); err != nil {
		return fmt.Errorf("label filter: %w", err)
	}
	if len(v) > MaxLabelValue {
		return fmt.Errorf("label filter %q: value of %d bytes: %w: at most %d", k, len(v), ErrInvalidOption, MaxLabelValue)
	}
	if err := checkPrintable(v); err != nil {
		return fmt.Errorf("label filter %q: value %q: %w: %v", k, v, ErrInvalidOption, err)
	}
	return nil
}

// checkPrintable fails for invalid UTF-8 and for characters that are not
// printable.
func checkPrintable(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("not valid UTF-8")
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("character %U is not printable", r)
		}
	}
	return nil
}
