package apiserver

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// TestOutputStream: a stream cut into writes at every place (and at
// every pair of places) is sent as exec.output notifications whose data,
// joined, is what the result has of it: a character split across writes
// arrives whole, a run of bytes that is not UTF-8 is one U+FFFD across
// writes, a character never finished is U+FFFD at the end; base64 chunks
// decode to the bytes. Each notification is one line carrying the
// request's id.
func TestOutputStream(t *testing.T) {
	for _, in := range []string{
		"a€b", "😀😀", "x\xffy", "\xff\xfe\xfd", "ok\xe2\x82", "\xe2\x82\xac\xe2\x82x", "\xf0\x9f\x98", "é\xc3", "a\"\\\n\x00",
		"\xed\xa0\x80", "\xe0\x80\x80", "\xc3\xa9\xff\xc3\xa9",
	} {
		var cuts [][]int
		for i := 0; i <= len(in); i++ {
			for j := i; j <= len(in); j++ {
				cuts = append(cuts, []int{i, j})
			}
		}
		for _, b64 := range []bool{false, true} {
			var res bytes.Buffer
			w := bufio.NewWriter(&res)
			writeStream(w, []byte(in), b64)
			_ = w.Flush()
			var want string
			if err := json.Unmarshal(res.Bytes(), &want); err != nil {
				t.Fatal(err)
			}
			for _, cut := range cuts {
				var out bytes.Buffer
				var kept capBuffer
				o := newOutputStream(&Server{out: &out}, "exec.output", json.RawMessage(`"r 1"`), "stdout", b64, &kept)
				for _, part := range []string{in[:cut[0]], in[cut[0]:cut[1]], in[cut[1]:]} {
					if n, err := o.Write([]byte(part)); n != len(part) || err != nil {
						t.Fatalf("Write(%q) = %d, %v", part, n, err)
					}
				}
				if err := o.finish(); err != nil {
					t.Fatal(err)
				}
				var got []byte
				for _, l := range strings.SplitAfter(out.String(), "\n") {
					if l == "" {
						continue
					}
					var n struct {
						JSONRPC, Method string
						Params          struct{ ID, Stream, Data string }
					}
					if err := json.Unmarshal([]byte(l), &n); err != nil || n.JSONRPC != "2.0" || n.Method != "exec.output" || n.Params.ID != "r 1" || n.Params.Stream != "stdout" || !strings.HasSuffix(l, "}\n") {
						t.Fatalf("%q cut at %v: notification %q (%v)", in, cut, l, err)
					}
					d := []byte(n.Params.Data)
					if b64 {
						var err error
						if d, err = base64.StdEncoding.DecodeString(n.Params.Data); err != nil {
							t.Fatalf("%q cut at %v: data %q: %v", in, cut, n.Params.Data, err)
						}
					}
					got = append(got, d...)
				}
				if b64 {
					got = []byte(base64.StdEncoding.EncodeToString(got))
				}
				if string(got) != want {
					t.Errorf("%q cut at %v (base64 %v): notifications carry %q, the result %q", in, cut, b64, got, want)
				}
				if string(kept.buf) != in {
					t.Errorf("%q cut at %v: kept %q for the result", in, cut, kept.buf)
				}
			}
		}
	}
}
