//go:build linux

package snapshot

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReadGrowing: the buffer grows until what is read fits, whether
// the call says ERANGE (xattrs) or fills the buffer (readlink).
func TestReadGrowing(t *testing.T) {
	want := bytes.Repeat([]byte("x"), 1000)
	eintr := 2
	for _, tc := range []struct {
		name string
		read func([]byte) (int, error)
		want []byte
		err  error
	}{
		{"erange", func(b []byte) (int, error) {
			if len(b) < len(want) {
				return -1, unix.ERANGE
			}
			return copy(b, want), nil
		}, want, nil},
		{"cut", func(b []byte) (int, error) { return copy(b, want), nil }, want, nil},
		{"exact", func(b []byte) (int, error) { return copy(b, want[:256]), nil }, want[:256], nil},
		{"empty", func(b []byte) (int, error) { return 0, nil }, []byte{}, nil},
		{"eintr", func(b []byte) (int, error) {
			if eintr--; eintr >= 0 {
				return -1, unix.EINTR
			}
			return copy(b, "ok"), nil
		}, []byte("ok"), nil},
		{"error", func(b []byte) (int, error) { return -1, unix.EACCES }, nil, unix.EACCES},
		{"limit", func(b []byte) (int, error) { return -1, unix.ERANGE }, nil, unix.ERANGE},
	} {
		got, err := readGrowing(tc.read)
		if !bytes.Equal(got, tc.want) || !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
			t.Errorf("%s: readGrowing = %d bytes, %v; want %d bytes, %v", tc.name, len(got), err, len(tc.want), tc.err)
		}
	}
}
