package nsinit

import "testing"

func TestIDMapString(t *testing.T) {
	for _, tc := range []struct {
		ranges [][2]uint64
		want   string
	}{
		{[][2]uint64{{0, 65536}}, "0-65535"},
		{[][2]uint64{{0, 1}}, "0"},
		{[][2]uint64{{1, 65536}, {0, 1}}, "0-65536"}, // rootless: the caller, then its subuid range
		{[][2]uint64{{0, 1}, {1000, 10}}, "0, 1000-1009"},
	} {
		if got := idMapString(tc.ranges); got != tc.want {
			t.Errorf("idMapString(%v) = %q, want %q", tc.ranges, got, tc.want)
		}
	}
	m := [][2]uint64{{0, 1}, {1, 65536}}
	for id, want := range map[uint32]bool{0: true, 65536: true, 65537: false, 4294967295: false} {
		if got := inIDMap(m, id); got != want {
			t.Errorf("inIDMap(%v, %d) = %v, want %v", m, id, got, want)
		}
	}
}
