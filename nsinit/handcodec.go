package nsinit

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf8"
)

// The hand-written half of the exec socket's codec: the messages every
// `lightbox exec` sends and reads (a Request of OpExec, OpSignal or
// OpResize; the Replies started, exit, ok, error) without encoding/json.
// A short-lived client paid encoding/json's first use for them (its type
// caches built by reflection, its code faulted in): ~0.15 ms of an exec's
// ~1.5 ms of CLI work (bench/NOTES.md 2026-11-30, lightbox exec). The
// bytes written are encoding/json's (TestAppendRequest); the decoder takes
// the subset of JSON encoding/json writes for a Reply and leaves anything
// else to encoding/json (TestParseReply), so the two cannot disagree.

// handRequest reports whether appendRequest encodes r: anything but Take
// and Etc, which launches and pools send.
func handRequest(r *Request) bool {
	return r.Take == nil && len(r.Etc) == 0
}

// appendRequest appends r as encoding/json encodes it, for a handRequest.
func appendRequest(b []byte, r *Request) []byte {
	b = append(b, `{"version":`...)
	b = strconv.AppendInt(b, int64(r.Version), 10)
	b = append(b, `,"op":`...)
	b = appendString(b, string(r.Op))
	if e := r.Exec; e != nil {
		b = append(b, `,"exec":{"args":`...)
		if e.Args == nil {
			b = append(b, "null"...)
		} else {
			b = appendStrings(b, e.Args)
		}
		if len(e.Env) > 0 {
			b = append(b, `,"env":`...)
			b = appendStrings(b, e.Env)
		}
		if e.Dir != "" {
			b = append(b, `,"dir":`...)
			b = appendString(b, e.Dir)
		}
		if e.User != "" {
			b = append(b, `,"user":`...)
			b = appendString(b, e.User)
		}
		if e.Tty {
			b = append(b, `,"tty":true`...)
		}
		b = appendInt(b, `,"rows":`, int64(e.Rows))
		b = appendInt(b, `,"cols":`, int64(e.Cols))
		b = appendInt(b, `,"logMax":`, e.LogMax)
		if e.TtyLog {
			b = append(b, `,"ttyLog":true`...)
		}
		if e.Main {
			b = append(b, `,"main":true`...)
		}
		if e.NoStarted {
			b = append(b, `,"noStarted":true`...)
		}
		b = append(b, '}')
	}
	b = appendInt(b, `,"signal":`, int64(r.Signal))
	b = appendInt(b, `,"grace":`, int64(r.Grace))
	b = appendInt(b, `,"rows":`, int64(r.Rows))
	b = appendInt(b, `,"cols":`, int64(r.Cols))
	return append(b, '}')
}

// appendReply appends r as encoding/json encodes it (TestAppendReply).
func appendReply(b []byte, r *Reply) []byte {
	b = append(b, `{"version":`...)
	b = strconv.AppendInt(b, int64(r.Version), 10)
	b = append(b, `,"type":`...)
	b = appendString(b, string(r.Type))
	b = appendInt(b, `,"pid":`, int64(r.Pid))
	b = appendInt(b, `,"code":`, int64(r.Code))
	b = appendInt(b, `,"signal":`, int64(r.Signal))
	if r.Error != "" {
		b = append(b, `,"error":`...)
		b = appendString(b, r.Error)
	}
	if r.TimedOut {
		b = append(b, `,"timedOut":true`...)
	}
	if r.Destroyed {
		b = append(b, `,"destroyed":true`...)
	}
	return append(b, '}')
}

// appendInt appends key and v unless v is 0 (omitempty).
func appendInt(b []byte, key string, v int64) []byte {
	if v == 0 {
		return b
	}
	b = append(b, key...)
	return strconv.AppendInt(b, v, 10)
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendString appends s quoted as encoding/json quotes it (HTML-safe:
// <, > and & escaped; invalid UTF-8 as U+FFFD; U+2028 and U+2029
// escaped).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// parseReply decodes b into r when b is a JSON object of the form Marshal
// writes for a Reply: no whitespace, only Reply's own keys spelled as
// its tags, integer values in int's range, strings without escapes or
// control characters. ok is false for anything else, r then untouched:
// the caller hands b to encoding/json, which decides.
func parseReply(b []byte, r *Reply) bool {
	body, ok := objectBody(b)
	if !ok {
		return false
	}
	out := *r
	ok = members(body, func(key string, p []byte) ([]byte, bool) {
		switch key {
		case "type", "error":
			v, rest, ok := plainString(p)
			if key == "type" {
				out.Type = ReplyType(v)
			} else {
				out.Error = v
			}
			return rest, ok
		case "timedOut", "destroyed":
			v, rest, ok := jsonBool(p)
			if key == "timedOut" {
				out.TimedOut = v
			} else {
				out.Destroyed = v
			}
			return rest, ok
		case "version", "pid", "code", "signal":
			v, rest, ok := jsonInt(p, strconv.IntSize)
			switch key {
			case "version":
				out.Version = int(v)
			case "pid":
				out.Pid = int(v)
			case "code":
				out.Code = int(v)
			case "signal":
				out.Signal = int(v)
			}
			return rest, ok
		}
		return nil, false
	})
	if ok {
		*r = out
	}
	return ok
}

// plainString reads a JSON string at the start of p that needs no
// unescaping: printable ASCII but for '"' and '\\', or valid UTF-8.
func plainString(p []byte) (s string, rest []byte, ok bool) {
	if len(p) == 0 || p[0] != '"' {
		return "", nil, false
	}
	for i := 1; i < len(p); i++ {
		switch c := p[i]; {
		case c == '"':
			if !utf8.Valid(p[1:i]) {
				return "", nil, false
			}
			return string(p[1:i]), p[i+1:], true
		case c == '\\' || c < 0x20:
			return "", nil, false
		}
	}
	return "", nil, false
}

// parseRequest decodes b into r when b is a JSON object of the form
// appendRequest writes (the Request of every exec, signal and resize):
// no whitespace, only its own keys spelled as their tags, numbers that
// fit their fields, strings without escapes or control characters, and r
// without an Exec, Take or Etc already. ok is false for anything else, r
// then untouched: the caller hands b to encoding/json, which decides. A
// handover's new init decodes requests with it: encoding/json's first use
// (its type caches built by reflection) cost the first command after a
// quiet spell ~0.1 ms and kept its caches resident (bench/NOTES.md,
// 2026-12-01 poolidle).
func parseRequest(b []byte, r *Request) bool {
	if r.Exec != nil || r.Take != nil || r.Etc != nil || bytes.IndexByte(b, '\\') >= 0 {
		return false // an escape anywhere: objectEnd's quotes need none
	}
	body, ok := objectBody(b)
	if !ok {
		return false
	}
	out := *r
	ok = members(body, func(key string, p []byte) ([]byte, bool) {
		switch key {
		case "version", "signal":
			v, rest, ok := jsonInt(p, strconv.IntSize)
			if key == "version" {
				out.Version = int(v)
			} else {
				out.Signal = int(v)
			}
			return rest, ok
		case "grace":
			v, rest, ok := jsonInt(p, 64)
			out.Grace = time.Duration(v)
			return rest, ok
		case "rows", "cols":
			v, rest, ok := jsonUint16(p)
			if key == "rows" {
				out.Rows = v
			} else {
				out.Cols = v
			}
			return rest, ok
		case "op":
			v, rest, ok := plainString(p)
			out.Op = Op(v)
			return rest, ok
		case "exec":
			if out.Exec != nil {
				return nil, false // twice: encoding/json would merge them
			}
			e, rest, ok := parseExec(p)
			out.Exec = e
			return rest, ok
		}
		return nil, false
	})
	if ok {
		*r = out
	}
	return ok
}

// parseExec reads the object of an Exec at the start of p.
func parseExec(in []byte) (*Exec, []byte, bool) {
	end := objectEnd(in)
	if end < 0 {
		return nil, nil, false
	}
	e := &Exec{}
	ok := members(in[1:end], func(key string, p []byte) ([]byte, bool) {
		switch key {
		case "args", "env":
			v, rest, ok := stringArray(p)
			if key == "args" {
				e.Args = v
			} else {
				e.Env = v
			}
			return rest, ok
		case "dir", "user":
			v, rest, ok := plainString(p)
			if key == "dir" {
				e.Dir = v
			} else {
				e.User = v
			}
			return rest, ok
		case "tty", "ttyLog", "main", "noStarted":
			v, rest, ok := jsonBool(p)
			switch key {
			case "tty":
				e.Tty = v
			case "ttyLog":
				e.TtyLog = v
			case "main":
				e.Main = v
			case "noStarted":
				e.NoStarted = v
			}
			return rest, ok
		case "rows", "cols":
			v, rest, ok := jsonUint16(p)
			if key == "rows" {
				e.Rows = v
			} else {
				e.Cols = v
			}
			return rest, ok
		case "logMax":
			v, rest, ok := jsonInt(p, 64)
			e.LogMax = v
			return rest, ok
		}
		return nil, false
	})
	if !ok {
		return nil, nil, false
	}
	return e, in[end+1:], true
}

// objectBody is what is between the braces of an object that is all of b.
func objectBody(b []byte) ([]byte, bool) {
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return nil, false
	}
	return b[1 : len(b)-1], true
}

// objectEnd is the index of the '}' that closes the object at the start
// of p, whose strings have no escapes (plainString declines the rest);
// -1 when p does not start with an object.
func objectEnd(p []byte) int {
	if len(p) == 0 || p[0] != '{' {
		return -1
	}
	in := false
	for i := 1; i < len(p); i++ {
		switch c := p[i]; {
		case c == '"':
			in = !in
		case in:
		case c == '{':
			return -1 // no object inside an Exec
		case c == '}':
			return i
		}
	}
	return -1
}

// objectKey reads `"key":` at the start of p.
func objectKey(p []byte) (key string, rest []byte, ok bool) {
	key, rest, ok = plainString(p)
	if !ok || len(rest) == 0 || rest[0] != ':' {
		return "", nil, false
	}
	return key, rest[1:], true
}

// members walks the members of an object's body (between its braces, as
// objectBody or objectEnd finds them): member reads the value of key at
// the start of p and returns what follows it. It is false when a key, a
// value or the ',' between members is not as Marshal writes them.
func members(body []byte, member func(key string, p []byte) (rest []byte, ok bool)) bool {
	for len(body) > 0 {
		key, p, ok := objectKey(body)
		if !ok {
			return false
		}
		if p, ok = member(key, p); !ok {
			return false
		}
		if body, ok = nextMember(p); !ok {
			return false
		}
	}
	return true
}

// nextMember steps over the ',' between members; p must then go on.
func nextMember(p []byte) ([]byte, bool) {
	if len(p) == 0 {
		return p, true
	}
	if p[0] != ',' || len(p) == 1 {
		return nil, false
	}
	return p[1:], true
}

// jsonInt reads an integer (JSON's grammar, no fraction or exponent) of
// at most bits bits at the start of p.
func jsonInt(p []byte, bits int) (v int64, rest []byte, ok bool) {
	n := 0
	if n < len(p) && p[n] == '-' {
		n++
	}
	digits := n
	for n < len(p) && p[n] >= '0' && p[n] <= '9' {
		n++
	}
	if n == digits || (p[digits] == '0' && n > digits+1) {
		return 0, nil, false // no digits, or a leading zero: not JSON
	}
	v, err := strconv.ParseInt(string(p[:n]), 10, bits)
	if err != nil {
		return 0, nil, false
	}
	return v, p[n:], true
}

func jsonUint16(p []byte) (uint16, []byte, bool) {
	v, rest, ok := jsonInt(p, 64)
	if !ok || v < 0 || v > 65535 {
		return 0, nil, false
	}
	return uint16(v), rest, true
}

func jsonBool(p []byte) (bool, []byte, bool) {
	switch {
	case len(p) >= 4 && string(p[:4]) == "true":
		return true, p[4:], true
	case len(p) >= 5 && string(p[:5]) == "false":
		return false, p[5:], true
	}
	return false, nil, false
}

// stringArray reads null or an array of plain strings at the start of p.
func stringArray(p []byte) ([]string, []byte, bool) {
	if len(p) >= 4 && string(p[:4]) == "null" {
		return nil, p[4:], true
	}
	if len(p) == 0 || p[0] != '[' {
		return nil, nil, false
	}
	p = p[1:]
	out := []string{}
	if len(p) > 0 && p[0] == ']' {
		return out, p[1:], true
	}
	for {
		s, rest, ok := plainString(p)
		if !ok || len(rest) == 0 {
			return nil, nil, false
		}
		out = append(out, s)
		switch rest[0] {
		case ',':
			p = rest[1:]
		case ']':
			return out, rest[1:], true
		default:
			return nil, nil, false
		}
	}
}
