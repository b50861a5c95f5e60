//go:build linux

package runtime

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestUnmarshalState: unmarshalState gives what encoding/json gives
// (value, success, a torn file's error kind) for the states launches
// write, every prefix of them (a launch killed mid-write), and JSON that
// jsonlite leaves to encoding/json.
func TestUnmarshalState(t *testing.T) {
	created := time.Date(2026, 11, 30, 20, 39, 37, 632882580, time.UTC)
	states := []state{
		{},
		{Version: 1, Name: "x", Snapshot: "bb", CreatedAt: created, Command: []string{"sleep", "100000"}, Network: "none",
			Cgroup: &cgroupState{Version: 1, Paths: map[string]string{"cpu": "/lightbox/x-34d0c99100", "memory": "/a/b"}, WorkloadV1: []string{"pids", "cpu"}},
			Limits: LimitsApplied{"cpu": "cgroup v1 (no limit)", "logs": "16 MiB per stream, newest kept"},
			Pid:    29301, PidStart: 3008544},
		{Version: 1, Name: "y", CreatedAt: created.In(time.FixedZone("x", 3600)), Volumes: []string{"cache", "w"}, Command: []string{},
			Network: "pasta", WritableDir: "/d/\u00e9", Cgroup: &cgroupState{Version: 2, Path: "/lightbox/y", Controllers: []string{}},
			NetPids: []procRef{{Pid: 5, Start: 1 << 63}, {}}, Limits: LimitsApplied{}},
		{Version: 1, Name: "esc", Command: []string{"sh", "-c", "echo \"<hi>\"\n"}, Cgroup: &cgroupState{Version: 2, Controllers: []string{"pids"}}},
	}
	var inputs, written []string
	for _, st := range states {
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		ind, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, string(b), string(ind))
		written = append(written, string(b), string(ind))
		for i := range b {
			inputs = append(inputs, string(b[:i]))
		}
	}
	inputs = append(inputs,
		`{"version":1,"Name":"x"}`, `{"version":1,"name":null}`, `{"version":1,"cgroup":null}`, `{"version":1,"other":1}`,
		`{"version":1.0}`, `{"version":"1"}`, `{"pid":-1,"pidStart":-1}`, `{"pidStart":18446744073709551616}`,
		`{"createdAt":"yesterday"}`, `{"limits":{"cpu":1}}`, `{"cgroup":{"paths":{"a":"b"},"paths":{"c":"d"}}}`,
		`{"netPids":[{"pid":1,"start":2,"x":3}]}`, `{"netPids":{}}`, `{"command":["a",1]}`, `[]`, `"x"`, `{"name":"a\u00e9"}`,
		`{"version":1,"name":"x"}`+"\n", `{"cgroup":{"Version":2}}`, strings.Repeat(" ", 3)+`{}`,
	)
	for _, in := range inputs {
		var got, want state
		gotErr := unmarshalState([]byte(in), &got)
		wantErr := json.Unmarshal([]byte(in), &want)
		if !reflect.DeepEqual(got, want) || (gotErr == nil) != (wantErr == nil) || (gotErr != nil && tornState(gotErr) != tornState(wantErr)) {
			t.Errorf("unmarshalState(%s) = %+v, %v; encoding/json gives %+v, %v", in, got, gotErr, want, wantErr)
		}
		if gotErr == nil && !got.CreatedAt.Equal(want.CreatedAt) {
			t.Errorf("unmarshalState(%s): CreatedAt %v, encoding/json %v", in, got.CreatedAt, want.CreatedAt)
		}
	}
	// The states launches write (json.Marshal) must be the hand
	// decoder's, or it buys nothing.
	for _, in := range written[:6] {
		var st state
		if !handState([]byte(in), &st) {
			t.Errorf("jsonlite declined a state as launches write it: %s", in)
		}
	}
}
