//go:build linux

package child

import (
	"reflect"
	"syscall"
	"testing"
)

// A spec survives its trip through the environment, and a damaged one is
// refused rather than read as a different clone.
func TestCloneSpec(t *testing.T) {
	full := CloneSpec{
		Role: "init", Flags: 0x7e020000, Files: 12, Report: 12, CgroupDir: 16, Tasks: []int{13, 14, 15},
		UIDs:      []syscall.SysProcIDMap{{ContainerID: 0, HostID: 1610612736, Size: 65536}},
		GIDs:      []syscall.SysProcIDMap{{ContainerID: 0, HostID: 1610612736, Size: 65536}, {ContainerID: 65536, HostID: 5, Size: 1}},
		Setgroups: true, Cred: &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true}, Ambient: true,
		Owner: 1610612736,
	}
	for _, s := range []CloneSpec{full, {Role: "init", Flags: 1, Files: 3, Report: 3, CgroupDir: -1}} {
		got, err := ParseCloneSpec(s.Encode())
		if err != nil {
			t.Fatalf("%q: %v", s.Encode(), err)
		}
		if !reflect.DeepEqual(got, s) {
			t.Errorf("round trip of %q:\ngot  %+v\nwant %+v", s.Encode(), got, s)
		}
	}
	for _, bad := range []string{
		"", "role=init", "role=init flags=1 files=3", "role=init flags=zz files=3 report=3",
		"role=init flags=1 files=3 report=3 uids=0:1", "role=init flags=1 files=3 report=3 cred=0",
		"role=init flags=1 files=3 report=3 tasks=-1", "role=init flags=1 files=3 report=3 what=1",
		"role=init flags=1 files=3 report=2", "role=init flags=1 files=3 report=3 uids=0:-1:1",
		"flags=1 files=3 report=3", "role=init flags=1 files=3 report=3 nosetgroups=1",
		"role=init flags=1 files=3 report=3 owner=0", "role=init flags=1 files=3 report=3 owner=-5",
	} {
		if s, err := ParseCloneSpec(bad); err == nil {
			t.Errorf("ParseCloneSpec(%q) = %+v, want an error", bad, s)
		}
	}
}
