//go:build linux

package nsinit

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestReportCodec(t *testing.T) {
	var b bytes.Buffer
	if err := WriteReport(&b, Report{Type: ReportError, Error: "mount root: EINVAL"}); err != nil {
		t.Fatal(err)
	}
	r, err := ReadReport(&b)
	if err != nil || r.Type != ReportError || r.Error != "mount root: EINVAL" || r.Version != Version {
		t.Errorf("ReadReport = %+v, %v; want the error report back", r, err)
	}
	if _, err := ReadReport(strings.NewReader("")); !errors.Is(err, ErrNoReport) {
		t.Errorf("ReadReport of a closed pipe = %v, want ErrNoReport", err)
	}
	if _, err := ReadReport(strings.NewReader(`{"version":99,"type":"ready"}` + "\n")); !errors.Is(err, ErrVersion) {
		t.Errorf("ReadReport of version 99 = %v, want ErrVersion", err)
	}
	if _, err := ReadReport(strings.NewReader(`{"version":1,"type":"eof"}` + "\n")); err == nil {
		t.Error("ReadReport took a report of an unknown type")
	}
}

func TestConfigCodec(t *testing.T) {
	var b bytes.Buffer
	if err := WriteConfig(&b, &Config{Name: "x", FDs: FDs{Report: 4}}); err != nil {
		t.Fatal(err)
	}
	cfg, err := ReadConfig(&b)
	if err != nil || cfg.Name != "x" || cfg.FDs.Report != 4 {
		t.Errorf("ReadConfig = %+v, %v", cfg, err)
	}
}

// TestMsgCarriesFDs sends a Request with a descriptor and reads it back
// on the other end of a socket pair: one codec for both sides.
func TestMsgCarriesFDs(t *testing.T) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "sock")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	a, b := conn(pair[0]), conn(pair[1])
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := WriteMsg(a, &Request{Op: OpSignal, Signal: 15}, []int{int(w.Fd())}); err != nil {
		t.Fatal(err)
	}
	var req Request
	fds, err := ReadMsg(b, make([]byte, 4096), MaxMsgFDs, &req)
	if err != nil || req.Op != OpSignal || req.Signal != 15 || len(fds) != 1 {
		t.Fatalf("ReadMsg = %+v, %v, %v", req, fds, err)
	}
	got := os.NewFile(uintptr(fds[0]), "passed")
	defer got.Close()
	// A received descriptor must not leak into a workload the init
	// forks next.
	if fl, err := unix.FcntlInt(got.Fd(), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC == 0 {
		t.Errorf("received descriptor: fd flags %#x, %v; want FD_CLOEXEC", fl, err)
	}
	if _, err := got.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := r.Read(buf); err != nil || buf[0] != 'x' {
		t.Errorf("the passed descriptor is not the pipe's write end: %q, %v", buf, err)
	}
	big := &Request{Op: OpExec, Exec: &Exec{Args: []string{strings.Repeat("a", MaxRequest)}}}
	if err := WriteMsg(a, big, nil); err == nil {
		t.Error("WriteMsg sent a request over MaxRequest")
	}
}

// TestStatusInLog: the lock file is also the init's stderr: the Status is
// its first JSON value, whatever the init logged after it; log lines
// alone are no Status.
func TestStatusInLog(t *testing.T) {
	b, err := MarshalStatus(Status{ExitCode: 3, Signal: 0})
	if err != nil {
		t.Fatal(err)
	}
	for _, tail := range []string{"", "lightbox init: something late\n", "panic: x\n\ngoroutine 1 [running]:\n"} {
		st, err := UnmarshalStatus(append(bytes.Clone(b), tail...))
		if err != nil || st.ExitCode != 3 {
			t.Errorf("UnmarshalStatus(status + %q) = %+v, %v; want exit code 3", tail, st, err)
		}
	}
	for _, log := range []string{"", "lightbox init: report ready: broken pipe\n", "fatal error: out of memory\n"} {
		if st, err := UnmarshalStatus([]byte(log)); err == nil {
			t.Errorf("UnmarshalStatus(%q) = %+v, want an error", log, st)
		}
	}
	if _, err := UnmarshalStatus([]byte(`{"version":99,"exitCode":1}` + "\n")); !errors.Is(err, ErrVersion) {
		t.Errorf("UnmarshalStatus of version 99 = %v, want ErrVersion", err)
	}
}

// TestAppendReply: Marshal's hand encoding of a Reply writes what
// encoding/json writes, and the replies it leaves to encoding/json
// (an Error, an unusual Type) still round-trip.
func TestAppendReply(t *testing.T) {
	for _, r := range []Reply{
		{Type: ReplyStarted, Pid: 7},
		{Type: ReplyExit},
		{Type: ReplyExit, Code: 137, Signal: 9},
		{Type: ReplyExit, Code: 143, Signal: 15, TimedOut: true},
		{Type: ReplyExit, Code: 143, Signal: 15, Destroyed: true},
		{Type: ReplyExit, Code: -1, Pid: -5, Signal: 1 << 40},
		{Type: ReplyOK},
		{Type: ""},
		{Type: ReplyError, Code: 127, Error: "exec \"x\": <not found> & \u2028"},
		{Type: "we\"ird<", Pid: 3},
	} {
		got, err := Marshal(&r)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", r, err)
		}
		want, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("Marshal(%+v) = %s, encoding/json writes %s", r, got, want)
		}
		var back Reply
		if err := Unmarshal(got, &back); err != nil || back != r {
			t.Errorf("round trip of %+v: %+v, %v", r, back, err)
		}
	}
}

// oddStrings are strings whose JSON encoding has every kind of escape:
// quotes, backslashes, control characters, HTML's <>&, U+2028/9,
// invalid UTF-8, multi-byte runes, DEL.
var oddStrings = []string{
	"", "a", "/bin/true", "with space", `q"uote`, `back\slash`, "tab\there", "nl\nx\r\b\f",
	"\x00\x01\x1f\x7f", "<script>&amp;", "\u2028\u2029", "caf\u00e9 \u65e5\u672c \U0001f600",
	"bad\xffutf8\xc3", "\xe2\x80", "\xed\xa0\x80", "é\u2027\u202a", "x=" + strings.Repeat("y", 300),
}

// TestAppendRequest: Marshal's hand encoding of a Request writes the
// bytes encoding/json writes, for requests made of odd strings and of
// random ones, and they decode back.
func TestAppendRequest(t *testing.T) {
	reqs := []Request{
		{Op: OpExec, Exec: &Exec{}},
		{Op: OpExec, Exec: &Exec{Args: []string{}}},
		{Op: OpExec, Exec: &Exec{Args: []string{"/bin/true"}}},
		{Op: OpExec, Exec: &Exec{Args: oddStrings, Env: oddStrings, Dir: "/w", User: "1:2", Tty: true, Rows: 24, Cols: 80, LogMax: 1 << 40, TtyLog: true, Main: true, NoStarted: true}},
		{Op: OpExec, Exec: &Exec{Args: []string{"a"}, Env: []string{}, LogMax: -1}},
		{Op: OpSignal, Signal: 15},
		{Op: OpResize, Rows: 65535, Cols: 1},
		{Op: OpDestroy, Grace: 10 * time.Second},
		{Op: OpWait},
		{Op: Op("we\"ird\x00<op>")},
		{Op: OpExec, Signal: -9, Grace: -1, Exec: &Exec{Args: []string{"x"}}},
	}
	for _, s := range oddStrings {
		reqs = append(reqs, Request{Op: OpExec, Exec: &Exec{Args: []string{s, s}, Env: []string{s}, Dir: s, User: s}})
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	reqs = append(reqs, randomRequests(rnd, 2000, func() byte { return byte(rnd.IntN(256)) })...)
	for _, r := range reqs {
		got, err := Marshal(&r)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", r, err)
		}
		want, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("Marshal(%+v) = %s, encoding/json writes %s", r, got, want)
		}
		var back Request
		if err := Unmarshal(got, &back); err != nil {
			t.Fatalf("Unmarshal(%s): %v", got, err)
		}
	}
	// Take and Etc are left to encoding/json, and still encode.
	for _, r := range []Request{
		{Op: OpTake, Take: &Take{Hostname: "h", Leases: 2}},
		{Op: OpEtc, Etc: []File{{}}},
	} {
		got, err := Marshal(&r)
		want, _ := json.Marshal(&r) // the same value, encoded just above without error
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("Marshal(%+v) = %s, %v; want %s", r, got, err, want)
		}
	}
}

// TestParseReply: Unmarshal of a Reply gives what encoding/json gives
// (value and success) for what Marshal writes and for JSON that the hand
// decoder does not take (escapes, spaces, other keys, case, odd numbers),
// and parseReply declines the latter rather than guess.
func TestParseReply(t *testing.T) {
	type input struct {
		b    string
		hand bool // parseReply must take it
	}
	var inputs []input
	for _, r := range []Reply{
		{Type: ReplyStarted, Pid: 7},
		{Type: ReplyExit},
		{Type: ReplyExit, Code: 137, Signal: 9},
		{Type: ReplyExit, Code: 143, Signal: 15, TimedOut: true},
		{Type: ReplyExit, Code: 143, Signal: 15, Destroyed: true},
		{Type: ReplyExit, Code: -1, Pid: -5, Signal: 1 << 40},
		{Type: ReplyOK},
		{Type: ReplyError, Code: 127, Error: `exec "x": not found`},
		{Type: ReplyError, Code: 126, Error: "exec /bin/x: permission denied"},
	} {
		r.Version = Version
		b, err := Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, input{string(b), !bytes.ContainsRune(b, '\\')})
	}
	for _, b := range []string{
		`{}`,
		`{"version":1,"type":"exit","code":0}`,
		`{"version":1,"type":"caf` + "\u00e9" + `"}`,
		`{"version":1,"type":"exit","code":1,"code":2}`,
	} {
		inputs = append(inputs, input{b, true})
	}
	for _, b := range []string{
		`{"version":1,"type":"error","error":"a\"b \u003c \n"}`,
		`{"version":1, "type":"exit"}`,
		` {"version":1}`,
		`{"Version":1,"TYPE":"exit"}`,
		`{"version":1,"type":"exit","extra":3}`,
		`{"version":1,"pid":01}`,
		`{"version":1,"pid":1.0}`,
		`{"version":1,"pid":1e2}`,
		`{"version":1,"pid":-}`,
		`{"version":1,"pid":"7"}`,
		`{"version":1,"pid":null}`,
		`{"version":1,"code":99999999999999999999}`,
		`{"version":1,"type":"bad` + "\xff" + `"}`,
		`{"version":1,"type":"ctl` + "\x01" + `"}`,
		`{"version":1,}`,
		`{"version":1`,
		`{"version":1,"type":"exit"}x`,
		`{"version"}`,
		`{,}`,
		`[1]`,
		``,
		`{"type":"exit"`,
		`{"type":"ex}`,
	} {
		inputs = append(inputs, input{b, false})
	}
	for _, in := range inputs {
		start := Reply{Pid: 42, Error: "kept"} // fields absent from the input stay as they were
		hand := start
		if took := parseReply([]byte(in.b), &hand); took != in.hand {
			t.Errorf("parseReply(%s) took it: %v, want %v", in.b, took, in.hand)
		} else if !took && hand != start {
			t.Errorf("parseReply(%s) declined but changed the Reply to %+v", in.b, hand)
		}
		got, want := start, start
		gotErr := Unmarshal([]byte(in.b), &got)
		wantErr := json.Unmarshal([]byte(in.b), &want)
		if got != want || (gotErr == nil) != (wantErr == nil && want.Version == Version) {
			t.Errorf("Unmarshal(%s) = %+v, %v; encoding/json gives %+v, %v", in.b, got, gotErr, want, wantErr)
		}
	}
}

// TestParseRequest: Unmarshal of a Request gives what encoding/json gives
// (value and success) for what Marshal writes and for JSON the hand
// decoder does not take, and parseRequest takes every request Marshal
// writes without an escape, declining the rest rather than guess.
func TestParseRequest(t *testing.T) {
	type input struct {
		b    string
		hand bool // parseRequest must take it
	}
	var inputs []input
	reqs := []Request{
		{Op: OpExec, Exec: &Exec{}},
		{Op: OpExec, Exec: &Exec{Args: []string{}}},
		{Op: OpExec, Exec: &Exec{Args: []string{"/bin/true"}}},
		{Op: OpExec, Exec: &Exec{Args: []string{"sh", "-c", "echo {a} [b]"}, Env: []string{"A=}", "B=]"}, Dir: "/w", User: "1:2", Tty: true, Rows: 24, Cols: 80, LogMax: 1 << 40, TtyLog: true, Main: true, NoStarted: true}},
		{Op: OpExec, Exec: &Exec{Args: []string{"a"}, Env: []string{}, LogMax: -1}},
		{Op: OpExec, Exec: &Exec{Args: oddStrings, Env: oddStrings}},
		{Op: OpSignal, Signal: 15},
		{Op: OpResize, Rows: 65535, Cols: 1},
		{Op: OpDestroy, Grace: 10 * time.Second},
		{Op: OpWait},
		{Op: OpExec, Signal: -9, Grace: -1, Exec: &Exec{Args: []string{"x"}}},
		{Op: OpTake, Take: &Take{Hostname: "h", Leases: 2}},
		{Op: OpEtc, Etc: []File{{}}},
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	const alphabet = " {}[]\",:\\aé\x01"
	reqs = append(reqs, randomRequests(rnd, 2000, func() byte { return alphabet[rnd.IntN(len(alphabet))] })...)
	for _, r := range reqs {
		b, err := Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, input{string(b), handRequest(&r) && !bytes.ContainsRune(b, '\\')})
	}
	for _, b := range []string{
		`{}`,
		`{"version":1,"op":"exec","exec":{}}`,
		`{"version":1,"op":"exec","exec":{"args":null,"env":[]}}`,
		`{"version":1,"op":"signal","signal":9,"signal":15}`,
		`{"version":1,"op":"exec","exec":{"args":["a"],"args":["b","c"]}}`,
		`{"version":1,"op":"caf` + "\u00e9" + `"}`,
	} {
		inputs = append(inputs, input{b, true})
	}
	for _, b := range []string{
		`{"version":1,"op":"exec","exec":{"args":["a\"b"]}}`,
		`{"version":1, "op":"exec"}`,
		`{"Version":1,"OP":"exec"}`,
		`{"version":1,"op":"exec","extra":3}`,
		`{"version":1,"op":"exec","exec":{"args":["a"],"extra":1}}`,
		`{"version":1,"op":"exec","exec":{"args":["a"]},"exec":{"dir":"/"}}`,
		`{"version":1,"op":"exec","exec":null}`,
		`{"version":1,"op":"exec","exec":{"args":["a"],"x":{"y":1}}}`,
		`{"version":1,"op":"exec","exec":{"args":[1]}}`,
		`{"version":1,"op":"exec","exec":{"args":["a",]}}`,
		`{"version":1,"op":"exec","exec":{"args":["a"}}`,
		`{"version":1,"op":"exec","exec":{"tty":1}}`,
		`{"version":1,"op":"exec","exec":{"tty":True}}`,
		`{"version":1,"rows":65536}`,
		`{"version":1,"rows":-1}`,
		`{"version":1,"cols":1.0}`,
		`{"version":1,"signal":01}`,
		`{"version":1,"grace":1e9}`,
		`{"version":1,"grace":99999999999999999999}`,
		`{"version":1,"signal":null}`,
		`{"version":1,"op":"bad` + "\xff" + `"}`,
		`{"version":1,"op":"ctl` + "\x01" + `"}`,
		`{"version":1,}`,
		`{"version":1`,
		`{"version":1}x`,
		`{"version":1,"exec":{"args":["a"]`,
		`{"version":1,"exec":{"args":["}"]}`,
		`{,}`,
		`[1]`,
		``,
	} {
		inputs = append(inputs, input{b, false})
	}
	for _, in := range inputs {
		var hand Request
		if took := parseRequest([]byte(in.b), &hand); took != in.hand {
			t.Errorf("parseRequest(%s) took it: %v, want %v", in.b, took, in.hand)
		} else if !took && !reflect.DeepEqual(hand, Request{}) {
			t.Errorf("parseRequest(%s) declined but changed the Request to %+v", in.b, hand)
		}
		var got, want Request
		gotErr := Unmarshal([]byte(in.b), &got)
		wantErr := json.Unmarshal([]byte(in.b), &want)
		if !reflect.DeepEqual(got, want) || (gotErr == nil) != (wantErr == nil && want.Version == Version) {
			t.Errorf("Unmarshal(%s) = %+v, %v; encoding/json gives %+v, %v", in.b, got, gotErr, want, wantErr)
		}
	}
	// A Request that has an Exec already is left to encoding/json (which
	// merges into it).
	r := Request{Exec: &Exec{Dir: "/kept"}}
	if parseRequest([]byte(`{"version":1,"exec":{"args":["a"]}}`), &r) {
		t.Error("parseRequest took a request into a Request with an Exec")
	}
}

// randomRequests makes n Requests of OpExec-like shape with random
// strings (up to 11 bytes, each from next) and random flags.
func randomRequests(rnd *rand.Rand, n int, next func() byte) []Request {
	randString := func() string {
		b := make([]byte, rnd.IntN(12))
		for i := range b {
			b[i] = next()
		}
		return string(b)
	}
	reqs := make([]Request, 0, n)
	for range n {
		e := &Exec{Dir: randString(), User: randString(), Tty: rnd.IntN(2) == 0, Rows: uint16(rnd.IntN(3)), LogMax: int64(rnd.IntN(3) - 1), Main: rnd.IntN(2) == 0, NoStarted: rnd.IntN(2) == 0}
		for range rnd.IntN(4) {
			e.Args = append(e.Args, randString())
		}
		for range rnd.IntN(3) {
			e.Env = append(e.Env, randString())
		}
		reqs = append(reqs, Request{Op: Op(randString()), Exec: e, Signal: rnd.IntN(3)})
	}
	return reqs
}
