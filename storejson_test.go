package lightbox

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/idmap"
)

// TestUnmarshalStoreFile: unmarshalStoreFile gives what encoding/json
// gives for the store files Open writes (indented, by atomicfile), their
// prefixes, and JSON that jsonlite leaves to encoding/json; the files
// Open writes are decoded by hand.
func TestUnmarshalStoreFile(t *testing.T) {
	created := time.Date(2026, 11, 30, 20, 39, 37, 584298643, time.UTC)
	files := []storeFile{
		{Version: 2, Mapping: idmap.RangeMapping(0x600e0000), CreatedAt: created},
		{Version: 1, Mapping: idmap.Mapping{UIDs: []idmap.Range{{ContainerID: 0, HostID: 1000, Size: 1}, {ContainerID: 1, HostID: 100000, Size: 65536}}, GIDs: []idmap.Range{{ContainerID: 0, HostID: 1000, Size: 1}}, Subordinate: true}, CreatedAt: created},
		{Version: 2, Mapping: idmap.Mapping{UIDs: []idmap.Range{{ContainerID: 0, HostID: 0, Size: 4294967295}}, GIDs: []idmap.Range{}}, IdentityMapping: true},
		{},
	}
	var inputs, written []string
	for _, sf := range files {
		ind, err := json.MarshalIndent(sf, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(sf) // marshalled just above
		inputs = append(inputs, string(ind), string(b))
		written = append(written, string(ind), string(b))
		for i := range b {
			inputs = append(inputs, string(b[:i]))
		}
	}
	inputs = append(inputs,
		`{"version":2,"Mapping":{}}`, `{"mapping":{"uids":null}}`, `{"mapping":{"uids":[{"containerID":-1}]}}`,
		`{"mapping":{"uids":[{"size":4294967296}]}}`, `{"mapping":{"uids":[{"hostid":5}]}}`, `{"mapping":{"extra":1}}`,
		`{"identityMapping":1}`, `{"createdAt":"now"}`, `{"version":2,"version":3}`, `{"mapping":[]}`, `{"mapping":{"helper":"yes"}}`,
	)
	for _, in := range inputs {
		var got, want storeFile
		gotErr := unmarshalStoreFile([]byte(in), &got)
		wantErr := json.Unmarshal([]byte(in), &want)
		if !reflect.DeepEqual(got, want) || (gotErr == nil) != (wantErr == nil) {
			t.Errorf("unmarshalStoreFile(%s) = %+v, %v; encoding/json gives %+v, %v", in, got, gotErr, want, wantErr)
		}
	}
	// A store.json as Open wrote it (atomicfile.WriteJSON).
	real := "{\n  \"version\": 2,\n  \"mapping\": {\n    \"uids\": [\n      {\n        \"containerID\": 0,\n        \"hostID\": 1611530240,\n" +
		"        \"size\": 65536\n      }\n    ],\n    \"gids\": [\n      {\n        \"containerID\": 0,\n        \"hostID\": 1611530240,\n" +
		"        \"size\": 65536\n      }\n    ]\n  },\n  \"createdAt\": \"2026-11-30T20:39:37.584298643Z\"\n}\n"
	var got, want storeFile
	if err := unmarshalStoreFile([]byte(real), &got); err != nil || json.Unmarshal([]byte(real), &want) != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("unmarshalStoreFile(%s) = %+v, %v; encoding/json gives %+v", real, got, err, want)
	}
	written = append(written[:6], real) // not the zero file's nulls
	for _, in := range written {
		if !handStoreFile([]byte(in), &storeFile{}) {
			t.Errorf("jsonlite declined a store file as Open writes it: %s", in)
		}
	}
}
