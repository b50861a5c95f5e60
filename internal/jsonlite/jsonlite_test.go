package jsonlite

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestParse: what Parse takes and what it declines.
func TestParse(t *testing.T) {
	for _, b := range []string{
		`{}`, `[]`, `""`, `0`, `-1`, `123`, `true`, `false`, ` { "a" : [ 1 , -2 , "x" ] , "b" : {} } `,
		"{\n\t\"a\": \"caf\u00e9 \u65e5\"\n}\n", `{"a":{"b":{"c":[[]]}}}`,
	} {
		if _, ok := Parse([]byte(b)); !ok {
			t.Errorf("Parse(%s) declined", b)
		}
		if !json.Valid([]byte(b)) {
			t.Errorf("test input %s is not JSON", b)
		}
	}
	for _, b := range []string{
		``, ` `, `null`, `{"a":null}`, `1.5`, `1e3`, `01`, `-`, `-01`, `"a\"b"`, `"a\nb"`, "\"a\nb\"", "\"\xff\"",
		`{"a":1,"a":2}`, `{"a":1,}`, `[1,]`, `{"a"}`, `{"a":1`, `[1`, `"abc`, `{} {}`, `{}x`, `tru`, `True`,
		`{a:1}`, `{"a":1 "b":2}`, `[1 2]`, strings.Repeat("[", 40) + strings.Repeat("]", 40),
	} {
		if v, ok := Parse([]byte(b)); ok {
			t.Errorf("Parse(%q) = %+v, want it declined", b, v)
		}
	}
}

// TestValues: the accessors give what encoding/json gives for the same
// text, and refuse what it would not store.
func TestValues(t *testing.T) {
	v, ok := Parse([]byte(`{"i":-9223372036854775808,"u":18446744073709551615,"s":"x","l":["a","b"],"m":{"k":"v"},` +
		`"t":"2026-11-30T20:39:37.63288258Z","big":9223372036854775808,"neg":-1,"b":true,"e":[],"mix":["a",1]}`))
	if !ok {
		t.Fatal("Parse declined")
	}
	get := func(k string) Value {
		for _, m := range v.Members {
			if m.Key == k {
				return m.Val
			}
		}
		t.Fatalf("no member %s", k)
		return Value{}
	}
	if n, ok := get("i").Int(64); !ok || n != -1<<63 {
		t.Errorf("Int(i) = %d, %v", n, ok)
	}
	if _, ok := get("big").Int(64); ok {
		t.Error("Int(big) took an int64 overflow")
	}
	if n, ok := get("u").Uint(64); !ok || n != 1<<64-1 {
		t.Errorf("Uint(u) = %d, %v", n, ok)
	}
	if _, ok := get("neg").Uint(64); ok {
		t.Error("Uint(-1) took it")
	}
	if _, ok := get("big").Uint(32); ok {
		t.Error("Uint(big, 32) took it")
	}
	if s, ok := get("s").String(); !ok || s != "x" {
		t.Errorf("String(s) = %q, %v", s, ok)
	}
	if _, ok := get("i").String(); ok {
		t.Error("String of a Number took it")
	}
	if l, ok := get("l").Strings(); !ok || len(l) != 2 || l[1] != "b" {
		t.Errorf("Strings(l) = %q, %v", l, ok)
	}
	if l, ok := get("e").Strings(); !ok || l == nil || len(l) != 0 {
		t.Errorf("Strings([]) = %#v, %v; want empty, not nil (as encoding/json)", l, ok)
	}
	if _, ok := get("mix").Strings(); ok {
		t.Error("Strings took a Number element")
	}
	if m, ok := get("m").StringMap(); !ok || m["k"] != "v" {
		t.Errorf("StringMap(m) = %v, %v", m, ok)
	}
	want, _ := time.Parse(time.RFC3339Nano, "2026-11-30T20:39:37.63288258Z") // a constant that parses
	if tm, ok := get("t").Time(); !ok || !tm.Equal(want) {
		t.Errorf("Time(t) = %v, %v", tm, ok)
	}
	if _, ok := get("s").Time(); ok {
		t.Error("Time took \"x\"")
	}
	n := 0
	if !v.Fields(func(string, Value) bool { n++; return true }) || n != len(v.Members) {
		t.Errorf("Fields visited %d of %d", n, len(v.Members))
	}
	if v.Fields(func(k string, _ Value) bool { return k != "s" }) {
		t.Error("Fields reported true when f declined a member")
	}
}
