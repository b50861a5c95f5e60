package procidmap

import (
	"testing"
)

func TestParse(t *testing.T) {
	m := Parse("         0       1000          1\n         1     100000      65536\nbad line\n")
	want := Map{{0, 1000, 1}, {1, 100000, 65536}}
	if len(m) != 2 || m[0] != want[0] || m[1] != want[1] {
		t.Fatalf("Parse = %v, want %v", m, want)
	}
	for id, want := range map[uint32]uint32{0: 1000, 1: 100000, 65536: 165535} {
		if got, ok := m.Outside(id); !ok || got != want {
			t.Errorf("Outside(%d) = %d, %v; want %d", id, got, ok, want)
		}
		if got, ok := m.Inside(want); !ok || got != id {
			t.Errorf("Inside(%d) = %d, %v; want %d", want, got, ok, id)
		}
	}
	for _, id := range []uint32{65537, 4294967295} {
		if m.Maps(id) {
			t.Errorf("Maps(%d) = true", id)
		}
	}
	if _, ok := m.Inside(999); ok {
		t.Error("Inside(999) maps")
	}
	// The initial namespace's map: every id, no overflow at the top.
	all := Parse("0 0 4294967295\n")
	if got, ok := all.Outside(4294967294); !ok || got != 4294967294 {
		t.Errorf("identity Outside(4294967294) = %d, %v", got, ok)
	}
	if all.Maps(4294967295) {
		t.Error("identity maps 4294967295, the invalid id")
	}
}

func TestString(t *testing.T) {
	for _, tc := range []struct {
		m    Map
		want string
	}{
		{Map{{0, 0, 65536}}, "0-65535"},
		{Map{{0, 0, 1}}, "0"},
		{Map{{1, 100000, 65536}, {0, 1000, 1}}, "0-65536"}, // rootless: the caller, then its subuid range
		{Map{{0, 0, 1}, {1000, 1000, 10}}, "0, 1000-1009"},
	} {
		if got := tc.m.String(); got != tc.want {
			t.Errorf("%v.String() = %q, want %q", tc.m, got, tc.want)
		}
	}
}

func TestReadSelf(t *testing.T) {
	m, err := Read("/proc/self/uid_map")
	if err != nil {
		t.Fatal(err)
	}
	if len(m) == 0 {
		t.Fatal("this process's uid_map has no range")
	}
	if _, err := Read("/proc/self/no_such_map"); err == nil {
		t.Error("Read of a missing file: no error")
	}
}
