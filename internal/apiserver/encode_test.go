package apiserver

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// TestWriteStream: a stream written into a response reads back, as JSON,
// as what strings.ToValidUTF8 (or base64) makes of it.
func TestWriteStream(t *testing.T) {
	for _, in := range []string{
		"", "plain", "a\"b\\c\n\t\r\x00\x01\x1f\x7f <>&", "\u2028\u2029 é 😀",
		"\xff", "\xff\xfe", "x\xffy\xfe\xfdz", "\xef\xbf\xbd\xff\xef\xbf\xbd", "\xc3", "ok\xe2\x82", "\xe2\x82\xac\xe2\x82",
		strings.Repeat("\x01\xff€", 50000),
	} {
		for _, b64 := range []bool{false, true} {
			var buf bytes.Buffer
			w := bufio.NewWriter(&buf)
			writeStream(w, []byte(in), b64)
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			var got string
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("writeStream(%q, %v) = %s: not a JSON string: %v", in, b64, buf.Bytes(), err)
			}
			want := strings.ToValidUTF8(in, "\uFFFD")
			if b64 {
				want = base64.StdEncoding.EncodeToString([]byte(in))
			}
			if got != want {
				t.Errorf("writeStream(%q, %v) reads back %q, want %q", in, b64, got, want)
			}
		}
	}
}
