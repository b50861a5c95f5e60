// Package runtime runs sandboxes: it names them, keeps their state on disk
// under $ROOT/sandboxes, launches each one's init (package nsinit) in new
// namespaces by re-executing the binary, runs commands in them through the
// init's exec socket, detaches from and re-attaches to them across
// processes, and tears them down — including what a kill -9 left (GC).
//
// It is handed plain data: layer directories, host paths of bind mounts
// and volumes, lease files to keep open. It never imports the snapshot
// store or the volume store; the root package resolves those and composes
// this package.
//
// On disk, per sandbox ($ROOT/sandboxes/<name>/):
//
//	state.json     name, snapshot, creation time, volumes, init pid
//	lock           flock held by the init for its whole life, and the
//	               init's own stderr; the init writes the final Status
//	               here (exit code) when the sandbox ends on its own
//	init.sock      the init's exec socket
//	stdout.log, stderr.log   the main command's output (when not attached)
//	upper/ work/   the overlay's writable layer (the sandbox's root's)
//	freeze.lock    held while the sandbox is frozen (Sandbox.Freeze)
//	frozen.json    the processes a freeze stopped, for whoever resumes
//	               them if the freezer dies
//	rootfs/        where the init attaches the root, in its own namespace
//
// /etc/hostname, /etc/hosts and /etc/resolv.conf are not on the host's
// disk: the init keeps them on a tmpfs of its own (nsinit.Config.Etc). The
// store's targets layer ($ROOT/sandboxes/.targets, made once: empty
// etc/hostname, etc/hosts, etc/resolv.conf, proc/, sys/, dev/) is the
// bottom layer of every sandbox's overlay, so that an image without those
// mount targets does not get them made in each sandbox's upper dir.
//
// As real root the directory is root's, mode 0710, group the sandbox's
// root's when the store has a private range: the init finds rootfs/ in it
// by name and nothing else. The runtime hands the init its layers, upper
// and work dirs, and every bind (nosuid, nodev, idmapped for host paths
// in a store with a private range) as descriptors (hostside_linux.go).
//
// A sandbox is "running" while its lock is held, "exited" when the lock is
// free and holds a Status, and "dead" otherwise (its init was killed, or
// its launcher died before detaching): GC removes dead sandboxes; exited
// ones keep their name until removed, as in docker.
//
// Every mount of a sandbox lives in the sandbox's own mount namespace, so
// the host's mount table never holds one, whatever is killed when.
//
// Manager, Sandbox and Cmd values are safe for concurrent use, except that
// one Cmd, like an os/exec.Cmd, is started and waited for once.
package runtime
