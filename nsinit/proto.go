package nsinit

import (
	"os"
	"time"

	"github.com/beamhop/lightbox/internal/sys"
)

// The messages between the runtime and the init, in the order they go:
//
//  1. the runtime starts the init with the config pipe's read end, the
//     report pipe's write end and the other FDs as ExtraFiles, each
//     numbered 3+its index (never a fixed number: runc's
//     newParentProcess);
//  2. as real root, the runtime sends Config.Passed descriptors on
//     FDs.Passer (SendFDs; see "Descriptors from the host side");
//  3. the runtime writes one Config on the config pipe and closes it
//     (WriteConfig, ReadConfig);
//  4. the init writes one Report on the report pipe: ReportReady once it
//     serves the exec socket, or ReportError with the real cause of the
//     failure, then exits; a report pipe closed with no Report means the
//     init died during setup (ReadReport returns ErrNoReport);
//  5. clients send Requests and read Replies on the exec socket, one
//     message a packet, stdio and pty descriptors as SCM_RIGHTS (WriteMsg,
//     ReadMsg);
//  6. a sandbox that ends on its own leaves a Status in its lock file
//     (MarshalStatus, UnmarshalStatus), which is also the init's stdout
//     and stderr (opened for appending): the Status replaces what the
//     init logged before it and is the file's first JSON value.
//
// Every message goes through the one codec in codec.go (and msg_linux.go
// for the descriptors), used by both sides (runc: libcontainer/sync.go).

// Version is the version of every message type below. The runtime and the
// init are the same binary, but a detached sandbox can outlive an upgrade
// of it: both sides refuse a message of another version.
const Version = 1

// Config is the launch spec the runtime sends to the init, validated by
// the runtime before it is sent. Paths of Root, RootDir and Mounts
// sources are host paths, read before pivot_root.
type Config struct {
	Version int `json:"version"`
	// Name is the sandbox's name, also its hostname.
	Name string `json:"name"`
	// Root is the root filesystem ("overlay" and the parameters from
	// package overlay), attached on RootDir.
	Root    FSMount `json:"root"`
	RootDir string  `json:"rootDir"`
	// Etc are the sandbox's own small files (/etc/hostname, /etc/hosts,
	// /etc/resolv.conf): the init writes them on a tmpfs of its own and
	// binds each over its target (created if missing), so they never touch
	// the host's disk nor the upper dir; OpEtc and Take.Etc replace their
	// content later. The binds go on the Mounts (and a take's) above their
	// targets (a volume at /etc), once those are made and filled, and
	// under a mount exactly at a target; in such a mount a target is
	// never a symlink followed, and a read-only one is never written to
	// make a missing target (the launch fails).
	Etc []File `json:"etc,omitempty"`
	// Mounts are the caller's bind mounts.
	Mounts []Mount `json:"mounts,omitempty"`
	// Env, Workdir and User are the defaults of every command.
	Env     []string `json:"env,omitempty"`
	Workdir string   `json:"workdir,omitempty"`
	User    string   `json:"user,omitempty"`
	// Network is "none", "host" or "private". With "host" the sandbox
	// shares the host's network namespace (and /sys is a read-only bind of
	// the host's).
	Network string `json:"network"`
	// Timeout ends the sandbox after this long; 0 = never.
	Timeout time.Duration `json:"timeout,omitempty"`
	// SyncOnEnd makes the init sync the filesystem of the sandbox's upper
	// dir (syncfs), then that of FDs.Lock, the store's, before it records
	// a Status there: for a sandbox that stays once it has ended (`run
	// --keep`, `run -d`), whose upper a later commit reads. The overlay
	// is volatile (overlay.Spec.Volatile), so nothing else syncs what the
	// sandbox wrote, and without this a power cut could keep a recorded
	// status beside an upper of empty or cut files. A status on disk
	// then means an upper on disk. The upper is on the lock's filesystem
	// unless FDs.UpperFS names another (a capped writable layer on a
	// loop-mounted image, whose file is on the store's filesystem: that
	// one is synced first, then the store's, which holds the image).
	// Unset for a sandbox removed as it ends (`run` without --keep): its
	// end costs no sync.
	SyncOnEnd bool `json:"syncOnEnd,omitempty"`
	// DevptsGID5 adds gid=5 to devpts (only when gid 5 is mapped).
	DevptsGID5 bool `json:"devptsGID5,omitempty"`
	// AllowUserNamespaces lets workloads create user namespaces of their
	// own; by default the seccomp profile refuses them.
	AllowUserNamespaces bool `json:"allowUserNamespaces,omitempty"`
	// Pooled: the sandbox waits in a warm pool to be taken. Its init does
	// not hand over when idle (handover_linux.go) until it has served a
	// connection, nor frees memory (server_linux.go's launchOver): a
	// pooled init that only launched idles at ~0.81 MB anonymous against
	// ~0.85 handed over, and the first command after a handover costs the
	// fresh copy's first-use faults, paid by the take (bench/NOTES.md,
	// 2026-12-02 twentieth and twenty-first sessions).
	Pooled bool `json:"pooled,omitempty"`
	// Nproc, when set, is the RLIMIT_NPROC of every process inside (the
	// pids bound where no cgroup could be made; counted per user
	// namespace since Linux 5.14).
	Nproc int64 `json:"nproc,omitempty"`
	// ShmBytes is the size of /dev/shm; 0 = tmpfs's default.
	ShmBytes int64 `json:"shmBytes,omitempty"`
	// Cgroup, when set, says the runtime has put the init in the
	// sandbox's own cgroup: the init makes it the root of a new cgroup
	// namespace before anything else runs, and mounts it read-only on
	// /sys/fs/cgroup: ["cgroup2"] for the unified hierarchy, else the v1
	// controllers. Unset, /sys/fs/cgroup is an empty read-only tmpfs.
	Cgroup []string `json:"cgroup,omitempty"`
	// WorkloadOOMScore, when set, is the oom_score_adj each workload gets
	// as soon as it is forked: above the init's, so that at the sandbox's
	// memory limit the OOM killer ends a workload, not the init (lowering
	// the init's own score needs CAP_SYS_RESOURCE, which a caller may
	// lack).
	WorkloadOOMScore int `json:"workloadOOMScore,omitempty"`
	// FDs are the numbers of the files the runtime passed.
	FDs FDs `json:"fds"`
	// Passed is how many descriptors the runtime sends on FDs.Passer
	// after the config (as real root: see "Descriptors from the host
	// side" below); RootParentFD, FSMount.ParamFDs and Mount.FD name them.
	Passed int `json:"passed,omitempty"`
	// RootParentFD is RootDir's parent directory, opened by the runtime
	// in the init's mount namespace; the runtime lets the sandbox's root
	// search it (not list it), so that RootDir is found below it even
	// once mounted over.
	RootParentFD PassedFD `json:"rootParentFD,omitempty"`
	// OCI, when set, makes this an OCI container's init (see OCIConfig):
	// Root, Etc, Mounts and the defaults above are unused.
	OCI *OCIConfig `json:"oci,omitempty"`

	// etcFiles are the Etc files on the init's tmpfs, open, once setup
	// made them: the server rewrites them through these.
	etcFiles []*os.File
	// filled are the targets of the Mounts with Fill that setup filled,
	// for the ready Report.
	filled []string
}

// Descriptors from the host side. As real root, a store's sandboxes map
// to a private id range, so the init cannot walk the host paths to its
// layers and upper dir (the store is root's, mode 0700) nor make an
// idmapped mount of a host directory (that takes privilege over the
// source's filesystem). The runtime does both for it: it opens RootDir's
// parent, the layers, upper and work dirs through /proc/<init>/root (so
// that they are in the init's mount namespace, where overlayfs may use
// them), makes every bind a detached mount (open_tree, then
// mount_setattr: nosuid, nodev, private, read-only and idmapped as
// asked), and sends them all on the Passer socket (SCM_RIGHTS, in order,
// at most MaxFDsPerMessage a message with a one-byte payload) before it
// writes the config. The init names each layer to overlayfs as
// /proc/self/fd/N, moves the binds onto their targets, and closes them
// all before any workload starts.

// PassedFD names a descriptor sent on FDs.Passer by its position, counted
// from 1; 0 means none.
type PassedFD int

// MaxFDsPerMessage bounds the descriptors of one SCM_RIGHTS message (the
// kernel's SCM_MAX_FD is 253).
const MaxFDsPerMessage = 200

// FDs are the init's inherited files, by number.
type FDs struct {
	Report   int   `json:"report"`   // write end: Reports until ready
	Liveness int   `json:"liveness"` // read end: EOF = the launcher is gone
	Listener int   `json:"listener"` // the bound exec socket
	Lock     int   `json:"lock"`     // the sandbox's name lock; status is written here
	Exe      int   `json:"exe"`      // the binary the init was started from, -1 if none
	Passer   int   `json:"passer"`   // socket carrying Config.Passed descriptors, -1 if none
	Leases   []int `json:"leases,omitempty"`
	// Workload, when not 0, is the workloads' cgroup's cgroup.threads
	// (v1: tasks), opened by the runtime: the spawner thread writes "0"
	// to it to move itself there, so that every workload is born in it.
	Workload int `json:"workload,omitempty"`
	// WorkloadV1 are the tasks files of the workloads' cgroup in the
	// other v1 hierarchies that have one (memory, cpu), opened by the
	// runtime and written as Workload is: the workloads' memory and CPU
	// limits (and the OOM killer, and CFS throttling) then hold them
	// without the init.
	WorkloadV1 []int `json:"workloadV1,omitempty"`
	// CPUMax, when the sandbox has a CPU limit, are the files that hold
	// it (v1: cpu.cfs_quota_us of the sandbox's cgroup, then of
	// workload/; v2: the sandbox's cpu.max), opened for writing by the
	// runtime. Just before the init kills every process of the sandbox it
	// lifts the limit ("max", or "-1" where the kernel refuses that): a
	// throttled task runs its own exit only when its group has quota
	// left, so 50 busy loops at --cpus 0.01 took ~8 s to die after their
	// SIGKILL, and the tasks it kills never run user code again.
	CPUMax []int `json:"cpuMax,omitempty"`
	// Gone, when not 0, is the write end of a pipe the init writes one
	// byte to ("G") just before it exits, once no other process of the
	// sandbox is left and the leases are closed: the launcher may then
	// remove the sandbox's tree while the kernel tears the init down.
	// EOF without it (a crash, processes the SIGKILL did not end in
	// time) means: wait for the init's exit. Handed over with the init.
	Gone int `json:"gone,omitempty"`
	// UpperFS, when not 0 (with SyncOnEnd), is a regular file, read-only
	// and empty, on the filesystem of the sandbox's upper dir when that
	// is not FDs.Lock's (the runtime compares their devices): the init
	// syncs it before the lock's. A file, not the upper dir: syncfs
	// refuses an O_PATH descriptor, and the init holds no directory of
	// the host. Handed over with the init.
	UpperFS int `json:"upperFS,omitempty"`
}

// FSMount is a filesystem made with fsopen/fsconfig.
type FSMount struct {
	FSType string      `json:"fstype"`
	Params []sys.Param `json:"params"`
	// ParamFDs replaces the value of Params[i] by /proc/self/fd/N, N the
	// passed descriptor: a directory the runtime opened for the init.
	ParamFDs map[int]PassedFD `json:"paramFDs,omitempty"`
}

// Mount is a bind mount. Source is a host path; Target an absolute path
// inside, resolved inside the root.
type Mount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
	// FD is the bind made ready by the runtime (a detached mount, with
	// its attributes set); the init only moves it onto Target. Without
	// one the init makes a recursive bind of Source, nosuid and nodev.
	FD PassedFD `json:"fd,omitempty"`
	// Overlay, when set (and no FD), makes the mount a copy-on-write
	// overlay of Source: these overlayfs parameters, whose "lowerdir" the
	// init sets to Source, opened by itself and named by descriptor.
	Overlay []sys.Param `json:"overlay,omitempty"`
	// Fill fills the mount, a volume never filled before, with what the
	// root has at Target before the mount covers it (docker's and
	// podman's copy-up of a new volume): when that is a directory with
	// entries and the volume is empty. The copy is made by descriptor
	// and follows no symlink, as tmpcopyup's; the ready Report's Filled
	// names the targets filled. A copy that fails (a quota) removes what
	// it made and fails the setup. A fill interrupted (its launcher and
	// init killed) is redone: see fillVolume. With ReadOnly the volume
	// comes writable (FD) and is made read-only, recursively, once
	// filled and in place, before anything runs in the sandbox.
	Fill bool `json:"fill,omitempty"`
	// FillLock, with Fill, is the volume's fill lock (an inherited fd,
	// 0 = none): the init holds it while it fills the volume and closes
	// it once the mount is made, so that no other sandbox fills, or
	// redoes the fill of, the volume while this init copies, even once
	// the launcher that took the lock is gone.
	FillLock int `json:"fillLock,omitempty"`
	// FillRecord, with FillLock, is written at the start of the fill
	// lock's file as soon as the volume is filled: the launcher may be
	// killed before it hears of the fill, and the next launch finds the
	// record there.
	FillRecord string `json:"fillRecord,omitempty"`
}

// File is one of Config.Etc: Target is an absolute path inside the
// sandbox, its base name unique among the files.
type File struct {
	Target string `json:"target"`
	Data   []byte `json:"data"`
}

// ReportKind is the kind of a Report.
type ReportKind string

// Report kinds.
const (
	// ReportReady: the init is set up and serves the exec socket.
	ReportReady ReportKind = "ready"
	// ReportError: setup failed; Report.Error says why. The init exits.
	ReportError ReportKind = "error"
)

// Report is what the init writes, one JSON line, on the report pipe once
// its setup is over.
type Report struct {
	Version int        `json:"version"`
	Type    ReportKind `json:"type"`
	Error   string     `json:"error,omitempty"`
	// Filled (ReportReady) are the targets of the Mounts with Fill that
	// the init filled.
	Filled []string `json:"filled,omitempty"`
}

// DroppedXattr is the extended attribute on a capped log file (see
// Exec.LogMax) that holds how many bytes of older output were dropped, in
// decimal.
const DroppedXattr = "user.lightbox.dropped"

// CutsXattr is the extended attribute on a capped log file that counts,
// in decimal, the cuts (CappedLog's compactions) begun and ended: odd
// while one moves the file's bytes. A reader that finds the same even
// count before and after a read knows no cut moved what it read (a
// follower of the log, runtime.Sandbox.Logs).
const CutsXattr = "user.lightbox.cuts"

// Op is the operation of a Request.
type Op string

// Request operations.
const (
	OpExec    Op = "exec"    // start Exec; the reply is Started or an error, then Exit (the connection closes without it when the sandbox ends while the process runs)
	OpSignal     = "signal"  // signal the process this connection started; as a connection's first request, the main command: reply OK or Error
	OpResize     = "resize"  // set the window size of this connection's pty; as a connection's first request, of the main command's terminal the init holds (TtyLog); reply OK or Error
	OpWait       = "wait"    // reply with the main command's Exit once it ends
	OpDetach     = "detach"  // stop watching the liveness pipe
	OpDestroy    = "destroy" // Signal (0: SIGTERM) to the main command, SIGTERM to the rest, Grace, SIGKILL everything; reply, then exit
	OpTake       = "take"    // apply Take to a sandbox started ahead of need; reply OK or Error
	OpEtc        = "etc"     // replace the content of Request.Etc's files (each one of Config.Etc); reply OK or Error
)

// The errors of a signal (or wait) request for the main command, as the
// init words them in a Reply: clients match them.
const (
	MsgNoMain     = "the sandbox has no main command"
	MsgMainExited = "the main command has exited"
)

// Request is a client's message on the exec socket.
type Request struct {
	Version int           `json:"version"`
	Op      Op            `json:"op"`
	Exec    *Exec         `json:"exec,omitempty"`
	Take    *Take         `json:"take,omitempty"`
	Etc     []File        `json:"etc,omitempty"`
	Signal  int           `json:"signal,omitempty"`
	Grace   time.Duration `json:"grace,omitempty"`
	Rows    uint16        `json:"rows,omitempty"`
	Cols    uint16        `json:"cols,omitempty"`
}

// Exec is a command to start. Without Tty the request carries three fds
// (stdin, stdout, stderr); with Tty it carries none and the Started reply
// carries the pty's master, unless TtyLog.
type Exec struct {
	Args []string `json:"args"`
	// Env is added on top of the sandbox's environment.
	Env []string `json:"env,omitempty"`
	// Dir and User override the sandbox's defaults when set.
	Dir  string `json:"dir,omitempty"`
	User string `json:"user,omitempty"`
	Tty  bool   `json:"tty,omitempty"`
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
	// LogMax, without Tty, makes the init relay stdout and stderr (the
	// sandbox's log files, opened read-write) through pipes, keeping at
	// most LogMax bytes of each, the newest (see DroppedXattr).
	LogMax int64 `json:"logMax,omitempty"`
	// TtyLog, with Tty, makes the init copy the terminal's output into
	// the one fd the request carries (a log file; capped at LogMax when
	// set, then opened read-write): a detached main command's terminal
	// outlives the client that started it. The Started reply then
	// carries no master.
	TtyLog bool `json:"ttyLog,omitempty"`
	// Main marks the sandbox's main command: the sandbox lives as long as
	// it, its status is recorded, and it is not killed when this
	// connection closes. At most one.
	Main bool `json:"main,omitempty"`
	// NoStarted: the client waits for the command's end only, so no
	// Started reply comes; the Exit reply (with the pid) follows, or an
	// Error one when the command could not start. One message and one
	// wakeup of each side fewer per command (bench/NOTES.md, execserve).
	// Ignored with Tty (the Started reply carries the master). An init
	// that predates it sends Started anyway: a client skips it.
	NoStarted bool `json:"noStarted,omitempty"`
}

// Take is what a sandbox of a warm pool gets when it is taken (OpTake),
// before any workload runs in it. The request carries the descriptors of
// the mounts (detached mounts with their attributes set, made on the host
// side as at launch; Mount.FD counts them from 1), then Leases lease files
// the init holds for the sandbox's life.
type Take struct {
	Hostname string   `json:"hostname,omitempty"`
	Etc      []File   `json:"etc,omitempty"` // new content of Config.Etc files, as OpEtc
	Mounts   []Mount  `json:"mounts,omitempty"`
	Env      []string `json:"env,omitempty"` // added on top of the sandbox's environment
	Workdir  string   `json:"workdir,omitempty"`
	User     string   `json:"user,omitempty"`
	Leases   int      `json:"leases,omitempty"`
}

// ReplyType is the kind of a Reply.
type ReplyType string

// Reply types.
const (
	ReplyStarted ReplyType = "started"
	ReplyExit              = "exit"
	ReplyOK                = "ok"
	ReplyError             = "error"
)

// Reply is the init's message on the exec socket.
type Reply struct {
	Version int       `json:"version"`
	Type    ReplyType `json:"type"`
	Pid     int       `json:"pid,omitempty"` // Started: pid inside the sandbox
	// Exit: the status; Code is 128+Signal when killed by a signal.
	// Error: 127 (not found) or 126 (not executable) when the command
	// could not start for that reason, else 0.
	Code   int    `json:"code,omitempty"`
	Signal int    `json:"signal,omitempty"`
	Error  string `json:"error,omitempty"`
	// TimedOut, with Exit: the sandbox's timeout passed and the sandbox
	// ended the command (an init that predates it never says so).
	TimedOut bool `json:"timedOut,omitempty"`
	// Destroyed, with Exit: the sandbox was being destroyed (a destroy
	// request, its launcher's exit, a SIGTERM to its init) as the
	// command ended (an init that predates it never says so).
	Destroyed bool `json:"destroyed,omitempty"`
}

// Status is what the init writes into the sandbox's lock file when the
// sandbox ends on its own: its main command exited, or its timeout passed.
// A lock file with no Status belongs to a running sandbox (when locked) or
// a dead one (when not).
type Status struct {
	Version    int       `json:"version"`
	ExitCode   int       `json:"exitCode"`
	Signal     int       `json:"signal,omitempty"`
	TimedOut   bool      `json:"timedOut,omitempty"`
	FinishedAt time.Time `json:"finishedAt"`
}
