//go:build linux

package nsinit

import (
	"reflect"
	"testing"
)

func TestHandoverStateCodec(t *testing.T) {
	st := &handoverState{
		Gen: 3, Name: "box", Workdir: "/work", User: "1000:1000",
		Env: []string{"A=1", "B=two\nlines", ""}, Cgroup: []string{"cpu", "memory"},
		AllowUserNS: true, WorkloadOOMScore: 500, Nproc: 4096, Setgroups: true, Detached: true, SyncOnEnd: true,
		Exe: 9, Listener: 10, Lock: 4, Liveness: -1, Workload: 7, Gone: 19, UpperFS: 20, WorkloadV1: []int{13, 14}, Leases: []int{11, 12}, CPUMax: []int{21, 22},
		Main: 42, Deadline: 1 << 40,
		Relays:     []relayHandover{{Pipe: 13, Log: 14, Max: 16 << 20, Off: 123, Dropped: 7}, {Pipe: 17, Log: 18, Tty: true, MainTty: true}},
		EtcTargets: []string{"/etc/hostname", "/etc/hosts"}, EtcFDs: []int{15, 16},
	}
	b := appendState(nil, st)
	got, err := parseState(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, st) {
		t.Errorf("parseState(appendState(st)) = %+v, want %+v", got, st)
	}
	// Every truncation, a trailing byte and another magic are refused.
	for i := range b {
		if _, err := parseState(b[:i]); err == nil {
			t.Errorf("parseState of the first %d of %d bytes succeeded", i, len(b))
		}
	}
	if _, err := parseState(append(b, 0)); err == nil {
		t.Error("parseState with a trailing byte succeeded")
	}
	bad := append([]byte("lbh0"), b[len(handoverMagic):]...)
	if _, err := parseState(bad); err == nil {
		t.Error("parseState of another layout's magic succeeded")
	}
}
