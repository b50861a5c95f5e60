package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/beamhop/lightbox/internal/jsonlite"
	"github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// A launch needs of a snapshot's manifest and config only its layers'
// digests and sizes, the config's size and the config's runtime part
// (Config). Reading them means two more files opened and hashed, and
// decoding image-spec's types with encoding/json costs a fresh process
// ~0.1 ms (its reflection caches: bench/NOTES.md 2026-11-30, lease). So
// whatever reads a manifest and its config with their digests checked
// (describe, which an import or a tag ends with; a Lease that finds no
// record) records that part in $ROOT/snapshots/launch/<manifest digest>,
// and leases read the one small record instead, without encoding/json
// when jsonlite takes it.
//
// A record cannot go stale: its name is the manifest's digest, which
// fixes the manifest and so the config's digest, and it names that
// digest inside too. It starts with the sha256 of the rest, so a torn or
// damaged record (written without fsync) is ignored and rewritten, as is
// one for another manifest; its layer digests are validated before they
// make paths. GC removes a record with its manifest's blob, and the
// temporary files of writes a killed process left.
//
// What a record no longer guards against is a manifest or config blob
// damaged after it was written: a launch does not read them any more
// (Get, Export and GC still read them through umoci's verified reader).
// Whoever can write a record can write the blobs and the unpacked layers
// a launch uses unchecked anyway.

func (s *Store) launchDir() string { return filepath.Join(s.root, "launch") }

// launchTmpPrefix names a record's temporary files (GC removes those a
// killed process left).
const launchTmpPrefix = ".tmp-"

// launchRecord is what a launch needs of a manifest and its config. The
// config's lists and map are pointers so that nil and empty survive the
// round trip as they come from the config (omitted, or [] / {}).
type launchRecord struct {
	// Format is launchFormat; a record of another (an older lightbox's,
	// which lacks a field) is not used, and is rewritten.
	Format     int           `json:"format"`
	Manifest   string        `json:"manifest"`
	ConfigSize int64         `json:"configSize"`
	Layers     []launchLayer `json:"layers"`
	Config     launchConfig  `json:"config"`
}

// launchFormat is the layout of the records this build writes: 2 added
// the config's stopSignal (a record without it could not say whether
// the image has none).
const launchFormat = 2

type launchLayer struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

type launchConfig struct {
	Env        *[]string          `json:"env,omitempty"`
	WorkingDir string             `json:"workingDir,omitempty"`
	User       string             `json:"user,omitempty"`
	Entrypoint *[]string          `json:"entrypoint,omitempty"`
	Cmd        *[]string          `json:"cmd,omitempty"`
	Labels     *map[string]string `json:"labels,omitempty"`
	StopSignal string             `json:"stopSignal,omitempty"`
}

// recordOf is the launch record of manifest m (digest md) and its config c.
func recordOf(md digest.Digest, m *ispec.Manifest, c *ispec.Image) *launchRecord {
	r := &launchRecord{Format: launchFormat, Manifest: md.String(), ConfigSize: m.Config.Size, Layers: []launchLayer{}}
	for _, l := range m.Layers {
		r.Layers = append(r.Layers, launchLayer{Digest: l.Digest.String(), Size: l.Size})
	}
	cc := &c.Config
	r.Config = launchConfig{WorkingDir: cc.WorkingDir, User: cc.User, StopSignal: cc.StopSignal}
	if cc.Env != nil {
		r.Config.Env = &cc.Env
	}
	if cc.Entrypoint != nil {
		r.Config.Entrypoint = &cc.Entrypoint
	}
	if cc.Cmd != nil {
		r.Config.Cmd = &cc.Cmd
	}
	if cc.Labels != nil {
		r.Config.Labels = &cc.Labels
	}
	return r
}

// config is the record's Config.
func (c *launchConfig) config() Config {
	out := Config{WorkingDir: c.WorkingDir, User: c.User, StopSignal: c.StopSignal}
	if c.Env != nil {
		out.Env = *c.Env
	}
	if c.Entrypoint != nil {
		out.Entrypoint = *c.Entrypoint
	}
	if c.Cmd != nil {
		out.Cmd = *c.Cmd
	}
	if c.Labels != nil {
		out.Labels = *c.Labels
	}
	return out
}

// launchFile is the record of manifest d; "" for a digest that is not a
// valid sha256 one (no record: such a manifest is read every time).
func (s *Store) launchFile(d digest.Digest) string {
	if d.Algorithm() != digest.SHA256 || d.Validate() != nil {
		return ""
	}
	return filepath.Join(s.launchDir(), d.Encoded())
}

// encodeLaunchRecord is the file a record is stored as: the hex sha256 of
// the JSON that follows, a newline, the JSON.
func encodeLaunchRecord(r *launchRecord) ([]byte, error) {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false) // fewer escapes: more records jsonlite takes
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body.Bytes())
	out := make([]byte, 0, 2*len(sum)+1+body.Len())
	out = hex.AppendEncode(out, sum[:])
	out = append(out, '\n')
	return append(out, body.Bytes()...), nil
}

// decodeLaunchRecord parses a record file of manifest md; ok false when
// it is torn, damaged, for another manifest or otherwise unusable.
func decodeLaunchRecord(b []byte, md digest.Digest) (*launchRecord, bool) {
	head, body, ok := bytes.Cut(b, []byte{'\n'})
	if !ok || len(head) != 2*sha256.Size {
		return nil, false
	}
	var want [sha256.Size]byte
	if _, err := hex.Decode(want[:], head); err != nil || sha256.Sum256(body) != want {
		return nil, false
	}
	r, ok := parseLaunchRecord(body)
	if !ok {
		r = new(launchRecord)
		if json.Unmarshal(body, r) != nil {
			return nil, false
		}
	}
	if r.Format != launchFormat || r.Manifest != md.String() || r.ConfigSize < 0 || r.Layers == nil {
		return nil, false
	}
	for _, l := range r.Layers {
		if digest.Digest(l.Digest).Validate() != nil || l.Size < 0 {
			return nil, false
		}
	}
	return r, true
}

// parseLaunchRecord reads a record's JSON with jsonlite; ok false when it
// declines (the caller then asks encoding/json).
func parseLaunchRecord(body []byte) (*launchRecord, bool) {
	v, ok := jsonlite.Parse(body)
	if !ok {
		return nil, false
	}
	r := new(launchRecord)
	strs := func(v jsonlite.Value) (*[]string, bool) {
		l, ok := v.Strings()
		return &l, ok
	}
	ok = v.Fields(func(key string, v jsonlite.Value) bool {
		var ok bool
		switch key {
		case "format":
			var n int64
			n, ok = v.Int(0)
			r.Format = int(n)
		case "manifest":
			r.Manifest, ok = v.String()
		case "configSize":
			r.ConfigSize, ok = v.Int(64)
		case "layers":
			if v.Kind != jsonlite.Array {
				return false
			}
			r.Layers = make([]launchLayer, 0, len(v.Elems))
			for _, e := range v.Elems {
				var l launchLayer
				if !e.Fields(func(key string, v jsonlite.Value) bool {
					var ok bool
					switch key {
					case "digest":
						l.Digest, ok = v.String()
					case "size":
						l.Size, ok = v.Int(64)
					}
					return ok
				}) {
					return false
				}
				r.Layers = append(r.Layers, l)
			}
			return true
		case "config":
			c := &r.Config
			return v.Fields(func(key string, v jsonlite.Value) bool {
				var ok bool
				switch key {
				case "env":
					c.Env, ok = strs(v)
				case "workingDir":
					c.WorkingDir, ok = v.String()
				case "user":
					c.User, ok = v.String()
				case "entrypoint":
					c.Entrypoint, ok = strs(v)
				case "cmd":
					c.Cmd, ok = strs(v)
				case "labels":
					var m map[string]string
					m, ok = v.StringMap()
					c.Labels = &m
				case "stopSignal":
					c.StopSignal, ok = v.String()
				}
				return ok
			})
		}
		return ok
	})
	return r, ok
}

// readLaunchRecord returns the record of manifest d, if a usable one is
// there.
func (s *Store) readLaunchRecord(d digest.Digest) (*launchRecord, bool) {
	p := s.launchFile(d)
	if p == "" {
		return nil, false
	}
	b, err := readCapped(p)
	if err != nil {
		return nil, false
	}
	return decodeLaunchRecord(b, d)
}

// writeLaunchRecord records r as manifest d's (temp file and rename; no
// fsync: a record torn by a crash fails its checksum and is rewritten).
func (s *Store) writeLaunchRecord(d digest.Digest, r *launchRecord) error {
	p := s.launchFile(d)
	if p == "" {
		return nil
	}
	b, err := encodeLaunchRecord(r)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.launchDir(), 0o700); err != nil {
		return err
	}
	return replaceFile(p, launchTmpPrefix+"*", b) // a temp file a crash left is gcLaunch's
}

// gcLaunch removes the records of manifests the store no longer holds and
// temporary files; called under the index lock held exclusively, so no
// lease or import is writing one (a Get may: its rename then fails, and
// the next describe or lease writes the record).
func (s *Store) gcLaunch() error {
	if err := s.gcDigestRecords(s.launchDir(), launchTmpPrefix); err != nil {
		return fmt.Errorf("launch records: %w", err)
	}
	return nil
}
