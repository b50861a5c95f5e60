package netstack

import (
	"fmt"
	"math"

	"github.com/beamhop/lightbox/internal/procidmap"
)

// nobody is the id the helper runs as when the sandbox's root is the
// host's root: the kernel's overflow id, which owns nothing.
const nobody = 65534

// runAs is who the helper runs as: ids in the sandbox's user namespace and
// the host ids they map to.
type runAs struct {
	uid, gid         int // in the sandbox's user namespace
	hostUID, hostGID int // on the host
}

// root reports whether the helper runs as the sandbox's root (with every
// capability in its user namespace) rather than as nobody.
func (r runAs) root() bool { return r.uid == 0 && r.gid == 0 }

// helperIDs picks the helper's ids for the sandbox pid whose root is host
// uid:gid: the sandbox's root itself when it is not the host's root,
// else the ids that map to the host's nobody (65534).
func helperIDs(pid, uid, gid int) (runAs, error) {
	r := runAs{hostUID: uid, hostGID: gid}
	var err error
	// Root of our own user namespace is the host's root only when that
	// namespace maps it to 0 in its parent (the initial namespace, or
	// one that maps ids to themselves).
	if uid == 0 && parentID("uid_map", 0) == 0 {
		r.hostUID = nobody
		if r.uid, err = nsID(pid, "uid_map", nobody); err != nil {
			return r, err
		}
	}
	if gid == 0 && parentID("gid_map", 0) == 0 {
		r.hostGID = nobody
		if r.gid, err = nsID(pid, "gid_map", nobody); err != nil {
			return r, err
		}
	}
	return r, nil
}

// mapID translates id through the uid_map or gid_map at path: from the
// namespace's side to its parent's (up) or back. ok is false when id is
// not mapped.
func mapID(path string, id int, up bool) (mapped int, ok bool, err error) {
	m, err := procidmap.Read(path)
	if err != nil || id < 0 || id > math.MaxUint32 {
		return 0, false, err
	}
	var to uint32
	if up {
		to, ok = m.Outside(uint32(id))
	} else {
		to, ok = m.Inside(uint32(id))
	}
	return int(to), ok, nil
}

// parentID returns the id in the parent user namespace of id of ours,
// from /proc/self/uid_map or gid_map; 0 when it cannot tell, which is the
// careful answer for 0.
func parentID(file string, id int) int {
	p, ok, err := mapID("/proc/self/"+file, id, true)
	if err != nil || !ok {
		return 0
	}
	return p
}

// nsID returns the id in the user namespace of pid that maps to host id
// host, from its uid_map or gid_map.
func nsID(pid int, file string, host int) (int, error) {
	path := fmt.Sprintf("/proc/%d/%s", pid, file)
	id, ok, err := mapID(path, host, false)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("the sandbox's root is the host's root and host id %d (nobody) is not mapped in it (%s), so the network helper would run as the host's root: map it, or use --network none or --network host", host, path)
	}
	return id, nil
}

// rootID returns the id (in our user namespace) that is root in the user
// namespace of pid, from its uid_map or gid_map.
func rootID(pid int, file string) (int, error) {
	path := fmt.Sprintf("/proc/%d/%s", pid, file)
	id, ok, err := mapID(path, 0, true)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("%s: root is not mapped", path)
	}
	return id, nil
}
