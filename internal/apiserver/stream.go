package apiserver

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"sync"
	"unicode/utf8"
)

// A streaming exec ("stream": true) sends what its command writes as
// exec.output notifications while it runs:
//
//	{"jsonrpc":"2.0","method":"exec.output","params":{"id":ID,"stream":"stdout","data":"…"}}
//
// one per chunk the command's stream is read in, each stream's in order,
// all before the request's response (Cmd.Wait waits for the copies that
// call Write, and finish sends what is held back). The result is the same
// as without streaming: the output is kept for it too.

// outputStream is a Cmd's Stdout or Stderr for a streaming request: each
// Write is kept for the result (keep) and sent as one notification. It
// is safe for concurrent use (a copy goroutine writes, finish ends it).
type outputStream struct {
	s      *Server
	prefix []byte // the notification up to its data's opening quote
	b64    bool   // data is base64 of the bytes, else UTF-8 text
	keep   io.Writer

	mu      sync.Mutex
	held    []byte // utf8: the start of a character the next write may complete
	invalid bool   // utf8: the last byte sent was part of a run that is not UTF-8
	line    bytes.Buffer
	done    bool // finished: what comes later (a Start that failed) is not sent
}

// newOutputStream returns the stream of the request of id, sent as
// method's notifications (exec.output, build.output).
func newOutputStream(s *Server, method string, id json.RawMessage, stream string, b64 bool, keep io.Writer) *outputStream {
	prefix := append([]byte(`{"jsonrpc":"2.0","method":"`+method+`","params":{"id":`), compactID(id)...)
	prefix = append(prefix, `,"stream":"`+stream+`","data":"`...)
	return &outputStream{s: s, prefix: prefix, b64: b64, keep: keep}
}

// Write keeps p for the result and sends it. In UTF-8 a character that p
// ends in the middle of is held back until the next write completes it
// (or finish), and a run of bytes that is not UTF-8 across writes is one
// U+FFFD: the data of a stream's notifications joined is the text the
// result has (up to the result's 16 MiB). An error is the server's
// output failing: the command's later writes fail (EPIPE), as when a
// reader of a pipe goes away.
func (o *outputStream) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, err := o.keep.Write(p); err != nil {
		return 0, err
	}
	if o.done {
		return len(p), nil
	}
	if o.b64 {
		return len(p), o.send(p)
	}
	data := p
	if len(o.held) > 0 {
		data = append(o.held, p...)
	}
	cut := completeUTF8(data)
	o.held = append([]byte(nil), data[cut:]...)
	if cut == 0 {
		return len(p), nil
	}
	return len(p), o.send(data[:cut])
}

// compactID is id as a response spells it (compacted JSON).
func compactID(id json.RawMessage) []byte {
	b, err := json.Marshal(id)
	if err != nil {
		return []byte("null")
	}
	return b
}

// flush sends what Write held back (the start of a character that did
// not end: U+FFFD) and goes on: build.output's streams at the end of a
// step, whose command has ended.
func (o *outputStream) flush() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done || len(o.held) == 0 {
		return nil
	}
	b := o.held
	o.held = nil
	return o.send(b)
}

// finish sends what Write held back (the start of a character that never
// ended: U+FFFD, as in the result) and sends nothing more. Called once
// the command's Wait returned, before the response is written.
func (o *outputStream) finish() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.done = true
	if len(o.held) == 0 {
		return nil
	}
	b := o.held
	o.held = nil
	return o.send(b)
}

// send writes one notification of b, a line whole under the server's
// writer lock. o.mu is held.
func (o *outputStream) send(b []byte) error {
	o.line.Reset()
	o.line.Write(o.prefix)
	if o.b64 {
		enc := base64.NewEncoder(base64.StdEncoding, &o.line)
		_, _ = enc.Write(b) // a bytes.Buffer does not fail
		_ = enc.Close()
	} else {
		o.invalid = writeEscaped(&o.line, b, o.invalid)
	}
	o.line.WriteString("\"}}\n")
	o.s.wmu.Lock()
	defer o.s.wmu.Unlock()
	_, err := o.s.out.Write(o.line.Bytes())
	return err
}

// completeUTF8 returns how much of b can be sent as text now: all but a
// last character that b ends in the middle of (one the bytes that
// follow may complete; utf8.FullRune says, as utf8.DecodeRune decides).
func completeUTF8(b []byte) int {
	for i := len(b) - 1; i >= 0 && i > len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			break
		}
	}
	return len(b)
}
