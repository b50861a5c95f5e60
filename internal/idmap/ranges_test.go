package idmap

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/jsonlite"
)

// testRegistry is a registry in a temp dir over a region of n slots, with
// id files the test writes.
func testRegistry(t *testing.T, n uint32) (*Registry, *IDFiles) {
	t.Helper()
	d := t.TempDir()
	f := &IDFiles{
		SubUID: filepath.Join(d, "subuid"), SubGID: filepath.Join(d, "subgid"),
		Passwd: filepath.Join(d, "passwd"), Group: filepath.Join(d, "group"),
		NspawnDir: filepath.Join(d, "nspawn"),
	}
	return &Registry{Dir: filepath.Join(d, "ranges"), First: RegionFirst, Slots: n, Files: f}, f
}

// fakeStores records which store holds which range, as store.json would.
type fakeStores map[string]uint32

func (s fakeStores) holds(store string, base uint32) bool { b, ok := s[store]; return ok && b == base }

func (s fakeStores) alloc(t *testing.T, g *Registry, store string) (Mapping, error) {
	t.Helper()
	return g.Allocate(store, s.holds, func(m Mapping) error {
		b, _ := m.PrivateRange()
		s[store] = b
		return nil
	})
}

func TestAllocateDisjointAndReused(t *testing.T) {
	g, _ := testRegistry(t, 3)
	st := fakeStores{}
	a, err := st.alloc(t, g, "/a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := st.alloc(t, g, "/b")
	if err != nil {
		t.Fatal(err)
	}
	ab, _ := a.PrivateRange()
	bb, _ := b.PrivateRange()
	if ab == bb || (ab < bb && ab+RangeSize > bb) || (bb < ab && bb+RangeSize > ab) {
		t.Fatalf("ranges of two stores overlap: %s and %s", a, b)
	}
	// A store that is gone gives its range back, lazily.
	delete(st, "/a")
	c, err := st.alloc(t, g, "/c")
	if err != nil {
		t.Fatal(err)
	}
	if cb, _ := c.PrivateRange(); cb != ab {
		t.Errorf("after /a was removed, /c got %s, want /a's range %s again", c, a)
	}
	// A store that records another range than its entry no longer holds it.
	st["/b"] = 1
	if _, err := st.alloc(t, g, "/d"); err != nil {
		t.Fatal(err)
	}
	if d := st["/d"]; d != bb {
		t.Errorf("/d got range at %d, want /b's %d (its store.json no longer records it)", d, bb)
	}
}

func TestAllocateExhausted(t *testing.T) {
	g, _ := testRegistry(t, 2)
	st := fakeStores{}
	for _, s := range []string{"/one", "/two"} {
		if _, err := st.alloc(t, g, s); err != nil {
			t.Fatal(err)
		}
	}
	_, err := st.alloc(t, g, "/three")
	if !errors.Is(err, ErrNoRange) {
		t.Fatalf("third store in a region of two: err = %v, want ErrNoRange", err)
	}
	for _, want := range []string{"/one", "/two", "1610612736–1610678271"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if _, ok := st["/three"]; ok {
		t.Error("a failed allocation recorded a range")
	}
}

func TestAllocateAvoidsIDsInUse(t *testing.T) {
	g, f := testRegistry(t, 4)
	// A subuid entry over slot 0, a group id in slot 1, nspawn's lock in
	// slot 2: only slot 3 is free.
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(f.SubUID, "# comment\nlbtest:1610612736:65536\n")
	write(f.SubGID, "")
	write(f.Passwd, "root:x:0:0::/root:/bin/sh\n")
	write(f.Group, "odd:x:1610678300:\n")
	if err := os.MkdirAll(filepath.Join(f.NspawnDir, "1610743808"), 0o700); err != nil {
		t.Fatal(err)
	}
	st := fakeStores{}
	m, err := st.alloc(t, g, "/s")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := m.PrivateRange(); b != RegionFirst+3*RangeSize {
		t.Errorf("allocated %s, want the range at %d (the others overlap ids in use)", m, RegionFirst+3*RangeSize)
	}
}

func TestAllocateCommitFailureReleases(t *testing.T) {
	g, _ := testRegistry(t, 1)
	boom := errors.New("boom")
	_, err := g.Allocate("/x", func(string, uint32) bool { return true }, func(Mapping) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	st := fakeStores{}
	if _, err := st.alloc(t, g, "/y"); err != nil {
		t.Fatalf("the range of a failed commit was not released: %v", err)
	}
}

func TestPrivateRange(t *testing.T) {
	for _, tc := range []struct {
		m    Mapping
		want bool
	}{
		{RangeMapping(RegionFirst), true},
		{Identity(), false},
		{Mapping{UIDs: []Range{{0, 1000, 1}}, GIDs: []Range{{0, 1000, 1}}}, false},
		{Mapping{UIDs: []Range{{0, 1000, 1}, {1, 100000, 65536}}, GIDs: []Range{{0, 1000, 1}, {1, 100000, 65536}}, Subordinate: true}, false},
	} {
		if _, got := tc.m.PrivateRange(); got != tc.want {
			t.Errorf("PrivateRange(%s) = %v, want %v", tc.m, got, tc.want)
		}
	}
}

// TestUnmarshalEntry: a registry entry decodes as encoding/json decodes
// it, by hand when Register or Allocate wrote it.
func TestUnmarshalEntry(t *testing.T) {
	written, err := json.Marshal(entry{Store: "/var/lib/lightbox", CreatedAt: time.Date(2026, 11, 30, 20, 39, 37, 584986269, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := jsonlite.Parse(written); !ok || !v.Fields(func(k string, _ jsonlite.Value) bool { return k == "store" || k == "createdAt" }) {
		t.Errorf("jsonlite declined an entry as Register writes it: %s", written)
	}
	inputs := []string{string(written), `{}`, `{"store":"a\"b"}`, `{"Store":"x"}`, `{"store":1}`, `{"createdAt":"x"}`, `{"store":"x","y":1}`, `null`, ``}
	for i := range written {
		inputs = append(inputs, string(written[:i]))
	}
	for _, in := range inputs {
		var got, want entry
		gotErr := unmarshalEntry([]byte(in), &got)
		wantErr := json.Unmarshal([]byte(in), &want)
		if got.Store != want.Store || !got.CreatedAt.Equal(want.CreatedAt) || (gotErr == nil) != (wantErr == nil) {
			t.Errorf("unmarshalEntry(%s) = %+v, %v; encoding/json gives %+v, %v", in, got, gotErr, want, wantErr)
		}
	}
}

func TestMapsHost(t *testing.T) {
	rootless := Mapping{
		UIDs: []Range{{0, 1000, 1}, {1, 100000, 65536}},
		GIDs: []Range{{0, 1000, 1}},
	}
	for host, want := range map[uint32]bool{0: false, 999: false, 1000: true, 1001: false, 100000: true, 165535: true, 165536: false} {
		if got := rootless.MapsHostUID(host); got != want {
			t.Errorf("rootless MapsHostUID(%d) = %v, want %v", host, got, want)
		}
	}
	if rootless.MapsHostGID(100000) {
		t.Error("MapsHostGID(100000) with only gid 1000 mapped")
	}
	if !Identity().MapsHostUID(0) || !Identity().MapsHostGID(4294967294) {
		t.Error("the identity mapping does not map host root or the top id")
	}
}

// TestEmptyEntryKeepsRange: an entry a power cut left empty (an older
// lightbox wrote it without a sync, and store.json, synced, names the
// range) keeps its range from a new store, and the store that holds it
// writes it again at its next Open (Register). Before, Allocate removed
// the entry and gave the range to the next store: two stores' sandboxes
// on the same host ids; and Register answered "" (another store).
func TestEmptyEntryKeepsRange(t *testing.T) {
	g, _ := testRegistry(t, 2)
	st := fakeStores{}
	a, err := st.alloc(t, g, "/a")
	if err != nil {
		t.Fatal(err)
	}
	ab, _ := a.PrivateRange()
	p := filepath.Join(g.Dir, fmt.Sprintf("%08x", ab))
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	b, err := st.alloc(t, g, "/b")
	if err != nil {
		t.Fatal(err)
	}
	if bb, _ := b.PrivateRange(); bb == ab {
		t.Fatalf("/b got %s, the range of /a, whose entry was empty", b)
	}
	_, err = st.alloc(t, g, "/c")
	if !errors.Is(err, ErrNoRange) || !strings.Contains(err.Error(), "unreadable entry") {
		t.Errorf("a third store in a region of two, one entry empty: %v, want ErrNoRange naming the unreadable entry", err)
	}
	holder, err := g.Register("/a", ab)
	if err != nil || holder != "/a" {
		t.Fatalf("Register(/a) over its empty entry = %q, %v; want /a", holder, err)
	}
	var e entry
	if b, err := os.ReadFile(p); err != nil || unmarshalEntry(b, &e) != nil || e.Store != "/a" {
		t.Errorf("the entry after Register: %q, %v; want /a", b, err)
	}
	if holder, err := g.Register("/a", ab); err != nil || holder != "/a" {
		t.Errorf("Register(/a) again = %q, %v", holder, err)
	}
	if ents, _ := os.ReadDir(g.Dir); len(ents) != 3 { // .lock and two entries
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("registry holds %v, want .lock and the two entries (no temporary file left)", names)
	}
}
