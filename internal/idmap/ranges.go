package idmap

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/beamhop/lightbox/internal/jsonlite"
	"golang.org/x/sys/unix"
)

// Private ranges. As real root, every store gets RangeSize uids and gids
// of its own (the same numbers for both), picked like systemd-nspawn's
// --private-users=pick: a block of 65536 ids aligned on 65536, inside
// [RegionFirst, RegionFirst+RegionSlots*RangeSize), that overlaps no
// /etc/subuid or /etc/subgid entry, no id of /etc/passwd or /etc/group, no
// range systemd-nspawn holds (/run/systemd/nspawn-uid) and no other
// store's range.
//
// The region, 0x60000000–0x6fffffff, sits above where useradd hands out
// subordinate ranges (SUB_UID_MAX is 600100000 = 0x23c4_6e20 by default)
// and below 0x70000000, where systemd keeps its dynamic user-namespace and
// "foreign" ranges. Ids below 2^31 stay positive for tools that use a
// signed int.
const (
	RangeSize   = 65536
	RegionFirst = 0x6000_0000
	RegionSlots = 0x1000
)

// DefaultRegistry is where allocated ranges are recorded: one file per
// range, named by its first id in hex, holding the store's path. It lives
// outside every store because ranges must not collide across stores.
const DefaultRegistry = "/var/lib/lightbox-ranges"

// ErrNoRange: every range of the region is held by a store.
var ErrNoRange = errors.New("no free id range")

// Registry allocates private ranges to stores. The zero value uses
// DefaultRegistry and the region above; tests shrink it.
type Registry struct {
	Dir   string // "" = DefaultRegistry
	First uint32 // 0 = RegionFirst
	Slots uint32 // 0 = RegionSlots
	// Files are the id databases checked for ids in use; nil = the
	// system's (/etc/subuid, /etc/subgid, /etc/passwd, /etc/group).
	Files *IDFiles
}

// IDFiles names the files whose ids a range must avoid.
type IDFiles struct {
	SubUID, SubGID, Passwd, Group string
	NspawnDir                     string
}

var systemFiles = IDFiles{
	SubUID: "/etc/subuid", SubGID: "/etc/subgid", Passwd: "/etc/passwd", Group: "/etc/group",
	NspawnDir: "/run/systemd/nspawn-uid",
}

func (g *Registry) dir() string {
	if g.Dir == "" {
		return DefaultRegistry
	}
	return g.Dir
}

func (g *Registry) region() (first, slots uint32) {
	first, slots = g.First, g.Slots
	if first == 0 {
		first = RegionFirst
	}
	if slots == 0 {
		slots = RegionSlots
	}
	return first, slots
}

// entry is one registry file.
type entry struct {
	Store     string    `json:"store"`
	CreatedAt time.Time `json:"createdAt"`
}

// unmarshalEntry decodes a registry file as json.Unmarshal does; the
// files it writes go without encoding/json (Register runs at every
// command's Open as root: package jsonlite).
func unmarshalEntry(b []byte, e *entry) error {
	if v, ok := jsonlite.Parse(b); ok {
		var got entry
		ok = v.Fields(func(key string, v jsonlite.Value) bool {
			switch key {
			case "store":
				got.Store, ok = v.String()
			case "createdAt":
				got.CreatedAt, ok = v.Time()
			default:
				return false
			}
			return ok
		})
		if ok {
			*e = got
			return nil
		}
	}
	return json.Unmarshal(b, e)
}

// RangeMapping is the mapping of a store given the private range that
// starts at host id base: container ids 0–65535 are base…base+65535, for
// uids and gids alike.
func RangeMapping(base uint32) Mapping {
	r := []Range{{ContainerID: 0, HostID: base, Size: RangeSize}}
	return Mapping{UIDs: r, GIDs: []Range{r[0]}}
}

// PrivateRange returns the first host id of m's private range and true
// when m is such a mapping (one RangeSize block, uids and gids alike).
func (m Mapping) PrivateRange() (uint32, bool) {
	if len(m.UIDs) != 1 || len(m.GIDs) != 1 || m.Subordinate {
		return 0, false
	}
	u, g := m.UIDs[0], m.GIDs[0]
	if u != g || u.ContainerID != 0 || u.Size != RangeSize || u.HostID == 0 {
		return 0, false
	}
	return u.HostID, true
}

// IsIdentity reports whether m maps every id to itself.
func (m Mapping) IsIdentity() bool { return m.Equal(Identity()) }

// Allocate picks a free range for the store at path store (absolute),
// records it, and calls commit with its mapping while the registry is
// still locked, so that the store can record the range (in its
// store.json) before any other allocation looks at it. When commit fails
// the range is released. holds tells whether the store at a path still
// holds a range (its store.json records it); a range whose store is gone
// is reclaimed here, lazily.
func (g *Registry) Allocate(store string, holds func(store string, base uint32) bool, commit func(Mapping) error) (Mapping, error) {
	dir := g.dir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Mapping{}, fmt.Errorf("allocate id range: %w", err)
	}
	unlock, err := lock(dir)
	if err != nil {
		return Mapping{}, fmt.Errorf("allocate id range: %w", err)
	}
	defer unlock()
	used, err := g.inUse(dir, holds)
	if err != nil {
		return Mapping{}, fmt.Errorf("allocate id range: %w", err)
	}
	files := g.Files
	if files == nil {
		files = &systemFiles
	}
	taken := idsInUse(files)
	first, slots := g.region()
	for i := uint32(0); i < slots; i++ {
		base := first + i*RangeSize
		if _, ok := used[base]; ok || taken.overlaps(base, RangeSize) {
			continue
		}
		p := filepath.Join(dir, fmt.Sprintf("%08x", base))
		if err := writeEntry(dir, base, store, false); err != nil {
			return Mapping{}, fmt.Errorf("allocate id range: %w", err)
		}
		m := RangeMapping(base)
		if werr := commit(m); werr != nil {
			// The range was never used; a record left would hold it
			// for a store that does not have it, so that is reported.
			if rerr := os.Remove(p); rerr != nil {
				werr = errors.Join(werr, fmt.Errorf("release id range %s: %w", p, rerr))
			}
			return Mapping{}, werr
		}
		return m, nil
	}
	return Mapping{}, fmt.Errorf("allocate id range for %s: %w: the ranges %s (registry %s) are all held by stores%s; "+
		"remove a store you no longer need (its range is reused once its store.json is gone)",
		store, ErrNoRange, describeRegion(first, slots), dir, describeUsed(used))
}

// Register records that the store at path holds the range at base, when
// no other store holds it: a registry that lost the entry, or whose entry
// does not parse (a machine that lost power before an older lightbox's
// unsynced entry reached the disk left it empty; Allocate would hand the
// range to another store). It reports the store that holds it otherwise.
func (g *Registry) Register(store string, base uint32) (holder string, err error) {
	dir := g.dir()
	p := filepath.Join(dir, fmt.Sprintf("%08x", base))
	if holder, ok := readEntry(p); ok {
		return holder, nil // every Open as root: no lock, no write
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	unlock, err := lock(dir)
	if err != nil {
		return "", err
	}
	defer unlock()
	if holder, ok := readEntry(p); ok {
		return holder, nil // another Register or an Allocate wrote it meanwhile
	}
	_, err = os.Lstat(p)
	if err := writeEntry(dir, base, store, err == nil); err != nil {
		return "", err
	}
	return store, nil
}

// readEntry returns the store the registry file p names, and false when p
// is missing or does not parse.
func readEntry(p string) (string, bool) {
	b, err := os.ReadFile(p)
	if err != nil {
		return "", false
	}
	var e entry
	if unmarshalEntry(b, &e) != nil {
		return "", false
	}
	return e.Store, true
}

// tmpEntryPrefix names an entry being written; inUse ignores such files
// and, under the lock (which every writer holds), removes them.
const tmpEntryPrefix = ".tmp-"

// writeEntry records store as the holder of the range at base, whole or
// not at all: written to a temporary file and synced, then linked to its
// name (renamed over it when replace), and the directory synced. A
// registry entry is trusted from then on (store.json is written next and
// names the range), so an entry lost or empty after a power cut would
// let the range go to a second store. The caller holds the lock.
func writeEntry(dir string, base uint32, store string, replace bool) error {
	b, _ := json.Marshal(entry{Store: store, CreatedAt: time.Now().UTC()})
	f, err := os.CreateTemp(dir, tmpEntryPrefix+"*") // mode 0600
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }() // the link's other name; gone after a rename; a leftover is inUse's
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	p := filepath.Join(dir, fmt.Sprintf("%08x", base))
	if replace {
		err = os.Rename(tmp, p)
	} else {
		err = os.Link(tmp, p) // fails on an existing entry, as O_EXCL would
	}
	if err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// lock takes the registry's lock (flock of dir/.lock), which Allocate,
// and Register when it writes, hold.
func lock(dir string) (unlock func(), _ error) {
	lk, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(lk.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		_ = lk.Close()
		return nil, &os.PathError{Op: "flock", Path: lk.Name(), Err: err}
	}
	return func() { _ = lk.Close() }, nil // nothing written through the lock file; close frees the flock even when it reports an error
}

// inUse reads the registry, removing the entries whose store no longer
// holds its range, and returns the others by first id. An entry that does
// not parse (left empty by a power cut before an older lightbox's write
// reached the disk: entries are written whole now) names no store to ask,
// so its range stays taken, by "" (describeUsed says so), until the store
// that holds it opens again and Register rewrites it: handing it out
// could give a second store the ids of a first one's sandboxes.
func (g *Registry) inUse(dir string, holds func(string, uint32) bool) (map[uint32]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	used := map[uint32]string{}
	for _, de := range ents {
		if strings.HasPrefix(de.Name(), tmpEntryPrefix) {
			_ = os.Remove(filepath.Join(dir, de.Name())) // a writer killed before its link: never an entry
			continue
		}
		base, err := strconv.ParseUint(de.Name(), 16, 32)
		if err != nil || len(de.Name()) != 8 {
			continue
		}
		p := filepath.Join(dir, de.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var e entry
		if unmarshalEntry(b, &e) != nil {
			used[uint32(base)] = ""
			continue
		}
		if !holds(e.Store, uint32(base)) {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
			continue
		}
		used[uint32(base)] = e.Store
	}
	return used, nil
}

func describeRegion(first, slots uint32) string {
	return fmt.Sprintf("%d–%d", first, uint64(first)+uint64(slots)*RangeSize-1)
}

func describeUsed(used map[uint32]string) string {
	bases := make([]uint32, 0, len(used))
	for b := range used {
		bases = append(bases, b)
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	var s []string
	for i, b := range bases {
		if i == 20 {
			s = append(s, fmt.Sprintf("and %d more", len(bases)-i))
			break
		}
		by := used[b]
		if by == "" {
			by = "an unreadable entry (" + fmt.Sprintf("%08x", b) + "; remove it if no store uses that range)"
		}
		s = append(s, fmt.Sprintf("%d–%d by %s", b, uint64(b)+RangeSize-1, by))
	}
	if len(s) == 0 {
		return " or by ids in use on this host"
	}
	return " (" + strings.Join(s, ", ") + ") or by ids in use on this host"
}

// idSet is a set of [first, first+n) intervals.
type idSet [][2]uint64

func (s idSet) overlaps(first, n uint32) bool {
	a, b := uint64(first), uint64(first)+uint64(n)
	for _, iv := range s {
		if iv[0] < b && a < iv[1] {
			return true
		}
	}
	return false
}

// idsInUse reads the ids a range must avoid. Unreadable files count as
// empty: a host without /etc/subuid has no subordinate ranges.
func idsInUse(f *IDFiles) idSet {
	var s idSet
	for _, p := range []string{f.SubUID, f.SubGID} {
		eachLine(p, func(fields []string) {
			if len(fields) != 3 {
				return
			}
			start, err1 := strconv.ParseUint(fields[1], 10, 32)
			count, err2 := strconv.ParseUint(fields[2], 10, 32)
			if err1 == nil && err2 == nil {
				s = append(s, [2]uint64{start, start + count})
			}
		})
	}
	for _, p := range []string{f.Passwd, f.Group} {
		eachLine(p, func(fields []string) {
			if len(fields) < 3 {
				return
			}
			if id, err := strconv.ParseUint(fields[2], 10, 32); err == nil {
				s = append(s, [2]uint64{id, id + 1})
			}
		})
	}
	if f.NspawnDir != "" {
		if ents, err := os.ReadDir(f.NspawnDir); err == nil {
			for _, e := range ents {
				if id, err := strconv.ParseUint(e.Name(), 10, 32); err == nil {
					s = append(s, [2]uint64{id, id + RangeSize})
				}
			}
		}
	}
	return s
}

func eachLine(path string, fn func([]string)) {
	f, err := os.Open(path)
	if err != nil {
		return // missing: no ids from it
	}
	defer func() { _ = f.Close() }() // read-only
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fn(strings.Split(line, ":"))
	}
}
