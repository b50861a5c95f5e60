package vmtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// envGuest marks the guest program's environment (set on the kernel
	// command line, inherited by the test process the init starts).
	envGuest        = "LIGHTBOX_VMTEST"
	guestConfigPath = "/vmtest.json"
	resultMarker    = "LIGHTBOX-VMTEST-RESULT exit="
)

// InGuest reports whether this process runs inside a vmtest guest.
func InGuest() bool { return os.Getenv(envGuest) == "1" }

// MountPoint is where the guest mounts the disk with this name.
func MountPoint(name string) string { return "/mnt/" + name }

// GuestMain turns the process into the guest's init when it is one (PID 1
// with LIGHTBOX_VMTEST=1), and returns at once otherwise. Call it first
// in TestMain, or from an init function of a _test.go file (a package
// has one TestMain; the init function avoids claiming it).
//
// As init it mounts /dev, /proc, /sys, /sys/fs/cgroup and /tmp, loads the
// modules, mounts the disks, then runs this same binary with the same
// arguments as its child (so a panicking test still yields a result),
// prints the result marker with the child's exit status, and powers the
// machine off. It never returns.
func GuestMain() {
	if os.Getpid() != 1 || !InGuest() {
		return
	}
	code := 1
	if err := guestSetup(); err != nil {
		fmt.Fprintf(os.Stderr, "vmtest guest: %v\n", err)
	} else {
		fmt.Fprintf(os.Stdout, "vmtest guest: ready at %s of uptime (kernel boot, modules, disks)\n", uptime())
		code = guestRun()
		fmt.Fprintf(os.Stdout, "vmtest guest: done at %s of uptime\n", uptime())
	}
	// The result goes out before unmounting: nothing after it matters to
	// the host, and the disks are scratch images.
	fmt.Fprintf(os.Stdout, "\n%s%d\n", resultMarker, code)
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF) // the guest's last act: if it fails the host's timeout ends the VM
	// Unreachable unless poweroff failed: the kernel panics when init
	// exits, and panic=-1 with -no-reboot ends qemu.
	os.Exit(code)
}

// PowerCutMarker is the console line PowerCut prints before it cuts the
// power: a host-side test looks for it in Result.Console to tell a cut
// from a guest program that ended by itself.
const PowerCutMarker = "LIGHTBOX-VMTEST-POWER-CUT"

// PowerCut ends the guest as a power cut would, from its program (a
// test): the machine restarts at once, without sync(2), so what the
// guest's page cache held and nothing wrote out is lost and the disks
// keep what reached them (qemu, run with -no-reboot, exits; its
// cache=unsafe keeps every write the guest made in the image file). It
// first prints PowerCutMarker and a result line saying 0, and waits until
// the console has sent them, so that Run returns a result. It never
// returns.
func PowerCut() {
	fmt.Fprintf(os.Stdout, "\n%s\n%s0\n", PowerCutMarker, resultMarker)
	_ = unix.IoctlSetInt(1, unix.TCSBRK, 1) // tcdrain: the lines out of the serial port before the reset; a failure only risks them
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	fmt.Fprintf(os.Stdout, "vmtest guest: power cut: reboot: %v\n", err)
	os.Exit(1)
}

func guestSetup() error {
	mounts := []struct{ src, dst, fstype, data string }{
		{"devtmpfs", "/dev", "devtmpfs", "mode=0755"},
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", ""},
		{"tmpfs", "/tmp", "tmpfs", "mode=1777"},
		{"tmpfs", "/run", "tmpfs", "mode=0755"},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, 0, m.data); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dst, err)
		}
	}
	data, err := os.ReadFile(guestConfigPath)
	if err != nil {
		return err
	}
	var gc guestConfig
	if err := json.Unmarshal(data, &gc); err != nil {
		return fmt.Errorf("%s: %w", guestConfigPath, err)
	}
	for _, m := range gc.Modules {
		if err := loadModule(m); err != nil {
			return err
		}
	}
	for _, d := range gc.Disks {
		dev, err := waitDisk(d.Serial, 30*time.Second)
		if err != nil {
			return err
		}
		if err := unix.Mount(dev, d.Mount, d.FSType, 0, d.Options); err != nil {
			return fmt.Errorf("mount %s (%s, %q) on %s: %w", dev, d.FSType, d.Options, d.Mount, err)
		}
	}
	return nil
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // read-only
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("finit_module %s: %w", path, err)
	}
	return nil
}

// waitDisk waits for the NVMe namespace whose controller has this serial
// number to appear (devices are probed asynchronously) and returns its
// device node.
func waitDisk(serial string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		ctrls, _ := filepath.Glob("/sys/class/nvme/nvme*")
		for _, c := range ctrls {
			s, err := os.ReadFile(filepath.Join(c, "serial"))
			if err != nil || strings.TrimSpace(string(s)) != serial {
				continue
			}
			ns, _ := filepath.Glob(filepath.Join(c, filepath.Base(c)+"n*"))
			for _, n := range ns {
				dev := "/dev/" + filepath.Base(n)
				if _, err := os.Stat(dev); err == nil {
					return dev, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("disk %s: no NVMe device after %s", serial, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// guestRun runs this binary again, as PID 2, with the same arguments and
// returns its exit status.
func guestRun() int {
	cmd := exec.Command("/init", os.Args[1:]...)
	cmd.Stdin = nil
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stdout // one ordered stream on the console
	cmd.Env = append(os.Environ(),
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TMPDIR=/tmp")
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ee.ExitCode() >= 0 {
			return ee.ExitCode()
		}
		fmt.Fprintf(os.Stdout, "vmtest guest: %v\n", err)
		return 128
	default:
		fmt.Fprintf(os.Stdout, "vmtest guest: %v\n", err)
		return 127
	}
}

func uptime() string {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0] + "s"
}
