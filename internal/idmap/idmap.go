// Package idmap decides and describes a store's id mapping: which host uids
// and gids appear inside every sandbox (and every unpacked layer) of a
// store. As real root it is a private range of 65536 ids picked for the
// store (ranges.go: Registry), or the identity when the store was made
// with it on purpose (or before private ranges existed); rootless it is
// the caller mapped to root plus the caller's /etc/subuid and /etc/subgid
// range when newuidmap and newgidmap exist, else the caller's single id.
package idmap

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"

	"github.com/beamhop/lightbox/internal/jsonlite"
)

// Range maps Size ids starting at ContainerID inside to HostID outside.
type Range struct {
	ContainerID uint32 `json:"containerID"`
	HostID      uint32 `json:"hostID"`
	Size        uint32 `json:"size"`
}

// Mapping is a store's id mapping.
type Mapping struct {
	UIDs []Range `json:"uids"`
	GIDs []Range `json:"gids"`
	// Subordinate is true when the mapping includes the caller's
	// subordinate range (/etc/subuid, /etc/subgid), so that the maps must
	// be written by newuidmap and newgidmap (rootless only). The JSON name
	// stays "helper", as stores made before the rename recorded it.
	Subordinate bool `json:"helper,omitempty"`
}

// Identity is the mapping of real root: every id is itself.
func Identity() Mapping {
	all := []Range{{0, 0, 4294967295}}
	return Mapping{UIDs: all, GIDs: all}
}

// Detect returns the mapping the current process would use for a new
// store when it is not real root (real root picks a private range with a
// Registry, or the identity on request); as real root it returns the
// identity.
func Detect() (Mapping, error) {
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		return Identity(), nil
	}
	single := Mapping{
		UIDs: []Range{{0, uint32(uid), 1}},
		GIDs: []Range{{0, uint32(gid), 1}},
	}
	if _, err := LookHelper("newuidmap"); err != nil {
		return single, nil
	}
	if _, err := LookHelper("newgidmap"); err != nil {
		return single, nil
	}
	var names []string
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		names = append(names, u.Username)
	}
	names = append(names, strconv.Itoa(uid))
	subu, err := subRange("/etc/subuid", names)
	if err != nil || subu == nil {
		return single, nil
	}
	gnames := names
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		gnames = append([]string{g.Name}, gnames...)
	}
	subg, err := subRange("/etc/subgid", append(names, gnames...))
	if err != nil || subg == nil {
		return single, nil
	}
	return Mapping{
		UIDs:        []Range{{0, uint32(uid), 1}, {1, subu.HostID, subu.Size}},
		GIDs:        []Range{{0, uint32(gid), 1}, {1, subg.HostID, subg.Size}},
		Subordinate: true,
	}, nil
}

// LookHelper finds newuidmap or newgidmap in PATH or /usr/bin.
func LookHelper(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := "/usr/bin/" + name
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not found (install Debian's uidmap package): %w", name, err)
	}
	return p, nil
}

// subRange returns the first range in file (subuid/subgid format) whose
// owner is one of names.
func subRange(file string, names []string) (*Range, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // read-only
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(parts) != 3 {
			continue
		}
		for _, n := range names {
			if parts[0] != n {
				continue
			}
			start, err1 := strconv.ParseUint(parts[1], 10, 32)
			count, err2 := strconv.ParseUint(parts[2], 10, 32)
			if err1 != nil || err2 != nil || count == 0 {
				continue
			}
			return &Range{ContainerID: 1, HostID: uint32(start), Size: uint32(count)}, nil
		}
	}
	return nil, sc.Err()
}

// Single reports whether only one uid is mapped: files cannot be given
// other owners inside.
func (m Mapping) Single() bool {
	var n uint64
	for _, r := range m.UIDs {
		n += uint64(r.Size)
	}
	return n <= 1
}

// Equal reports whether m and o map the same ids.
func (m Mapping) Equal(o Mapping) bool { return m.String() == o.String() }

// String renders the mapping as "uid 0:1000:1,1:100000:65536 gid …".
func (m Mapping) String() string {
	f := func(rs []Range) string {
		var s []string
		for _, r := range rs {
			s = append(s, fmt.Sprintf("%d:%d:%d", r.ContainerID, r.HostID, r.Size))
		}
		return strings.Join(s, ",")
	}
	return "uid " + f(m.UIDs) + " gid " + f(m.GIDs)
}

// Key is a short stable digest of the mapping, used to key per-mapping
// caches such as unpacked layers.
func (m Mapping) Key() string {
	b, _ := json.Marshal(struct{ U, G []Range }{m.UIDs, m.GIDs})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

// HostUID returns the host uid that container uid maps to.
func (m Mapping) HostUID(id uint32) (uint32, bool) { return toHost(m.UIDs, id) }

// HostGID returns the host gid that container gid maps to.
func (m Mapping) HostGID(id uint32) (uint32, bool) { return toHost(m.GIDs, id) }

// MapsHostUID reports whether host uid has an id in the container: a
// file it owns is one the container's root may chmod, and with
// DAC_OVERRIDE reopen for writing.
func (m Mapping) MapsHostUID(host uint32) bool { return mapsHost(m.UIDs, host) }

// MapsHostGID reports whether host gid has an id in the container.
func (m Mapping) MapsHostGID(host uint32) bool { return mapsHost(m.GIDs, host) }

func mapsHost(rs []Range, host uint32) bool {
	for _, r := range rs {
		if host >= r.HostID && uint64(host) < uint64(r.HostID)+uint64(r.Size) {
			return true
		}
	}
	return false
}

func toHost(rs []Range, id uint32) (uint32, bool) {
	for _, r := range rs {
		if id >= r.ContainerID && uint64(id) < uint64(r.ContainerID)+uint64(r.Size) {
			return r.HostID + (id - r.ContainerID), true
		}
	}
	return 0, false
}

// Args renders ranges as the "inside outside count" triples that
// newuidmap/newgidmap take as arguments.
func Args(rs []Range) []string {
	var a []string
	for _, r := range rs {
		a = append(a, strconv.FormatUint(uint64(r.ContainerID), 10), strconv.FormatUint(uint64(r.HostID), 10), strconv.FormatUint(uint64(r.Size), 10))
	}
	return a
}

// MappingFromJSON reads a Mapping from v as encoding/json would decode
// it, for the subset jsonlite takes: ok false hands the whole file to
// encoding/json (TestMappingFromJSON).
func MappingFromJSON(v jsonlite.Value) (m Mapping, ok bool) {
	ok = v.Fields(func(key string, v jsonlite.Value) bool {
		switch key {
		case "uids":
			m.UIDs, ok = rangesFromJSON(v)
		case "gids":
			m.GIDs, ok = rangesFromJSON(v)
		case "helper":
			m.Subordinate, ok = v.Bool, v.Kind == jsonlite.Bool
		default:
			return false
		}
		return ok
	})
	return m, ok
}

func rangesFromJSON(v jsonlite.Value) ([]Range, bool) {
	if v.Kind != jsonlite.Array {
		return nil, false
	}
	out := make([]Range, 0, len(v.Elems))
	for _, e := range v.Elems {
		var r Range
		ok := e.Fields(func(key string, v jsonlite.Value) bool {
			n, ok := v.Uint(32)
			switch key {
			case "containerID":
				r.ContainerID = uint32(n)
			case "hostID":
				r.HostID = uint32(n)
			case "size":
				r.Size = uint32(n)
			default:
				return false
			}
			return ok
		})
		if !ok {
			return nil, false
		}
		out = append(out, r)
	}
	return out, true
}
