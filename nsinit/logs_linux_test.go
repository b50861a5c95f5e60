//go:build linux

package nsinit

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRelayTty: a terminal's output reaches its log through a relay (a
// capped log, and one without a cap that only appends), the relay
// resizes the terminal while it runs, and it ends, closing the master
// and the log, once the terminal's last holder is gone.
func TestRelayTty(t *testing.T) {
	for _, max := range []int64{0, 1 << 20} {
		m, sl, err := openPty(24, 80)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Join(t.TempDir(), "stdout.log")
		if err := os.WriteFile(name, []byte("old\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		flags := os.O_WRONLY | os.O_APPEND // as the runtime opens an uncapped log
		if max > 0 {
			flags = os.O_RDWR
		}
		f, err := os.OpenFile(name, flags, 0)
		if err != nil {
			t.Fatal(err)
		}
		rl, err := relayTty(m, f, max)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sl.WriteString("hello\n"); err != nil {
			t.Fatal(err)
		}
		if err := rl.resize(40, 120); err != nil {
			t.Fatalf("max %d: resize: %v", max, err)
		}
		ws, err := unix.IoctlGetWinsize(int(sl.Fd()), unix.TIOCGWINSZ)
		if err != nil {
			t.Fatal(err)
		}
		if ws.Row != 40 || ws.Col != 120 {
			t.Errorf("max %d: the terminal's size after a resize = %dx%d, want 40x120", max, ws.Row, ws.Col)
		}
		if err := sl.Close(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for running(rl) {
			if time.Now().After(deadline) {
				t.Fatalf("max %d: the relay still runs 10s after its terminal's last holder left", max)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := rl.resize(30, 100); err == nil {
			t.Errorf("max %d: resize after the relay ended succeeded", max)
		}
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != "old\nhello\r\n" {
			t.Errorf("max %d: log = %q, want %q", max, b, "old\nhello\r\n")
		}
	}
}

// running says whether rl is among the running relays.
func running(rl *relay) bool {
	relays.Lock()
	defer relays.Unlock()
	_, ok := relays.set[rl]
	return ok
}

// TestCappedLogCuts: each cut of a capped log counts itself in
// CutsXattr, odd while it moves bytes and even once DroppedXattr says
// how far they moved (the reader's seqlock, runtime's logStream).
func TestCappedLogCuts(t *testing.T) {
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "stdout.log"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fsetxattr(int(f.Fd()), CutsXattr, []byte("0"), 0); err != nil {
		t.Skipf("user xattrs on %s: %v", f.Name(), err)
	}
	l := NewCappedLog(f, 100)
	count := func(name string) string {
		b := make([]byte, 32)
		n, err := unix.Fgetxattr(int(f.Fd()), name, b)
		if err != nil {
			return err.Error()
		}
		return string(b[:n])
	}
	for i := range 3 {
		_, _ = l.Write([]byte("0123456789012345678901234567890123456789012345678901234567890123456789")) // 70 bytes
		if got, want := count(CutsXattr), []string{"0", "2", "4"}[i]; got != want {
			t.Errorf("after write %d: %s = %s, want %s", i+1, CutsXattr, got, want)
		}
	}
	if got := count(DroppedXattr); got != "90" {
		t.Errorf("%s = %s, want 90 (20 then 70 dropped as 140 and 120 bytes were cut to 50)", DroppedXattr, got)
	}
}
