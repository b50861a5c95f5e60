package lightbox

import (
	"fmt"
	"io"
	"syscall"
	"time"
)

// Network selects a sandbox's network.
type Network string

const (
	// NetworkPrivate is the sandbox's own network namespace with a
	// user-mode stack attached for outbound access (the default: "").
	NetworkPrivate Network = "private"
	// NetworkNone is the sandbox's own network namespace with only
	// loopback.
	NetworkNone Network = "none"
	// NetworkHost shares the host's network namespace.
	NetworkHost Network = "host"
	// NetworkPrivatePasta and NetworkPrivateSlirp4netns are
	// NetworkPrivate with its user-mode stack chosen (plain
	// NetworkPrivate takes slirp4netns when it is installed, else pasta;
	// see the README for what each costs). Both run outside the
	// sandbox's pid namespace and never as the host's root: slirp4netns
	// (~0.3 MB per idle sandbox, the default) or pasta (passt's, ~29 MB
	// of buffers per sandbox and a keeper, faster under heavy traffic).
	NetworkPrivatePasta       Network = "private:pasta"
	NetworkPrivateSlirp4netns Network = "private:slirp4netns"
)

// Resources are limits on a sandbox. The zero value is not "no limits":
// each zero field takes the default its comment names, so a zero
// Resources means a pids limit of DefaultPidsLimit, a /dev/shm of
// DefaultShmMiB, logs capped at DefaultLogMiB per stream, and no memory
// or CPU limit. Ask for no pids or log limit with -1.
//
// Where a sandbox's cgroup is made, whatever Resources says (the zero
// value included: it still counts usage and OOM kills, and gc removes it):
//   - as root, cgroup v2: /sys/fs/cgroup/lightbox/<sandbox>;
//   - as root, cgroup v1 or hybrid: lightbox/<sandbox> under the caller's
//     own cgroup in each of the pids, memory, cpu and cpuacct hierarchies;
//   - unprivileged, cgroup v2: lightbox/<sandbox> under the nearest
//     ancestor of the caller's cgroup that the caller owns and whose
//     cgroup.subtree_control enables pids, memory and cpu (systemd's
//     user@UID.service delegation: run lightbox inside it, e.g. from
//     systemd-run --user --scope -p Delegate=yes);
//   - unprivileged, cgroup v1 (or v2 with no such delegation): none. The
//     pids limit is then RLIMIT_NPROC inside the sandbox's user namespace,
//     which the kernel counts per uid: where the store maps the caller's
//     subordinate range, a workload that changes uid (it has CAP_SETUID)
//     starts a new count, and SandboxInfo.Limits says "per uid". A memory
//     or CPU limit is an error wrapping ErrLimitUnsupported: an option the
//     host cannot honour is refused, never ignored.
//
// In a cgroup, the workloads (every command and what it starts) sit in a
// child cgroup, workload/, that holds the pids limit; the sandbox's
// cgroup holds the memory and CPU limits and its pids limit leaves the
// init some headroom, so a fork bomb at the limit cannot stop the init
// from serving Destroy (or refusing Exec with EAGAIN).
// SandboxInfo.Limits says how each limit holds. Errors name the CLI flag
// of the field.
type Resources struct {
	// MemoryMiB caps the sandbox's memory, /dev/shm included (--memory);
	// 0 = no limit. At least MinMemoryMiB. A command that runs out is
	// OOM-killed: its ExitError says OOMKilled. On cgroup v1 the limit is
	// the workloads' (every command and what it starts): the init's own
	// few MiB are counted beside it, up to 64 MiB, so that the OOM killer
	// never picks the init, which would end the sandbox.
	MemoryMiB int64
	// MemorySwapMiB caps memory plus swap (--memory-swap), at least
	// MemoryMiB; 0 = MemoryMiB (no swap), -1 = unlimited swap. Needs
	// MemoryMiB.
	MemorySwapMiB int64
	// CPUs caps CPU time in cores (--cpus): 1.5 = one and a half; 0 = no
	// limit. At most the host's CPU count. On cgroup v1 it caps the
	// workloads', and the init gets a tenth of a CPU beside it, so that
	// workloads that keep the limit busy cannot delay Destroy or the
	// timeout.
	CPUs float64
	// PidsLimit caps the processes (threads count) in the sandbox
	// (--pids-limit); 0 = DefaultPidsLimit, -1 = no limit. At least
	// MinPidsLimit. In a cgroup it bounds the workloads (the init's own
	// threads are counted beside them, up to 64 more); as RLIMIT_NPROC
	// (no cgroup) it bounds the processes of each uid of the sandbox, the
	// init's threads included in root's.
	PidsLimit int64
	// ShmMiB is the size of the sandbox's /dev/shm (--shm-size); writing
	// past it fails with ENOSPC. 0 = DefaultShmMiB.
	ShmMiB int64
	// LogMiB caps what a sandbox's logs keep on disk per stream when its
	// main command's output goes to them (detached; a main command on a
	// terminal too): the newest output is kept, and Logs says when older
	// output was dropped. 0 = DefaultLogMiB, -1 = no cap. Not a cgroup
	// limit: it holds everywhere.
	LogMiB int64
}

// Defaults and minimums of Resources.
const (
	DefaultPidsLimit = 4096
	DefaultShmMiB    = 64
	DefaultLogMiB    = 16
	// MinMemoryMiB is the least memory limit a sandbox starts with (its
	// init and a shell).
	MinMemoryMiB = 8
	// MinPidsLimit is the least pids limit: the init's own threads count.
	MinPidsLimit = 16
)

// SandboxOptions describe a sandbox to launch. Zero fields take defaults.
type SandboxOptions struct {
	// Snapshot names the snapshot the sandbox's root is made from.
	Snapshot string
	// Name is the sandbox's name and hostname; "" = generated.
	Name string
	// Mounts maps absolute paths inside the sandbox to what is mounted there.
	Mounts map[string]Mount
	// Workdir is the working directory of commands; "" = the snapshot's.
	Workdir string
	// Env is "KEY=value" entries applied on top of the snapshot's own.
	Env []string
	// User is "user[:group]" (names or ids) inside the sandbox that
	// commands run as; "" = the snapshot's.
	User string
	// Command is an optional main process; nil = none: the sandbox idles,
	// serving Exec and Shell, until destroyed (or Timeout passes). With a
	// Command the sandbox lives as long as that process.
	Command []string
	// UseImageCommand, with no Command, makes the snapshot's own command
	// (SnapshotConfig.Command: its Entrypoint followed by its Cmd) the
	// main process, as `lightbox run -d SNAPSHOT` and docker do; a
	// snapshot that names none idles as without it. Off by default: with
	// no Command a launched sandbox idles.
	UseImageCommand bool
	// Stdin, Stdout and Stderr connect the main Command when any is set
	// (as `lightbox run --keep` does); all nil = its output goes to the
	// sandbox's logs (Sandbox.Logs) and its stdin is empty. Tty runs it on
	// a terminal inside the sandbox (Stdout then gets both streams; TERM
	// is xterm unless Env sets it), TtySize (rows, columns) its initial
	// size; Sandbox.MainCommand signals or resizes it.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Tty            bool
	TtySize        [2]uint16
	// Network: "" = NetworkPrivate; NetworkNone, NetworkHost.
	Network Network
	// CACerts "host" (CACertsHost; --ca-certs host) binds the host's CA
	// bundle ($SSL_CERT_FILE, else the host distribution's) read-only over
	// each CA bundle the snapshot has where distributions keep one
	// (/etc/ssl/certs/ca-certificates.crt and the others Go's crypto/x509
	// searches), for a host whose proxy intercepts TLS with a CA only the
	// host trusts. Nothing is written into the sandbox: a commit keeps the
	// snapshot's own bundle. A snapshot with no bundle is an error (install
	// the distribution's ca-certificates). "" = the snapshot's own.
	CACerts string
	// Ports publishes sandbox ports on the host with NetworkPrivate:
	// "[HOSTIP:]HOSTPORT:PORT[/tcp|udp]", on 127.0.0.1 unless HOSTIP is
	// given.
	Ports []string
	// Resources limit what the sandbox may use; zero fields take the
	// defaults documented on Resources.
	Resources Resources
	// Timeout: 0 = none; enforced by the sandbox's own init.
	Timeout time.Duration
	// StopSignal is what Sandbox.Stop and Destroy send the main command
	// first; 0 = the snapshot's STOPSIGNAL, else SIGTERM (docker's
	// --stop-signal).
	StopSignal syscall.Signal
	// DiskMiB caps the sandbox's writable layer; 0 = no cap.
	DiskMiB int64
	// AllowUserNamespaces lets the sandbox's processes create user
	// namespaces of their own, as a rootless container engine or a
	// browser's sandbox running inside needs. Off by default: the seccomp
	// profile refuses them (unshare and clone with CLONE_NEWUSER fail with
	// EPERM, clone3 with ENOSYS), as docker's and podman's do, because a
	// process gets every capability in a user namespace of its own, and
	// with it the kernel code behind new mount, network and other
	// namespaces. /proc and /sys stay read-only and
	// masked inside such namespaces either way, and a fresh proc or sysfs
	// cannot be mounted there (see README).
	AllowUserNamespaces bool
	// DetachedTeardown, with a Command and once it has exited, makes
	// Destroy free the sandbox's name at once and return when its init
	// has exited (what it held, such as volume leases, is free then),
	// leaving the removal of a directory that holds many files to a
	// detached process (for a program about to exit, as `lightbox run`
	// is; gc removes what a kill -9 of that process leaves). It does not
	// apply with a private network or DiskMiB, whose teardown Destroy
	// waits for. It also says the sandbox goes once ended: without it, a
	// sandbox that ends by itself is kept (exited, for Commit) and its
	// writable layer is synced to disk before its exit status is
	// recorded, so that after a power cut an exited sandbox commits whole
	// files (one syncfs of the store's filesystem as it ends).
	DetachedTeardown bool
}

// Mount is what SandboxOptions.Mounts puts at a path: a host path
// (Source) or a named volume (Volume), exactly one of them.
type Mount struct {
	// Source is a host path to bind; relative to the caller's working
	// directory. It must exist.
	Source string
	// Volume is a named volume, created on first use.
	Volume string
	// ReadOnly makes the mount read-only, recursively.
	ReadOnly bool
	// Overlay makes a host path's mount copy-on-write (podman's -v
	// SRC:DST:O): Source, a directory, is a read-only lower layer and the
	// sandbox's writes stay in its own upper dir, thrown away with the
	// sandbox (and never part of a commit). Several sandboxes can then
	// build in one checkout at once (each its own node_modules) and the
	// host's copy stays as it was. Not with ReadOnly, not for a volume.
	Overlay bool
	// NoCopy keeps a new volume empty (docker's and podman's -v
	// NAME:DST:nocopy). Without it, a volume that was never filled is
	// filled, once, by the first sandbox that mounts it over a
	// directory of its snapshot that has entries, while the volume is
	// empty: it copies that directory's content into the volume (owners,
	// modes, times and symlinks as they are, never following one), so
	// that a volume at /usr/lib/node_modules starts with the image's
	// modules instead of hiding them. Once filled a volume is never
	// filled again, even when emptied (also when the launch that filled
	// it was killed before it recorded the fill); a volume made before
	// lightbox filled volumes is never filled. A ReadOnly mount fills
	// the volume before it is made read-only, as docker's and podman's
	// do; a volume root keeps for its user (VolumeOptions.Owner) is
	// filled by the user's first sandbox, as one they made. Two
	// sandboxes launched at once with a new volume fill it once: the
	// second waits for the first's copy. A copy that fails (the volume's quota) fails the
	// launch and leaves the volume empty and unfilled. Only for a volume.
	NoCopy bool
}

// Result is what a finished command left.
type Result struct {
	// ExitCode is the command's exit status; 128+N when killed by signal N;
	// -1 when it was killed as its context ended (Exec's error is the
	// context's then, and the streams hold what it wrote until then).
	ExitCode int
	// Stdout and Stderr hold at most OutputLimit bytes each; past it the
	// returned error says the output was truncated.
	Stdout, Stderr []byte
}

// OutputLimit is how much of each stream Exec and Shell keep: 16 MiB.
// Use a Cmd with your own writers to keep more.
const OutputLimit = 16 << 20

// ExitError reports a command that ran and exited non-zero (or was killed
// by a signal), as os/exec.ExitError does.
type ExitError struct {
	// ExitCode is the command's exit status (128+N for signal N).
	ExitCode int
	// Signal is the signal that killed it, 0 if it exited.
	Signal int
	// Stderr is the tail of its standard error, when it was captured.
	Stderr []byte
	// OOMKilled: the sandbox's cgroup counted an OOM kill while the
	// command ran: it (or a process it waited for) ran out of memory.
	OOMKilled bool
	// TimedOut: the sandbox's Timeout passed while the command ran, and
	// the sandbox ended it (SIGTERM, SIGKILL after a grace period).
	TimedOut bool
	// Destroyed: the sandbox was being destroyed (Destroy, its launcher's
	// exit) as the command ended: the destroy ended it, most likely.
	Destroyed bool
	// OutputTruncated, from Exec and Shell: the command wrote more than
	// OutputLimit bytes to a stream, and its Result holds only the first
	// OutputLimit of each (the error says so).
	OutputTruncated bool
}

func (e *ExitError) Error() string {
	var msg string
	switch {
	case e.OOMKilled:
		msg = fmt.Sprintf("out of memory: command exited with status %d", e.ExitCode)
	case e.Signal != 0:
		msg = fmt.Sprintf("command killed by signal %d", e.Signal)
	default:
		msg = fmt.Sprintf("command exited with status %d", e.ExitCode)
	}
	switch {
	case e.TimedOut:
		msg = "the sandbox's timeout passed: " + msg
	case e.Destroyed:
		msg = "the sandbox was destroyed: " + msg
	}
	if e.OutputTruncated {
		msg += fmt.Sprintf(" (output truncated: kept the first %d bytes per stream)", OutputLimit)
	}
	return msg
}
