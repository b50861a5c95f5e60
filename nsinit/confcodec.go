package nsinit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/beamhop/lightbox/internal/sys"
)

// The launch config of a sandbox travels in a small binary encoding, not
// JSON: encoding/json builds its encoders and decoders for a type by
// reflection on first use, and both processes of a launch use it once,
// on the critical path (~0.3 ms to encode in the launcher, ~0.3 ms to
// decode in the init here; bench/NOTES.md, 2026-11-30 "the config's
// encoding"). An OCI container's config (Config.OCI set) stays JSON:
// ociruntime's launches are not on that path and its types are many.
//
// The encoding: configMagic, then every field of Config in declaration
// order as varints (integers, booleans, lengths) and raw bytes (after
// their length). The runtime and the init are the same build, and the
// magic changes with the layout; Version is still checked as for every
// message. TestConfigCodec round-trips a Config with every field set, so
// a field added to Config and not here fails it.
const configMagic = "lbc3"

// configMax bounds an encoded config: a pipe read by a process that has
// not checked anything yet must not make it allocate without bound.
const configMax = 16 << 20

// appendConfig appends the encoding of cfg (cfg.OCI must be nil).
func appendConfig(b []byte, cfg *Config) []byte {
	var e wbuf = b
	e.int(int64(cfg.Version))
	e.str(cfg.Name)
	e.fsMount(&cfg.Root)
	e.str(cfg.RootDir)
	e.int(int64(len(cfg.Etc)))
	for _, f := range cfg.Etc {
		e.str(f.Target)
		e.str(string(f.Data))
	}
	e.int(int64(len(cfg.Mounts)))
	for i := range cfg.Mounts {
		m := &cfg.Mounts[i]
		e.str(m.Source)
		e.str(m.Target)
		e.bool(m.ReadOnly)
		e.int(int64(m.FD))
		e.params(m.Overlay)
		e.bool(m.Fill)
		e.int(int64(m.FillLock))
		e.str(m.FillRecord)
	}
	e.strs(cfg.Env)
	e.str(cfg.Workdir)
	e.str(cfg.User)
	e.str(cfg.Network)
	e.int(int64(cfg.Timeout))
	e.bool(cfg.SyncOnEnd)
	e.bool(cfg.DevptsGID5)
	e.bool(cfg.AllowUserNamespaces)
	e.bool(cfg.Pooled)
	e.int(cfg.Nproc)
	e.int(cfg.ShmBytes)
	e.strs(cfg.Cgroup)
	e.int(int64(cfg.WorkloadOOMScore))
	f := &cfg.FDs
	for _, v := range []int{f.Report, f.Liveness, f.Listener, f.Lock, f.Exe, f.Passer, f.Workload, f.Gone, f.UpperFS} {
		e.int(int64(v))
	}
	e.ints(f.Leases)
	e.ints(f.WorkloadV1)
	e.ints(f.CPUMax)
	e.int(int64(cfg.Passed))
	e.int(int64(cfg.RootParentFD))
	return e
}

// parseConfig decodes what appendConfig encoded.
func parseConfig(b []byte) (*Config, error) {
	d := rbuf{b: b}
	cfg := &Config{Version: d.num()}
	cfg.Name = d.str()
	d.fsMount(&cfg.Root)
	cfg.RootDir = d.str()
	if n := d.count(); n > 0 {
		cfg.Etc = make([]File, n)
		for i := range cfg.Etc {
			cfg.Etc[i] = File{Target: d.str(), Data: []byte(d.str())}
		}
	}
	if n := d.count(); n > 0 {
		cfg.Mounts = make([]Mount, n)
		for i := range cfg.Mounts {
			m := &cfg.Mounts[i]
			m.Source, m.Target, m.ReadOnly = d.str(), d.str(), d.bool()
			m.FD = PassedFD(d.num())
			m.Overlay = d.params()
			m.Fill = d.bool()
			m.FillLock = d.num()
			m.FillRecord = d.str()
		}
	}
	cfg.Env = d.strs()
	cfg.Workdir, cfg.User, cfg.Network = d.str(), d.str(), d.str()
	cfg.Timeout = time.Duration(d.int())
	cfg.SyncOnEnd = d.bool()
	cfg.DevptsGID5, cfg.AllowUserNamespaces, cfg.Pooled = d.bool(), d.bool(), d.bool()
	cfg.Nproc, cfg.ShmBytes = d.int(), d.int()
	cfg.Cgroup = d.strs()
	cfg.WorkloadOOMScore = d.num()
	f := &cfg.FDs
	for _, p := range []*int{&f.Report, &f.Liveness, &f.Listener, &f.Lock, &f.Exe, &f.Passer, &f.Workload, &f.Gone, &f.UpperFS} {
		*p = d.num()
	}
	f.Leases = d.ints()
	f.WorkloadV1 = d.ints()
	f.CPUMax = d.ints()
	cfg.Passed = d.num()
	cfg.RootParentFD = PassedFD(d.num())
	if d.bad || len(d.b) != 0 {
		return nil, errors.New("decode config: malformed")
	}
	if cfg.Version != Version {
		return nil, fmt.Errorf("config version %d, this binary speaks %d: %w", cfg.Version, Version, ErrVersion)
	}
	return cfg, nil
}

// wbuf appends varints and length-prefixed bytes.
type wbuf []byte

func (e *wbuf) int(v int64) { *e = binary.AppendVarint(*e, v) }

func (e *wbuf) bool(v bool) {
	if v {
		e.int(1)
	} else {
		e.int(0)
	}
}

func (e *wbuf) str(s string) {
	e.int(int64(len(s)))
	*e = append(*e, s...)
}

// strs encodes nil and empty alike: both decode as nil.
func (e *wbuf) strs(ss []string) {
	e.int(int64(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}

func (e *wbuf) ints(vs []int) {
	e.int(int64(len(vs)))
	for _, v := range vs {
		e.int(int64(v))
	}
}

func (e *wbuf) params(ps []sys.Param) {
	e.int(int64(len(ps)))
	for _, p := range ps {
		e.str(p.Key)
		e.str(p.Value)
	}
}

func (e *wbuf) fsMount(m *FSMount) {
	e.str(m.FSType)
	e.params(m.Params)
	keys := make([]int, 0, len(m.ParamFDs))
	for k := range m.ParamFDs {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the same config, the same bytes
	e.int(int64(len(keys)))
	for _, k := range keys {
		e.int(int64(k))
		e.int(int64(m.ParamFDs[k]))
	}
}

// rbuf reads what wbuf wrote; a malformed input sets bad and yields zero
// values from then on.
type rbuf struct {
	b   []byte
	bad bool
}

func (d *rbuf) int() int64 {
	if d.bad {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *rbuf) num() int { return int(d.int()) }

func (d *rbuf) bool() bool { return d.int() != 0 }

// count reads a length: each element takes a byte at least, so a length
// beyond what is left is malformed (and allocates nothing).
func (d *rbuf) count() int {
	n := d.int()
	if n < 0 || n > int64(len(d.b)) {
		d.bad = true
		return 0
	}
	return int(n)
}

func (d *rbuf) str() string {
	n := d.count()
	if d.bad {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// list reads a length, then that many elements with elem; none is nil.
func list[T any](d *rbuf, elem func() T) []T {
	n := d.count()
	if n == 0 {
		return nil
	}
	vs := make([]T, n)
	for i := range vs {
		vs[i] = elem()
	}
	return vs
}

func (d *rbuf) strs() []string { return list(d, d.str) }

func (d *rbuf) ints() []int { return list(d, d.num) }

func (d *rbuf) params() []sys.Param {
	return list(d, func() sys.Param { return sys.Param{Key: d.str(), Value: d.str()} })
}

func (d *rbuf) fsMount(m *FSMount) {
	m.FSType = d.str()
	m.Params = d.params()
	if n := d.count(); n > 0 {
		m.ParamFDs = make(map[int]PassedFD, n)
		for range n {
			k := d.num()
			m.ParamFDs[k] = PassedFD(d.num())
		}
	}
}
