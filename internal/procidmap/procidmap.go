// Package procidmap reads a user namespace's id map, /proc/PID/uid_map
// or gid_map, and translates ids through it. It is a leaf of the
// standard library only, so that the lean init (nsinit) can link it
// beside the network helpers' launcher (internal/netstack), which
// otherwise each parsed the file by hand.
package procidmap

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Range is one line of a map: Count ids from Inside, in the namespace,
// are Outside onwards in its parent.
type Range struct {
	Inside, Outside, Count uint64
}

// Map is a namespace's id map, as the kernel lists it.
type Map []Range

// Read reads the uid_map or gid_map at path.
func Read(path string) (Map, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(string(b)), nil
}

// Parse reads a map's text; lines that are not three ids are skipped.
func Parse(s string) Map {
	var m Map
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		in, err1 := strconv.ParseUint(f[0], 10, 32)
		out, err2 := strconv.ParseUint(f[1], 10, 32)
		n, err3 := strconv.ParseUint(f[2], 10, 32)
		if err1 == nil && err2 == nil && err3 == nil {
			m = append(m, Range{Inside: in, Outside: out, Count: n})
		}
	}
	return m
}

// Outside translates an id of the namespace to its parent's.
func (m Map) Outside(id uint32) (uint32, bool) {
	for _, r := range m {
		if uint64(id) >= r.Inside && uint64(id)-r.Inside < r.Count {
			return uint32(r.Outside + uint64(id) - r.Inside), true
		}
	}
	return 0, false
}

// Inside translates an id of the parent namespace to the namespace's.
func (m Map) Inside(id uint32) (uint32, bool) {
	for _, r := range m {
		if uint64(id) >= r.Outside && uint64(id)-r.Outside < r.Count {
			return uint32(r.Inside + uint64(id) - r.Outside), true
		}
	}
	return 0, false
}

// Maps reports whether the namespace has id.
func (m Map) Maps(id uint32) bool {
	_, ok := m.Outside(id)
	return ok
}

// String lists the namespace's ids, adjacent ranges merged: "0-65536",
// "0, 1000-1009".
func (m Map) String() string {
	rs := slices.Clone(m)
	slices.SortFunc(rs, func(a, b Range) int { return cmp.Compare(a.Inside, b.Inside) })
	var merged []Range
	for _, r := range rs {
		if n := len(merged); n > 0 && merged[n-1].Inside+merged[n-1].Count == r.Inside {
			merged[n-1].Count += r.Count
			continue
		}
		merged = append(merged, r)
	}
	parts := make([]string, 0, len(merged))
	for _, r := range merged {
		if r.Count == 1 {
			parts = append(parts, strconv.FormatUint(r.Inside, 10))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", r.Inside, r.Inside+r.Count-1))
		}
	}
	return strings.Join(parts, ", ")
}
