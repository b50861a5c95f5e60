package apiserver

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

// TestLineReader: lines up to the limit come back whole (with or without
// a last newline); a longer one comes back as its first idPrefix bytes,
// marked too long, and the line after it is read as it was sent.
func TestLineReader(t *testing.T) {
	const max = 10000
	long := `{"jsonrpc":"2.0","id":7,"params":{"stdin":"` + strings.Repeat("x", 3*max) + `"}}`
	in := "a\n\n" + strings.Repeat("y", max) + "\n" + long + "\n" + strings.Repeat("z", max+1) + "\nlast"
	lr := lineReader{br: bufio.NewReaderSize(strings.NewReader(in), 16), max: max}
	want := []line{{b: []byte("a")}, {b: []byte("")}, {b: []byte(strings.Repeat("y", max))},
		{b: []byte(long[:idPrefix]), tooLong: true}, {b: []byte(strings.Repeat("z", idPrefix)), tooLong: true}, {b: []byte("last")}}
	for i, w := range want {
		l, err := lr.next()
		if (err != nil) != (i == len(want)-1) || (err != nil && err != io.EOF) {
			t.Fatalf("line %d: error %v", i, err)
		}
		if string(l.b) != string(w.b) || l.tooLong != w.tooLong {
			t.Errorf("line %d = %.40q (%d bytes) tooLong %v, want %.40q (%d bytes) tooLong %v", i, l.b, len(l.b), l.tooLong, w.b, len(w.b), w.tooLong)
		}
	}
}

// TestIDIn: the id of a line cut short is found when it comes before what
// was cut.
func TestIDIn(t *testing.T) {
	for _, c := range []struct{ prefix, want string }{
		{`{"jsonrpc":"2.0","id":12,"method":"sandbox.shell","params":{"stdin":"xxx`, `12`},
		{`{"id":"a-b","params":{"stdin":"xx`, `"a-b"`},
		{` { "jsonrpc" : "2.0" , "method":"m", "id" : -1.5 , "params":{"st`, `-1.5`},
		{`{"jsonrpc":"2.0","params":{"stdin":"xxx`, ``},           // the id, if any, after the cut
		{`{"jsonrpc":"2.0","params":{"s":1},"id":{"a":1},"x`, ``}, // not a valid id
		{`{"jsonrpc":"2.0","id":123`, ``},                         // the id itself cut
		{`[{"id":1,`, ``},
		{`xx`, ``},
	} {
		if got := string(idIn([]byte(c.prefix))); got != c.want {
			t.Errorf("idIn(%s) = %s, want %s", c.prefix, got, c.want)
		}
	}
}

// TestDecodeExactNames: params are decoded when each name is spelt as
// the protocol has it; a name in another case is an invalid_params
// error that names it, at any depth.
func TestDecodeExactNames(t *testing.T) {
	for _, c := range []struct {
		params string
		into   any
		want   string // "" = decoded
	}{
		{`{"name":"a","script":"x","timeoutMs":5,"env":["A=b"],"stdin":"s"}`, &execParams{}, ``},
		{`{"name":"a","script":"x","Timeoutms":5}`, &execParams{}, `params: unknown field "Timeoutms" (did you mean "timeoutMs"?)`},
		{`{"NAME":"a"}`, &execParams{}, `params: unknown field "NAME" (did you mean "name"?)`},
		{`{"name":"a","netwrok":"none"}`, &launchParams{}, `params: json: unknown field "netwrok"`},
		{`{"snapshot":"s","mounts":{"/a":{"volume":"v","readOnly":true},"/b":{"source":"/x"}}}`, &launchParams{}, ``},
		{`{"snapshot":"s","mounts":{"/a":{"volume":"v","readonly":true}}}`, &launchParams{}, `params: unknown field "readonly" in mounts["/a"] (did you mean "readOnly"?)`},
		{`{"snapshot":"s","mounts":null,"env":null}`, &launchParams{}, ``},
		{`{"name":"v","labels":{"Any":"Case","ok":"x"}}`, &struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		}{}, ``},
		{`null`, &nameParams{}, ``},
		{`{"Name":"x"}`, &struct{}{}, `params: json: unknown field "Name"`},
	} {
		err := decode([]byte(c.params), c.into)
		got := ""
		if err != nil {
			got = err.Error()
			if KindOf(err) != KindInvalidParams {
				t.Errorf("decode(%s): error of kind %s, want invalid_params", c.params, KindOf(err))
			}
		}
		if got != c.want {
			t.Errorf("decode(%s) = %q, want %q", c.params, got, c.want)
		}
	}
}

// BenchmarkDecodeExec: what decoding an exec's params costs, small and
// with a 1 MiB stdin (the names' check reads the params once more).
func BenchmarkDecodeExec(b *testing.B) {
	for _, c := range []struct{ name, stdin string }{{"small", "hi"}, {"stdin1MiB", strings.Repeat("x", 1<<20)}} {
		params := []byte(`{"name":"box","script":"cat > /tmp/f; echo done","env":["A=b","C=d"],"workdir":"/work","timeoutMs":60000,"stdin":"` + c.stdin + `"}`)
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(params)))
			b.ReportAllocs()
			for b.Loop() {
				var p execParams
				if err := decode(params, &p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
