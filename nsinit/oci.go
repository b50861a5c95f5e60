package nsinit

// OCIConfig is the part of Config that makes the init an OCI runtime's
// container init (package ociruntime): the root is a directory given as a
// path (the bundle's rootfs, prepared by the engine), the mounts, devices
// and paths are the bundle's config.json's, and the init holds the
// container's process until it is started. Validated and translated by
// ociruntime; the init only carries it out.
//
// Sequence: the init sets up the root and pivots, opens the pty (sending
// its master over the console socket), checks the process can start,
// reports ReportReady (the container is created) and then blocks opening the
// exec FIFO for writing; `start` opens it for reading, the init writes a
// byte, starts the process with its credentials and lives as long as it,
// exiting with its status. Meanwhile it serves OCIRequests (exec, signal)
// on the listener.
type OCIConfig struct {
	// Rootfs is the host path of the root; RootReadonly remounts it
	// read-only after the mounts.
	Rootfs       string `json:"rootfs"`
	RootReadonly bool   `json:"rootReadonly,omitempty"`
	// Propagation is the root's propagation: "" (rprivate), "rslave",
	// "slave", "private", "rprivate", "shared", "rshared", "unbindable",
	// "runbindable".
	Propagation string      `json:"propagation,omitempty"`
	Mounts      []OCIMount  `json:"mounts,omitempty"`
	Devices     []OCIDevice `json:"devices,omitempty"`
	// Mknod says device nodes can be made (no user namespace); else they
	// are binds of the host's nodes.
	Mknod         bool              `json:"mknod,omitempty"`
	Hostname      string            `json:"hostname,omitempty"`
	Domainname    string            `json:"domainname,omitempty"`
	Sysctl        map[string]string `json:"sysctl,omitempty"`
	MaskedPaths   []string          `json:"maskedPaths,omitempty"`
	ReadonlyPaths []string          `json:"readonlyPaths,omitempty"`
	// Process is the container's process; Seccomp applies to it and to
	// every exec'd process.
	Process OCIProcess `json:"process"`
	// ExecFifo is the host path of the FIFO start opens (for messages);
	// ExecFifoFD is an O_PATH fd of it, which the init reopens for
	// writing: the init, the root of a user namespace, need not be able
	// to reach the path.
	ExecFifo   string `json:"execFifo"`
	ExecFifoFD int    `json:"execFifoFD"`
	// Console is the fd of a connected unix socket the pty master is sent
	// over when Process.Terminal; -1 without.
	Console int `json:"console"`
	// PidsMaxFD, when not 0, is the container's cgroup's pids.max (v1),
	// opened by the runtime for reading and writing, with FDs.Workload
	// its tasks file: the init's threads are in a pids cgroup of its
	// own but its main thread (which /proc/PID/cgroup shows, and which
	// never makes a thread: see EnvOCIInit), and the thread that forks a
	// process joins the container's for the fork, allowing itself and
	// the main thread meanwhile (see pidsCgroup).
	PidsMaxFD int `json:"pidsMaxFD,omitempty"`
	// CgroupNS asks for a new cgroup namespace, which the init unshares
	// as it starts, in its cgroup by then (the runtime puts it there
	// before it sends the config), and every process it starts joins.
	// Cloned with one, the init had the runtime's cgroup (the engine's:
	// conmon's) as the root: the container read its own as
	// /../libpod-ID and saw its siblings' under /sys/fs/cgroup, not its
	// limits.
	CgroupNS bool `json:"cgroupNS,omitempty"`
	// PreserveFDs is how many fds from 3 on the process inherits.
	PreserveFDs int `json:"preserveFDs,omitempty"`
	// Seccomp is the compiled filter, nil for none.
	Seccomp []SockFilter `json:"seccomp,omitempty"`
}

// OCIMount is a mount of the bundle's config: a bind (Source a host path,
// Flags carrying MS_BIND[|MS_REC]) or a new filesystem of Type with Data
// ("key=value" or "key" parameters).
type OCIMount struct {
	Destination string `json:"destination"`
	Type        string `json:"type"`
	Source      string `json:"source"`
	Bind        bool   `json:"bind,omitempty"`
	Recursive   bool   `json:"recursive,omitempty"`
	// Attrs are MOUNT_ATTR_* to set (AttrsRecursive: on submounts too);
	// Propagation is MS_SHARED, MS_SLAVE, MS_PRIVATE or MS_UNBINDABLE
	// (with MS_REC), 0 for none.
	Attrs       uint64   `json:"attrs,omitempty"`
	Propagation uintptr  `json:"propagation,omitempty"`
	Data        []string `json:"data,omitempty"`
	// CopyUp fills a new tmpfs with what the root has at Destination
	// before the tmpfs covers it (the option tmpcopyup).
	CopyUp bool `json:"copyUp,omitempty"`
}

// OCIDevice is a device node to make in /dev.
type OCIDevice struct {
	Path  string `json:"path"`
	Type  uint32 `json:"type"` // S_IFCHR, S_IFBLK or S_IFIFO
	Major int64  `json:"major"`
	Minor int64  `json:"minor"`
	Mode  uint32 `json:"mode"`
	UID   uint32 `json:"uid"`
	GID   uint32 `json:"gid"`
}

// EnvOCIInit, set to "1" in the environment of an OCI container's init,
// has it keep its main thread locked to its main goroutine from the
// start (package initialization runs there): see OCIConfig.PidsMaxFD.
const EnvOCIInit = "LIGHTBOX_OCI_INIT"

// OCIProcess is a process to start: the container's or an exec'd one.
type OCIProcess struct {
	Terminal       bool     `json:"terminal,omitempty"`
	Rows           uint16   `json:"rows,omitempty"`
	Cols           uint16   `json:"cols,omitempty"`
	Args           []string `json:"args"`
	Env            []string `json:"env,omitempty"`
	Cwd            string   `json:"cwd"`
	UID            uint32   `json:"uid"`
	GID            uint32   `json:"gid"`
	AdditionalGids []uint32 `json:"additionalGids,omitempty"`
	Umask          *uint32  `json:"umask,omitempty"`
	// Caps are capability numbers per set; a nil Caps keeps every one.
	Caps            *OCICaps    `json:"caps,omitempty"`
	Rlimits         []OCIRlimit `json:"rlimits,omitempty"`
	NoNewPrivileges bool        `json:"noNewPrivileges,omitempty"`
	OOMScoreAdj     *int        `json:"oomScoreAdj,omitempty"`
}

// OCICaps are the capability sets of a process.
type OCICaps struct {
	Bounding    []uintptr `json:"bounding,omitempty"`
	Effective   []uintptr `json:"effective,omitempty"`
	Inheritable []uintptr `json:"inheritable,omitempty"`
	Permitted   []uintptr `json:"permitted,omitempty"`
	Ambient     []uintptr `json:"ambient,omitempty"`
}

// OCIRlimit is one resource limit (RLIMIT_* number).
type OCIRlimit struct {
	Type int    `json:"type"`
	Hard uint64 `json:"hard"`
	Soft uint64 `json:"soft"`
}

// OCI request operations, on the listener of an OCI init.
const (
	OpOCIExec   = "oci-exec"   // start Process with 3 stdio fds (none with a terminal: the reply carries the master); replies Started then Exit
	OpOCISignal = "oci-signal" // signal the process this connection started
)

// OCIRequest is a message to an OCI init; replies are Reply.
type OCIRequest struct {
	Version int         `json:"version"`
	Op      string      `json:"op"`
	Process *OCIProcess `json:"process,omitempty"`
	Signal  int         `json:"signal,omitempty"`
}
