package runtime

import "os"

// TakeSpec is what a sandbox launched ahead of need (a warm pool's: no
// name given, no mounts, no command) gets when a caller takes it, before
// anything runs in it: what a launch would have given it from the
// caller's Spec.
type TakeSpec struct {
	// Name renames the sandbox (its directory and state); "" keeps the
	// generated one. Hostname is its hostname; "" = Name when renamed.
	Name, Hostname string
	// Mounts are bind mounts, with the launch's rules: targets resolved
	// inside the root, nosuid and nodev, read-only recursively when
	// asked, host paths idmapped in a store with a private range. Only
	// real root can make them for a running sandbox (CanTakeMounts).
	Mounts []MountSpec
	// Env is added on top of the sandbox's environment; Workdir (made
	// when missing) and User become the defaults of every command.
	Env           []string
	Workdir, User string
	// Leases are lease files the init holds for the sandbox's life (the
	// volumes of Mounts); Volumes their names, for List.
	Leases  []*os.File
	Volumes []string
}
