//go:build linux

package nsinit

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"strings"
	"testing"

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
	fds, err := ReadMsg(b, make([]byte, 4096), &req)
	if err != nil || req.Op != OpSignal || req.Signal != 15 || len(fds) != 1 {
		t.Fatalf("ReadMsg = %+v, %v, %v", req, fds, err)
	}
	got := os.NewFile(uintptr(fds[0]), "passed")
	defer got.Close()
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
