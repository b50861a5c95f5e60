package apiserver

import (
	"bufio"
	"encoding/base64"
	"io"
	"strconv"
	"unicode/utf8"
)

// A command's result is written straight from its output buffers into
// the response line: marshalled whole, one result of 16 MiB per stream
// took half a gigabyte (the strings, json's escapes, its growing buffer,
// the line), held by every answer waiting for a client that reads
// slowly. Streamed, an answer costs its buffers alone.

// writeJSON writes the result object: {exitCode, signal?, stdout,
// stderr, encoding?}.
func (r *ExecResult) writeJSON(w *bufio.Writer) {
	_, _ = w.WriteString(`{"exitCode":` + strconv.Itoa(r.ExitCode)) // a bufio.Writer's error sticks: Flush returns it
	if r.Signal != 0 {
		_, _ = w.WriteString(`,"signal":` + strconv.Itoa(r.Signal))
	}
	_, _ = w.WriteString(`,"stdout":`)
	writeStream(w, r.stdout, r.b64)
	_, _ = w.WriteString(`,"stderr":`)
	writeStream(w, r.stderr, r.b64)
	if r.b64 {
		_, _ = w.WriteString(`,"encoding":"base64"`)
	}
	_ = w.WriteByte('}')
}

// writeJSON writes an error's data: {code, encoding?, exitCode?,
// signal?, stderr?, stdout?}, the result's fields when it has one.
func (d errorData) writeJSON(w *bufio.Writer) {
	_, _ = w.WriteString(`{"code":` + strconv.Quote(string(d.Code))) // a Kind is plain ASCII
	if r := d.ExecResult; r != nil {
		if r.b64 {
			_, _ = w.WriteString(`,"encoding":"base64"`)
		}
		_, _ = w.WriteString(`,"exitCode":` + strconv.Itoa(r.ExitCode))
		if r.Signal != 0 {
			_, _ = w.WriteString(`,"signal":` + strconv.Itoa(r.Signal))
		}
		_, _ = w.WriteString(`,"stderr":`)
		writeStream(w, r.stderr, r.b64)
		_, _ = w.WriteString(`,"stdout":`)
		writeStream(w, r.stdout, r.b64)
	}
	_ = w.WriteByte('}')
}

// writeStream writes a stream as a JSON string: base64, or UTF-8 with
// each run of bytes that is not UTF-8 replaced by U+FFFD (as
// strings.ToValidUTF8).
func writeStream(w *bufio.Writer, b []byte, b64 bool) {
	_ = w.WriteByte('"')
	if b64 {
		enc := base64.NewEncoder(base64.StdEncoding, w)
		_, _ = enc.Write(b)
		_ = enc.Close()
	} else {
		writeEscaped(w, b, false)
	}
	_ = w.WriteByte('"')
}

// textWriter is where writeEscaped writes: a *bufio.Writer (a response)
// or a *bytes.Buffer (a notification).
type textWriter interface {
	io.Writer
	io.StringWriter
	io.ByteWriter
}

// writeEscaped writes b as the inside of a JSON string. invalid says
// that the byte before b was part of a run that is not UTF-8 (its U+FFFD
// written already): b continues a stream sent in pieces (exec.output).
// It returns the same of b's last byte.
func writeEscaped(w textWriter, b []byte, invalid bool) bool {
	const hex = "0123456789abcdef"
	start := 0 // b[start:i] is to be written as it is
	for i := 0; i < len(b); {
		c := b[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			invalid = false
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(b[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				invalid = false
				continue
			}
		}
		_, _ = w.Write(b[start:i])
		switch {
		case c >= utf8.RuneSelf: // a byte of a run that is not UTF-8
			if !invalid {
				_, _ = w.WriteString("\uFFFD")
			}
			invalid = true
		case c == '"' || c == '\\':
			_, _ = w.Write([]byte{'\\', c})
			invalid = false
		case c == '\n':
			_, _ = w.WriteString(`\n`)
			invalid = false
		case c == '\r':
			_, _ = w.WriteString(`\r`)
			invalid = false
		case c == '\t':
			_, _ = w.WriteString(`\t`)
			invalid = false
		default:
			_, _ = w.Write([]byte{'\\', 'u', '0', '0', hex[c>>4], hex[c&0xf]})
			invalid = false
		}
		i++
		start = i
	}
	_, _ = w.Write(b[start:])
	return invalid
}
