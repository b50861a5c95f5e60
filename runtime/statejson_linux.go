package runtime

import (
	"encoding/json"
	"strconv"

	"github.com/beamhop/lightbox/internal/jsonlite"
)

// unmarshalState decodes a state.json as json.Unmarshal does. The states
// this package writes go without encoding/json, whose first use is ~0.1
// ms of a short command such as exec (package jsonlite); anything else
// (and a torn file, so that tornState still sees its *json.SyntaxError)
// goes to encoding/json. TestUnmarshalState compares the two.
func unmarshalState(b []byte, st *state) error {
	if handState(b, st) {
		return nil
	}
	return json.Unmarshal(b, st)
}

// handState decodes b into st when jsonlite and the fields below take
// it all; st is untouched otherwise.
func handState(b []byte, st *state) bool {
	v, ok := jsonlite.Parse(b)
	if !ok {
		return false
	}
	var got state
	if !v.Fields(got.field) {
		return false
	}
	*st = got
	return true
}

// field sets the field of st that key names: false for a key or a value
// encoding/json would treat otherwise.
func (st *state) field(key string, v jsonlite.Value) (ok bool) {
	switch key {
	case "version":
		st.Version, ok = jsonInt(v)
	case "name":
		st.Name, ok = v.String()
	case "snapshot":
		st.Snapshot, ok = v.String()
	case "createdAt":
		st.CreatedAt, ok = v.Time()
	case "volumes":
		st.Volumes, ok = v.Strings()
	case "command":
		st.Command, ok = v.Strings()
	case "network":
		st.Network, ok = v.String()
	case "writableDir":
		st.WritableDir, ok = v.String()
	case "stopSignal":
		st.StopSignal, ok = jsonInt(v)
	case "cgroup":
		cg := &cgroupState{}
		st.Cgroup, ok = cg, v.Fields(cg.field)
	case "limits":
		var m map[string]string
		m, ok = v.StringMap()
		st.Limits = LimitsApplied(m)
	case "netPids":
		if v.Kind != jsonlite.Array {
			return false
		}
		st.NetPids = make([]procRef, 0, len(v.Elems))
		for _, e := range v.Elems {
			var p procRef
			if !e.Fields(p.field) {
				return false
			}
			st.NetPids = append(st.NetPids, p)
		}
		return true
	case "pid":
		st.Pid, ok = jsonInt(v)
	case "pidStart":
		st.PidStart, ok = v.Uint(64)
	}
	return ok
}

func (cs *cgroupState) field(key string, v jsonlite.Value) (ok bool) {
	switch key {
	case "version":
		cs.Version, ok = jsonInt(v)
	case "paths":
		cs.Paths, ok = v.StringMap()
	case "path":
		cs.Path, ok = v.String()
	case "controllers":
		cs.Controllers, ok = v.Strings()
	case "workloadV1":
		cs.WorkloadV1, ok = v.Strings()
	}
	return ok
}

func (p *procRef) field(key string, v jsonlite.Value) (ok bool) {
	switch key {
	case "pid":
		p.Pid, ok = jsonInt(v)
	case "start":
		p.Start, ok = v.Uint(64)
	}
	return ok
}

func jsonInt(v jsonlite.Value) (int, bool) {
	n, ok := v.Int(strconv.IntSize)
	return int(n), ok
}
