package ociruntime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/beamhop/lightbox/nsinit"
	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ErrUnsupported marks a config field or flag lightbox-runc does not
// implement; the message names it.
var ErrUnsupported = errors.New("not supported by lightbox-runc")

func unsupported(field string, why string) error {
	if why != "" {
		return fmt.Errorf("%s: %w (%s)", field, ErrUnsupported, why)
	}
	return fmt.Errorf("%s: %w", field, ErrUnsupported)
}

// loadSpec reads bundle/config.json.
func loadSpec(bundle string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read bundle config: %w", err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Join(bundle, "config.json"), err)
	}
	return &s, nil
}

// nsFlags are the clone flags of the namespace types.
var nsFlags = map[specs.LinuxNamespaceType]uintptr{
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.UserNamespace:    unix.CLONE_NEWUSER,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
	specs.TimeNamespace:    unix.CLONE_NEWTIME,
}

// plan is a validated bundle, ready to launch.
type plan struct {
	spec   *specs.Spec
	bundle string
	oci    nsinit.OCIConfig
	clone  uintptr
	join   map[specs.LinuxNamespaceType]string // type → path
	userNS bool
	uidMap []specs.LinuxIDMapping
	gidMap []specs.LinuxIDMapping
	cgroup string
	res    *specs.LinuxResources
}

// translate validates spec and makes the init's config of it. Every
// field lightbox cannot honour is an error naming it.
func translate(spec *specs.Spec, bundle string) (*plan, error) {
	p := &plan{spec: spec, bundle: bundle, join: map[specs.LinuxNamespaceType]string{}}
	if spec.Root == nil || spec.Root.Path == "" {
		return nil, errors.New("config: root.path is required")
	}
	if spec.Process == nil || len(spec.Process.Args) == 0 {
		return nil, errors.New("config: process.args is required")
	}
	if spec.Linux == nil {
		return nil, errors.New("config: linux is required")
	}
	if spec.Windows != nil || spec.Solaris != nil || spec.VM != nil || spec.ZOS != nil {
		return nil, unsupported("config: windows/solaris/vm/zos", "")
	}
	if spec.Hooks != nil {
		if len(spec.Hooks.CreateContainer) > 0 {
			return nil, unsupported("config: hooks.createContainer", "createRuntime, prestart, poststart and poststop are")
		}
		if len(spec.Hooks.StartContainer) > 0 {
			return nil, unsupported("config: hooks.startContainer", "createRuntime, prestart, poststart and poststop are")
		}
	}
	root := spec.Root.Path
	if !filepath.IsAbs(root) {
		root = filepath.Join(bundle, root)
	}
	if st, err := os.Stat(root); err != nil {
		return nil, fmt.Errorf("config: root.path: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("config: root.path %s: not a directory", root)
	}
	p.oci.Rootfs = root
	p.oci.RootReadonly = spec.Root.Readonly
	p.oci.Console = -1

	l := spec.Linux
	switch {
	case l.IntelRdt != nil:
		return nil, unsupported("config: linux.intelRdt", "")
	case l.Personality != nil:
		return nil, unsupported("config: linux.personality", "")
	case l.MountLabel != "":
		return nil, unsupported("config: linux.mountLabel", "no SELinux")
	case len(l.TimeOffsets) > 0:
		return nil, unsupported("config: linux.timeOffsets", "")
	case len(l.NetDevices) > 0:
		return nil, unsupported("config: linux.netDevices", "")
	case l.MemoryPolicy != nil:
		return nil, unsupported("config: linux.memoryPolicy", "")
	}
	switch l.RootfsPropagation {
	case "", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable":
		p.oci.Propagation = l.RootfsPropagation
	default:
		return nil, fmt.Errorf("config: linux.rootfsPropagation %q: unknown", l.RootfsPropagation)
	}
	seen := map[specs.LinuxNamespaceType]bool{}
	for _, ns := range l.Namespaces {
		f, ok := nsFlags[ns.Type]
		if !ok {
			return nil, fmt.Errorf("config: linux.namespaces: unknown type %q", ns.Type)
		}
		if seen[ns.Type] {
			return nil, fmt.Errorf("config: linux.namespaces: %s given twice", ns.Type)
		}
		seen[ns.Type] = true
		if ns.Path == "" {
			if ns.Type == specs.TimeNamespace {
				return nil, unsupported("config: linux.namespaces: a new time namespace", "")
			}
			p.clone |= f
			continue
		}
		switch ns.Type {
		case specs.UserNamespace, specs.MountNamespace:
			return nil, unsupported(fmt.Sprintf("config: linux.namespaces: joining the %s namespace at %s", ns.Type, ns.Path), "a multithreaded Go process cannot enter it")
		}
		p.join[ns.Type] = ns.Path
	}
	if !seen[specs.MountNamespace] {
		return nil, unsupported("config: linux.namespaces: no mount namespace", "lightbox-runc always mounts in a new one")
	}
	if !seen[specs.PIDNamespace] {
		return nil, unsupported("config: linux.namespaces: no pid namespace", "the init must be PID 1 of the container")
	}
	p.userNS = p.clone&unix.CLONE_NEWUSER != 0
	// Unshared by the init once in its cgroup (see nsinit.OCIConfig).
	p.oci.CgroupNS = p.clone&unix.CLONE_NEWCGROUP != 0
	if p.userNS {
		p.uidMap, p.gidMap = l.UIDMappings, l.GIDMappings
		if len(p.uidMap) == 0 || len(p.gidMap) == 0 {
			return nil, errors.New("config: a user namespace needs linux.uidMappings and linux.gidMappings")
		}
		if !mapsZero(p.uidMap) || !mapsZero(p.gidMap) {
			return nil, errors.New("config: linux.uidMappings and linux.gidMappings must map the container's id 0 (the init runs as root in the container)")
		}
	} else if len(l.UIDMappings) > 0 || len(l.GIDMappings) > 0 {
		return nil, errors.New("config: linux.uidMappings without a new user namespace")
	}
	if (spec.Hostname != "" || spec.Domainname != "") && !seen[specs.UTSNamespace] {
		return nil, errors.New("config: hostname or domainname without a uts namespace")
	}
	if p.join[specs.UTSNamespace] == "" {
		p.oci.Hostname, p.oci.Domainname = spec.Hostname, spec.Domainname
	}
	for k := range l.Sysctl {
		if err := p.checkSysctl(k); err != nil {
			return nil, fmt.Errorf("config: linux.sysctl %q: %w", k, err)
		}
	}
	p.oci.Sysctl = l.Sysctl
	p.oci.MaskedPaths = l.MaskedPaths
	p.oci.ReadonlyPaths = l.ReadonlyPaths
	p.oci.Mknod = !p.userNS && initialUserNS()

	hasDev := false
	for i, m := range spec.Mounts {
		om, err := translateMount(m, bundle)
		if err != nil {
			return nil, fmt.Errorf("config: mounts[%d] (%s): %w", i, m.Destination, err)
		}
		if om.Destination == "/dev" {
			hasDev = true
		}
		p.oci.Mounts = append(p.oci.Mounts, om)
	}
	if hasDev {
		p.oci.Devices = defaultDevices()
	}
	for i, d := range l.Devices {
		od, err := translateDevice(d)
		if err != nil {
			return nil, fmt.Errorf("config: linux.devices[%d] (%s): %w", i, d.Path, err)
		}
		p.oci.Devices = replaceDevice(p.oci.Devices, od)
	}
	proc, err := translateProcess(spec.Process)
	if err != nil {
		return nil, fmt.Errorf("config: process: %w", err)
	}
	p.oci.Process = *proc
	if l.Seccomp != nil {
		prog, err := compileSeccomp(l.Seccomp)
		if err != nil {
			return nil, fmt.Errorf("config: linux.seccomp: %w", err)
		}
		p.oci.Seccomp = prog
	}
	if strings.Contains(l.CgroupsPath, ":") {
		return nil, unsupported(fmt.Sprintf("config: linux.cgroupsPath %q", l.CgroupsPath), "a systemd slice:prefix:name path; use a cgroupfs path")
	}
	p.cgroup = l.CgroupsPath
	p.res = l.Resources
	if p.res != nil && len(p.res.Devices) > 0 {
		// As runc does: the nodes made in /dev, the pty devices and the
		// config's devices stay usable whatever the rules deny.
		res := *p.res
		res.Devices = append([]specs.LinuxDeviceCgroup{}, res.Devices...)
		allow := func(typ string, major, minor int64) {
			res.Devices = append(res.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: typ, Major: &major, Minor: &minor, Access: "rwm"})
		}
		for _, d := range p.oci.Devices {
			typ := "c"
			if d.Type == unix.S_IFBLK {
				typ = "b"
			} else if d.Type == unix.S_IFIFO {
				continue
			}
			allow(typ, d.Major, d.Minor)
		}
		allow("c", 5, 2)    // /dev/ptmx
		allow("c", 136, -1) // /dev/pts/*
		allow("c", 5, 1)    // /dev/console
		p.res = &res
	}
	return p, nil
}

// ipcSysctls are the sysctls of an ipc namespace outside fs.mqueue.
var ipcSysctls = map[string]bool{
	"kernel.msgmax": true, "kernel.msgmnb": true, "kernel.msgmni": true, "kernel.sem": true,
	"kernel.shmall": true, "kernel.shmmax": true, "kernel.shmmni": true, "kernel.shm_rmid_forced": true,
}

// checkSysctl refuses a sysctl that the container does not own: the
// init writes it before it drops anything, as the host's root when there
// is no user namespace, so one that is not per namespace (kernel.*
// beyond ipc and uts, vm.*, fs.* beyond mqueue), or whose namespace is
// the host's, would change the host.
func (p *plan) checkSysctl(key string) error {
	k := strings.ReplaceAll(key, "/", ".") // sysctl(8) takes both separators; the init writes /proc/sys/<key with / for .>
	var t specs.LinuxNamespaceType
	switch {
	case ipcSysctls[k] || strings.HasPrefix(k, "fs.mqueue."):
		t = specs.IPCNamespace
	case strings.HasPrefix(k, "net."):
		t = specs.NetworkNamespace
	case k == "kernel.hostname" || k == "kernel.domainname":
		t = specs.UTSNamespace
	default:
		return errors.New("not in a namespace of the container's own: writing it would change the host's (runc refuses it too)")
	}
	if p.clone&nsFlags[t] != 0 {
		return nil
	}
	path, ok := p.join[t]
	if !ok {
		return fmt.Errorf("the container has no %s namespace of its own: writing it would change the host's", t)
	}
	var joined, host unix.Stat_t
	if err := unix.Stat(path, &joined); err != nil {
		return fmt.Errorf("%s namespace: %w", t, &os.PathError{Op: "stat", Path: path, Err: err})
	}
	own := "/proc/self/ns/" + map[specs.LinuxNamespaceType]string{specs.IPCNamespace: "ipc", specs.NetworkNamespace: "net", specs.UTSNamespace: "uts"}[t]
	if err := unix.Stat(own, &host); err != nil {
		return fmt.Errorf("%s namespace: %w", t, &os.PathError{Op: "stat", Path: own, Err: err})
	}
	if joined.Dev == host.Dev && joined.Ino == host.Ino {
		return fmt.Errorf("the %s namespace joined at %s is the runtime's own (the host's): writing it would change the host's", t, path)
	}
	return nil
}

// mapsZero reports whether m maps container id 0.
func mapsZero(m []specs.LinuxIDMapping) bool {
	for _, e := range m {
		if e.ContainerID == 0 && e.Size > 0 {
			return true
		}
	}
	return false
}

// hostID is the host id that m maps container id c to (c itself when m
// does not map it).
func hostID(m []specs.LinuxIDMapping, c uint32) uint32 {
	for _, e := range m {
		if c >= e.ContainerID && c-e.ContainerID < e.Size {
			return e.HostID + c - e.ContainerID
		}
	}
	return c
}

// initialUserNS reports whether this process is in the initial user
// namespace (where root may mknod).
func initialUserNS() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295" && os.Geteuid() == 0
}

func translateProcess(sp *specs.Process) (*nsinit.OCIProcess, error) {
	switch {
	case sp.ApparmorProfile != "":
		return nil, unsupported("apparmorProfile", "no AppArmor")
	case sp.SelinuxLabel != "":
		return nil, unsupported("selinuxLabel", "no SELinux")
	case sp.IOPriority != nil:
		return nil, unsupported("ioPriority", "")
	case sp.Scheduler != nil:
		return nil, unsupported("scheduler", "")
	case sp.ExecCPUAffinity != nil:
		return nil, unsupported("execCPUAffinity", "")
	case sp.User.Username != "":
		return nil, unsupported("user.username", "Windows only")
	}
	if sp.Cwd == "" || !filepath.IsAbs(sp.Cwd) {
		return nil, fmt.Errorf("cwd %q: must be an absolute path", sp.Cwd)
	}
	p := &nsinit.OCIProcess{
		Terminal: sp.Terminal, Args: sp.Args, Env: sp.Env, Cwd: sp.Cwd,
		UID: sp.User.UID, GID: sp.User.GID, AdditionalGids: sp.User.AdditionalGids, Umask: sp.User.Umask,
		NoNewPrivileges: sp.NoNewPrivileges, OOMScoreAdj: sp.OOMScoreAdj,
	}
	if sp.ConsoleSize != nil {
		p.Rows, p.Cols = uint16(sp.ConsoleSize.Height), uint16(sp.ConsoleSize.Width)
	}
	// No capabilities given is none, as runc has it (the init's nil
	// would keep every one: the host's root's, without a user namespace).
	p.Caps = &nsinit.OCICaps{}
	if c := sp.Capabilities; c != nil {
		for _, s := range []struct {
			name string
			in   []string
			out  *[]uintptr
		}{{"bounding", c.Bounding, &p.Caps.Bounding}, {"effective", c.Effective, &p.Caps.Effective}, {"inheritable", c.Inheritable, &p.Caps.Inheritable}, {"permitted", c.Permitted, &p.Caps.Permitted}, {"ambient", c.Ambient, &p.Caps.Ambient}} {
			for _, n := range s.in {
				v, ok := capByName()[strings.ToUpper(n)]
				if !ok {
					return nil, fmt.Errorf("capabilities.%s: unknown capability %q", s.name, n)
				}
				if v > lastCap() {
					continue // newer than this kernel: runc skips these too
				}
				*s.out = append(*s.out, uintptr(v))
			}
		}
	}
	for i, rl := range sp.Rlimits {
		t, ok := rlimitByName[rl.Type]
		if !ok {
			return nil, fmt.Errorf("rlimits[%d]: unknown type %q", i, rl.Type)
		}
		p.Rlimits = append(p.Rlimits, nsinit.OCIRlimit{Type: t, Hard: rl.Hard, Soft: rl.Soft})
	}
	return p, nil
}

// capByName maps CAP_ names to capabilities; made on first use, not at
// every start of the lightbox binary.
var capByName = sync.OnceValue(func() map[string]capability.Cap {
	m := map[string]capability.Cap{}
	for _, c := range capability.List() {
		m["CAP_"+strings.ToUpper(c.String())] = c
	}
	return m
})

var rlimitByName = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

// mountFlags are the options that are flags, not filesystem data.
var mountAttrs = map[string]struct {
	set, clear uint64
}{
	"ro": {set: unix.MOUNT_ATTR_RDONLY}, "rw": {clear: unix.MOUNT_ATTR_RDONLY},
	"nosuid": {set: unix.MOUNT_ATTR_NOSUID}, "suid": {clear: unix.MOUNT_ATTR_NOSUID},
	"nodev": {set: unix.MOUNT_ATTR_NODEV}, "dev": {clear: unix.MOUNT_ATTR_NODEV},
	"noexec": {set: unix.MOUNT_ATTR_NOEXEC}, "exec": {clear: unix.MOUNT_ATTR_NOEXEC},
	// One atime mode: each of these replaces the one before.
	"noatime":     {set: unix.MOUNT_ATTR_NOATIME, clear: unix.MOUNT_ATTR__ATIME},
	"strictatime": {set: unix.MOUNT_ATTR_STRICTATIME, clear: unix.MOUNT_ATTR__ATIME},
	"relatime":    {set: unix.MOUNT_ATTR_RELATIME, clear: unix.MOUNT_ATTR__ATIME},
	"nodiratime":  {set: unix.MOUNT_ATTR_NODIRATIME},
	"norelatime":  {}, "atime": {}, "diratime": {}, "defaults": {}, "async": {}, "nomand": {}, "loud": {},
	"nosymfollow": {set: unix.MOUNT_ATTR_NOSYMFOLLOW}, "symfollow": {clear: unix.MOUNT_ATTR_NOSYMFOLLOW},
}

// The recursive forms (runc's "rro", "rnosuid", …) mean what the plain
// ones do here: an attribute is set on every mount an rbind clones (a
// plain bind and a new filesystem have no submounts), so a plain "ro" on
// an rbind is recursive already, where runc's makes only the top mount
// read-only. A recursive clear ("rrw") clears the option's own attribute
// only, and no submount is made writable that the host has read-only.
func init() {
	for _, o := range []string{"ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "noatime", "strictatime",
		"relatime", "nodiratime", "diratime", "atime", "norelatime", "nosymfollow", "symfollow"} {
		mountAttrs["r"+o] = mountAttrs[o]
	}
	mountAttrs["nostrictatime"], mountAttrs["rnostrictatime"] = mountAttrs["norelatime"], mountAttrs["norelatime"]
}

var propagations = map[string]uintptr{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

func translateMount(m specs.Mount, bundle string) (nsinit.OCIMount, error) {
	om := nsinit.OCIMount{Destination: m.Destination, Type: m.Type, Source: m.Source}
	if !filepath.IsAbs(m.Destination) {
		return om, fmt.Errorf("destination %q: must be an absolute path", m.Destination)
	}
	if len(m.UIDMappings) > 0 || len(m.GIDMappings) > 0 {
		return om, unsupported("uidMappings/gidMappings of a mount", "")
	}
	om.Destination = filepath.Clean(m.Destination)
	om.Bind = m.Type == "bind"
	for _, o := range m.Options {
		switch o {
		case "bind":
			om.Bind = true
		case "rbind":
			om.Bind, om.Recursive = true, true
		case "idmap", "ridmap":
			return om, unsupported("option "+o, "")
		case "tmpcopyup":
			if m.Type != "tmpfs" {
				return om, errors.New("option tmpcopyup: only a tmpfs takes it")
			}
			om.CopyUp = true
			continue
		case "notmpcopyup":
			om.CopyUp = false
			continue
		case "sync", "dirsync", "mand", "remount":
			return om, unsupported("option "+o, "")
		}
		if a, ok := mountAttrs[o]; ok {
			om.Attrs = om.Attrs&^a.clear | a.set
			continue
		}
		if pr, ok := propagations[o]; ok {
			om.Propagation = pr
			continue
		}
		if o == "bind" || o == "rbind" {
			continue
		}
		om.Data = append(om.Data, o)
	}
	if om.Bind {
		// A bind takes no filesystem parameters: a key=value one
		// ("mode=755", "size=1k": configs give them to every mount) is
		// dropped, as runc drops it. A bare word unknown here is a mount
		// attribute this runtime does not know (a recursive or security
		// one): dropped unapplied it would weaken the mount, so it is
		// refused.
		for _, o := range om.Data {
			if !strings.Contains(o, "=") {
				return om, fmt.Errorf("option %q: %w on a bind mount (`lightbox-runc features` lists the mount options)", o, ErrUnsupported)
			}
		}
		if om.Source == "" {
			return om, errors.New("a bind mount needs a source")
		}
		if !filepath.IsAbs(om.Source) {
			om.Source = filepath.Join(bundle, om.Source)
		}
		return om, nil
	}
	if om.Type == "" {
		return om, errors.New("no type")
	}
	return om, nil
}

func defaultDevices() []nsinit.OCIDevice {
	var out []nsinit.OCIDevice
	for _, d := range []struct {
		name         string
		major, minor int64
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}} {
		out = append(out, nsinit.OCIDevice{Path: "/dev/" + d.name, Type: unix.S_IFCHR, Major: d.major, Minor: d.minor, Mode: 0o666})
	}
	return out
}

func replaceDevice(ds []nsinit.OCIDevice, d nsinit.OCIDevice) []nsinit.OCIDevice {
	for i := range ds {
		if ds[i].Path == d.Path {
			ds[i] = d
			return ds
		}
	}
	return append(ds, d)
}

func translateDevice(d specs.LinuxDevice) (nsinit.OCIDevice, error) {
	od := nsinit.OCIDevice{Path: filepath.Clean(d.Path), Major: d.Major, Minor: d.Minor, Mode: 0o666}
	if !strings.HasPrefix(od.Path, "/dev/") {
		return od, errors.New("path must be under /dev")
	}
	switch d.Type {
	case "c", "u":
		od.Type = unix.S_IFCHR
	case "b":
		od.Type = unix.S_IFBLK
	case "p":
		od.Type = unix.S_IFIFO
	default:
		return od, fmt.Errorf("type %q: want c, u, b or p", d.Type)
	}
	if d.FileMode != nil {
		od.Mode = uint32(d.FileMode.Perm())
	}
	if d.UID != nil {
		od.UID = *d.UID
	}
	if d.GID != nil {
		od.GID = *d.GID
	}
	return od, nil
}

// lastCap is the kernel's highest capability, asked on first use (the
// kernel's answer takes system calls that every start of the binary
// would pay).
var lastCap = sync.OnceValue(func() capability.Cap {
	c, err := capability.LastCap()
	if err != nil {
		return capability.Cap(unix.CAP_LAST_CAP)
	}
	return c
})
