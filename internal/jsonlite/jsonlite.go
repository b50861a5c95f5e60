// Package jsonlite reads the small JSON files lightbox writes itself
// (store.json, a sandbox's state.json, an id range's registry entry, the
// snapshot store's refs.json and launch records, and index.json as umoci
// writes it) without encoding/json, for the commands that are over in a few
// milliseconds: encoding/json's first use in a process builds its type
// caches by reflection and faults in its code, ~0.1 ms per file type on
// `lightbox exec`'s path (bench/NOTES.md 2026-11-30, execcli).
//
// It is not a JSON decoder. Parse takes a subset — what encoding/json's
// Marshal and MarshalIndent write for plain structs: objects, arrays,
// strings with no escape sequence, integers, true, false — and declines
// (ok false) anything else: null, escapes, fractions and exponents,
// duplicate keys. A caller's mapping declines any key it does not know
// exactly (encoding/json would match keys case-insensitively). Every
// caller hands what is declined to encoding/json, which then decides, so
// the two cannot disagree; each caller's test compares them.
package jsonlite

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Kind is the kind of a Value.
type Kind uint8

// Kinds of Value.
const (
	Object Kind = iota + 1
	Array
	String
	Number // an integer: -?(0|[1-9][0-9]*)
	Bool
)

// Value is a parsed JSON value.
type Value struct {
	Kind    Kind
	Str     string   // String: the text; Number: its digits
	Bool    bool     // Bool
	Members []Member // Object, in order; keys are unique
	Elems   []Value  // Array
}

// Member is one key and value of an Object.
type Member struct {
	Key string
	Val Value
}

// Parse parses b, which must hold one value of the subset (whitespace
// around it and between tokens is fine).
func Parse(b []byte) (Value, bool) {
	p := parser{b: b}
	v, ok := p.value(0)
	if !ok {
		return Value{}, false
	}
	p.space()
	return v, p.i == len(p.b)
}

// maxDepth bounds nesting: our files nest three deep.
const maxDepth = 32

type parser struct {
	b []byte
	i int
}

func (p *parser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) value(depth int) (Value, bool) {
	if depth > maxDepth {
		return Value{}, false
	}
	p.space()
	if p.i >= len(p.b) {
		return Value{}, false
	}
	switch c := p.b[p.i]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		s, ok := p.string()
		return Value{Kind: String, Str: s}, ok
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case p.word("true"):
		return Value{Kind: Bool, Bool: true}, true
	case p.word("false"):
		return Value{Kind: Bool}, true
	}
	return Value{}, false
}

func (p *parser) word(w string) bool {
	if len(p.b)-p.i >= len(w) && string(p.b[p.i:p.i+len(w)]) == w {
		p.i += len(w)
		return true
	}
	return false
}

func (p *parser) object(depth int) (Value, bool) {
	v := Value{Kind: Object}
	p.i++ // {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return v, true
	}
	for {
		p.space()
		key, ok := p.string()
		if !ok {
			return Value{}, false
		}
		for _, m := range v.Members {
			if m.Key == key {
				return Value{}, false // duplicate key
			}
		}
		p.space()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return Value{}, false
		}
		p.i++
		val, ok := p.value(depth + 1)
		if !ok {
			return Value{}, false
		}
		v.Members = append(v.Members, Member{key, val})
		p.space()
		if p.i >= len(p.b) {
			return Value{}, false
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return v, true
		default:
			return Value{}, false
		}
	}
}

func (p *parser) array(depth int) (Value, bool) {
	v := Value{Kind: Array, Elems: []Value{}}
	p.i++ // [
	p.space()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return v, true
	}
	for {
		e, ok := p.value(depth + 1)
		if !ok {
			return Value{}, false
		}
		v.Elems = append(v.Elems, e)
		p.space()
		if p.i >= len(p.b) {
			return Value{}, false
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return v, true
		default:
			return Value{}, false
		}
	}
}

// string reads a string with no escape sequence and no control
// character, in valid UTF-8.
func (p *parser) string() (string, bool) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return "", false
	}
	start := p.i + 1
	for j := start; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			if !utf8.Valid(p.b[start:j]) {
				return "", false
			}
			p.i = j + 1
			return string(p.b[start:j]), true
		case c == '\\' || c < 0x20:
			return "", false
		}
	}
	return "", false
}

func (p *parser) number() (Value, bool) {
	start := p.i
	if p.b[p.i] == '-' {
		p.i++
	}
	digits := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	if p.i == digits || (p.b[digits] == '0' && p.i > digits+1) {
		return Value{}, false // no digit, or a leading zero
	}
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case '.', 'e', 'E':
			return Value{}, false // not an integer
		}
	}
	return Value{Kind: Number, Str: string(p.b[start:p.i])}, true
}

// Int returns a Number as an int of bits bits (as encoding/json fills an
// intN field).
func (v Value) Int(bits int) (int64, bool) {
	if v.Kind != Number {
		return 0, false
	}
	n, err := strconv.ParseInt(v.Str, 10, bits)
	return n, err == nil
}

// Uint returns a Number as a uint of bits bits.
func (v Value) Uint(bits int) (uint64, bool) {
	if v.Kind != Number {
		return 0, false
	}
	n, err := strconv.ParseUint(v.Str, 10, bits)
	return n, err == nil
}

// String returns a String's text.
func (v Value) String() (string, bool) {
	return v.Str, v.Kind == String
}

// Strings returns an Array of Strings (empty, not nil, for []).
func (v Value) Strings() ([]string, bool) {
	if v.Kind != Array {
		return nil, false
	}
	out := make([]string, 0, len(v.Elems))
	for _, e := range v.Elems {
		if e.Kind != String {
			return nil, false
		}
		out = append(out, e.Str)
	}
	return out, true
}

// StringMap returns an Object of Strings.
func (v Value) StringMap() (map[string]string, bool) {
	if v.Kind != Object {
		return nil, false
	}
	out := make(map[string]string, len(v.Members))
	for _, m := range v.Members {
		if m.Val.Kind != String {
			return nil, false
		}
		out[m.Key] = m.Val.Str
	}
	return out, true
}

// Time returns a String as time.Time's UnmarshalJSON reads it (RFC 3339).
func (v Value) Time() (time.Time, bool) {
	var t time.Time
	if v.Kind != String {
		return t, false
	}
	q := make([]byte, 0, len(v.Str)+2)
	q = append(append(append(q, '"'), v.Str...), '"')
	return t, t.UnmarshalJSON(q) == nil
}

// Fields calls f for each member of an Object, in order, until f returns
// false (a key f does not know, or a value of the wrong kind); it reports
// whether v is an Object and f took every member.
func (v Value) Fields(f func(key string, v Value) bool) bool {
	if v.Kind != Object {
		return false
	}
	for _, m := range v.Members {
		if !f(m.Key, m.Val) {
			return false
		}
	}
	return true
}
