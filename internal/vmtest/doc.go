// Package vmtest runs Go tests inside a virtual machine with a stock Debian
// kernel, for kernel features the host's kernel may lack (XFS project
// quotas; later cgroup v2 controllers). It is test support, not product
// code.
//
// The host side (Setup, Boot; Run for full control) installs
// qemu-system-x86 with apt when missing, downloads Debian's cloud kernel
// package once into CacheDir and keeps its vmlinuz and modules (signatures
// stripped), builds an initramfs whose /init is the static test binary
// itself, and boots qemu-system-x86_64 with TCG (no KVM needed) with raw
// disk images attached as NVMe drives. It reads the serial console for the
// guest's result line; a guest that crashes, panics or hangs past the
// timeout is an error carrying its console, never a hung test.
//
// The guest side is GuestMain, called first thing in the test binary (in
// TestMain, or in a _test.go init function). Outside a guest it returns at
// once. As the guest's PID 1 it mounts /dev, /proc, /sys,
// /sys/fs/cgroup (v2), /tmp and /run, loads the modules, mounts each disk
// at MountPoint(name), and runs the same binary again as its child with the
// arguments of the boot (e.g. -test.run=^TestInVM -test.v); the child's
// exit status is the result, then the machine powers off. Tests meant for
// the guest start with GuestOnly(t).
//
// Config.Files puts more host files in the guest's root (a busybox, a
// rootfs tarball, the lightbox binary); Config.Modules loads more modules
// with their dependencies (e.g. "overlay", "veth"). A cgroup v2 test
// boots like the XFS one (volstore's TestXFSInVM) and finds the cgroup2
// hierarchy mounted at /sys/fs/cgroup.
//
// A boot to result takes 4-6 s under TCG on an idle 2-core machine (10-25 s
// when the machine is busy); keep the number of boots per test run small
// by running many guest tests per boot.
package vmtest
