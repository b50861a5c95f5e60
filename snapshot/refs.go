package snapshot

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/jsonlite"
	"github.com/beamhop/lightbox/internal/names"
	"github.com/beamhop/lightbox/internal/sys"
	"github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// The layout's index.json holds every snapshot and every build step the
// build cache keeps, so it grows with each build: parsing it costs a
// launch ~10 µs with three entries and milliseconds with a thousand.
// refs.json caches the named entries only, keyed by the sha256 of the
// index.json it was made from: a launch reads and hashes the index (70×
// cheaper than parsing it) and reads the small cache. The cache checks
// itself, so nothing that writes the index need know of it; a stale,
// torn or unreadable cache is rebuilt from the index.
const refsFile = "refs.json"

// refsTmpPrefix names the cache's temporary files (cleanTmp removes those
// a killed process left).
const refsTmpPrefix = ".refs.json-"

type refsCache struct {
	// Index is the digest of the index.json the cache was made from.
	Index string `json:"index"`
	// Refs are the index's named entries, by name (the first of a name,
	// as Get finds it).
	Refs map[string]ispec.Descriptor `json:"refs"`
}

// lookupRef returns the index entry of the snapshot called name;
// errdefs.ErrNotFound if there is none. Called under the index lock.
func (s *Store) lookupRef(name string) (ispec.Descriptor, error) {
	data, err := readCapped(filepath.Join(s.ociDir(), "index.json"))
	if err != nil {
		return ispec.Descriptor{}, fmt.Errorf("snapshot %s: index: %w", name, err)
	}
	sum := digest.SHA256.FromBytes(data).String()
	var c refsCache
	if b, err := readCapped(filepath.Join(s.root, refsFile)); err != nil || !parseRefs(b, &c) || c.Index != sum {
		manifests, ok := parseIndexLite(data)
		if !ok {
			var idx ispec.Index
			if err := json.Unmarshal(data, &idx); err != nil {
				return ispec.Descriptor{}, fmt.Errorf("snapshot %s: index: %w", name, err)
			}
			manifests = idx.Manifests
		}
		c = refsCache{Index: sum, Refs: map[string]ispec.Descriptor{}}
		for _, d := range manifests {
			n, ok := d.Annotations[ispec.AnnotationRefName]
			if _, dup := c.Refs[n]; ok && !dup && names.Valid(n) {
				c.Refs[n] = d
			}
		}
		if err := s.writeRefs(c); err != nil {
			s.log.Debug("cache the snapshot names", "err", err) // a cache: the next launch rebuilds it
		}
	}
	d, ok := c.Refs[name]
	if !ok {
		return ispec.Descriptor{}, fmt.Errorf("snapshot %s: %w", name, errdefs.ErrNotFound)
	}
	return d, nil
}

// parseRefs reads refs.json into c, with jsonlite when it takes the file
// (it does what writeRefs writes, unless a value needs an escape or a
// descriptor has more than a media type, digest, size and annotations),
// else with encoding/json; false if neither can.
func parseRefs(b []byte, c *refsCache) bool {
	if parseRefsLite(b, c) {
		return true
	}
	*c = refsCache{}
	return json.Unmarshal(b, c) == nil
}

// parseRefsLite is parseRefs with jsonlite only.
func parseRefsLite(b []byte, c *refsCache) bool {
	v, ok := jsonlite.Parse(b)
	if !ok {
		return false
	}
	return v.Fields(func(key string, v jsonlite.Value) bool {
		switch key {
		case "index":
			var ok bool
			c.Index, ok = v.String()
			return ok
		case "refs":
			c.Refs = map[string]ispec.Descriptor{}
			return v.Fields(func(name string, v jsonlite.Value) bool {
				d, ok := descriptorLite(v)
				c.Refs[name] = d
				return ok
			})
		}
		return false
	})
}

// parseIndexLite reads the manifests of index.json with jsonlite, when it
// is what umoci writes for this store (a schema version, a media type,
// and manifests that descriptorLite takes); false for anything else,
// which the caller hands to encoding/json. Rebuilding refs.json after
// each change of the index then costs no encoding/json either.
func parseIndexLite(b []byte) ([]ispec.Descriptor, bool) {
	v, ok := jsonlite.Parse(b)
	if !ok {
		return nil, false
	}
	var out []ispec.Descriptor
	ok = v.Fields(func(key string, v jsonlite.Value) bool {
		switch key {
		case "schemaVersion":
			_, ok := v.Int(64)
			return ok
		case "mediaType":
			_, ok := v.String()
			return ok
		case "manifests":
			if v.Kind != jsonlite.Array {
				return false
			}
			out = make([]ispec.Descriptor, 0, len(v.Elems))
			for _, e := range v.Elems {
				d, ok := descriptorLite(e)
				if !ok {
					return false
				}
				out = append(out, d)
			}
			return true
		}
		return false
	})
	return out, ok && out != nil
}

// descriptorLite reads a descriptor of a media type, digest, size and
// annotations (what this store's index and refs.json hold); false for
// anything else.
func descriptorLite(v jsonlite.Value) (ispec.Descriptor, bool) {
	var d ispec.Descriptor
	ok := v.Fields(func(key string, v jsonlite.Value) bool {
		var ok bool
		switch key {
		case "mediaType":
			d.MediaType, ok = v.String()
		case "digest":
			var s string
			s, ok = v.String()
			d.Digest = digest.Digest(s)
		case "size":
			d.Size, ok = v.Int(64)
		case "annotations":
			d.Annotations, ok = v.StringMap()
		}
		return ok
	})
	return d, ok
}

// encodeRefs is refs.json's content: by hand when every descriptor is one
// descriptorLite reads and every string needs no escape (what jsonlite
// reads back), else json.Marshal's.
func encodeRefs(c refsCache) ([]byte, error) {
	if b, ok := encodeRefsLite(c); ok {
		return b, nil
	}
	return json.Marshal(c)
}

func encodeRefsLite(c refsCache) ([]byte, bool) {
	ok := plain(c.Index)
	b := append([]byte(`{"index":"`), c.Index...)
	b = append(b, `","refs":{`...)
	for i, n := range slices.Sorted(maps.Keys(c.Refs)) {
		d := c.Refs[n]
		ok = ok && plain(n) && plain(d.MediaType) && plain(string(d.Digest)) &&
			d.URLs == nil && d.Data == nil && d.Platform == nil && d.ArtifactType == ""
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, n...)
		b = append(b, `":{"mediaType":"`...)
		b = append(b, d.MediaType...)
		b = append(b, `","digest":"`...)
		b = append(b, d.Digest...)
		b = append(b, `","size":`...)
		b = strconv.AppendInt(b, d.Size, 10)
		if len(d.Annotations) > 0 {
			b = append(b, `,"annotations":{`...)
			for j, k := range slices.Sorted(maps.Keys(d.Annotations)) {
				ok = ok && plain(k) && plain(d.Annotations[k])
				if j > 0 {
					b = append(b, ',')
				}
				b = append(b, '"')
				b = append(b, k...)
				b = append(b, `":"`...)
				b = append(b, d.Annotations[k]...)
				b = append(b, '"')
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	return append(b, "}}"...), ok
}

// plain reports whether s goes into JSON as it is, between quotes: valid
// UTF-8 without a quote, a backslash or a control character.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' || c < 0x20 {
			return false
		}
	}
	return utf8.ValidString(s)
}

// writeRefs replaces refs.json (temp file and rename; no fsync: after a
// crash a torn cache fails to parse, or to match, and is rebuilt).
func (s *Store) writeRefs(c refsCache) error {
	b, err := encodeRefs(c)
	if err != nil {
		return err
	}
	return replaceFile(filepath.Join(s.root, refsFile), refsTmpPrefix+"*.tmp", b) // a temp file a crash left is cleanRefsTmp's after a minute
}

// replaceFile replaces the file at p with b: a temporary file (named by
// pattern, in p's directory) renamed over it, so readers see the old
// content or the new. No fsync: the caches and records written so are
// checked when read, and rebuilt when a crash tore them.
func replaceFile(p, pattern string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(p), pattern)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		_ = os.Remove(f.Name()) // the write's error is returned
	}
	return err
}

// cleanRefsTmp removes the cache's temporary files that a killed process
// left (older than a minute: a write takes microseconds).
func (s *Store) cleanRefsTmp() {
	ents, err := os.ReadDir(s.root)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), refsTmpPrefix) {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Minute {
			_ = os.Remove(filepath.Join(s.root, e.Name())) // a stale cache temp file: the next cleanRefsTmp tries again
		}
	}
}

// readCapped reads the file at path, refusing one over maxJSON bytes,
// with plain system calls: os.Open would also probe the runtime's poller
// with a regular file (five more calls each time).
func readCapped(path string) ([]byte, error) {
	const max = maxJSON
	fd, err := sys.Openat(unix.AT_FDCWD, path, unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer func() { _ = unix.Close(fd) }() // read-only
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Size > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, max)
	}
	// One read when the size holds; the limit holds if the file grew.
	buf := make([]byte, 0, st.Size+1)
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > max {
				return nil, fmt.Errorf("%s: larger than %d bytes", path, max)
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := sys.Read(fd, buf[len(buf):cap(buf)])
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}
