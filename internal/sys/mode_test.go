package sys

import (
	"io/fs"
	"testing"
)

func TestFileMode(t *testing.T) {
	for _, tc := range []struct {
		in   uint32
		want fs.FileMode
	}{
		{0o755, 0o755},
		{0o40755, 0o755}, // S_IFDIR dropped
		{0o4711, 0o711 | fs.ModeSetuid},
		{0o2770, 0o770 | fs.ModeSetgid},
		{0o1777, 0o777 | fs.ModeSticky},
		{0o7000, fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky},
	} {
		if got := FileMode(tc.in); got != tc.want {
			t.Errorf("FileMode(%#o) = %v, want %v", tc.in, got, tc.want)
		}
		if back := UnixMode(tc.want); back != tc.in&0o7777 {
			t.Errorf("UnixMode(%v) = %#o, want %#o", tc.want, back, tc.in&0o7777)
		}
	}
}
