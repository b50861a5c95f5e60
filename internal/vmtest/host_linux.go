package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/beamhop/lightbox/internal/testutil"
)

// Tools maps the host programs the harness runs to the Debian packages
// that ship them; EnsureTools installs the missing ones.
var Tools = map[string]string{
	"qemu-system-x86_64": "qemu-system-x86",
	"mkfs.xfs":           "xfsprogs",
}

// EnsureTools installs (apt-get install --no-install-recommends, as root)
// the packages of the named programs that are not in PATH yet.
func EnsureTools(ctx context.Context, programs ...string) error {
	var missing []string
	for _, p := range programs {
		if _, err := exec.LookPath(p); err == nil {
			continue
		}
		pkg, ok := Tools[p]
		if !ok {
			return fmt.Errorf("vmtest: %s not in PATH and no package known for it", p)
		}
		missing = append(missing, pkg)
	}
	if len(missing) == 0 {
		return nil
	}
	install := func() ([]byte, error) {
		cmd := exec.CommandContext(ctx, "apt-get", append([]string{"-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", "--no-install-recommends"}, missing...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	if _, err := install(); err != nil {
		// Most often: no package lists yet on a fresh machine.
		if err := aptUpdate(ctx); err != nil {
			return err
		}
		if out, err := install(); err != nil {
			return fmt.Errorf("apt-get install %s: %w: %s", strings.Join(missing, " "), err, bytes.TrimSpace(out))
		}
	}
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("vmtest: %s still missing after installing %s", p, strings.Join(missing, " "))
		}
	}
	return nil
}

// MakeXFSImage makes a sparse file of size bytes at path holding an empty
// XFS filesystem (mkfs.xfs refuses less than 300 MB).
func MakeXFSImage(ctx context.Context, path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("xfs image: %w", err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("xfs image: %w", err)
	}
	if out, err := exec.CommandContext(ctx, "mkfs.xfs", "-q", "-f", path).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.xfs %s: %w: %s", path, err, bytes.TrimSpace(out))
	}
	return nil
}

// Disk is a raw image attached to the guest as an NVMe drive and mounted
// by the guest at /mnt/<Name> (MountPoint) before its program runs.
type Disk struct {
	Name    string // [a-z0-9]+; also the drive's serial number
	Image   string // raw image file on the host
	FSType  string // e.g. "xfs"
	Options string // mount options, e.g. "prjquota"
}

// Config describes one boot.
type Config struct {
	Kernel *Kernel
	// Binary is a static executable that becomes the guest's /init; it
	// must call GuestMain first thing (see the package doc).
	Binary string
	// Args reach the guest program as its arguments.
	Args []string
	// Env holds KEY=VALUE pairs for the guest program (no spaces: they
	// travel on the kernel command line).
	Env []string
	// Modules are loaded before the disks are mounted, with their
	// dependencies (e.g. "xfs").
	Modules []string
	Disks   []Disk
	// Timeout bounds the whole boot; 0 means 3 minutes. A guest that runs
	// past it is killed and Run returns an error with its console.
	Timeout time.Duration
	// MemoryMiB is the guest's memory; 0 means 512.
	MemoryMiB int
	// Files are copied into the guest's root filesystem (e.g. a busybox
	// and a rootfs for sandbox tests, other binaries).
	Files []File
	// Console, if set, receives the guest's console output as it comes.
	Console io.Writer
}

// File is a host file put into the guest's initial root filesystem (a
// tmpfs-like rootfs: it costs guest memory).
type File struct {
	Host  string      // path on the host
	Guest string      // absolute path in the guest; parents are made
	Mode  os.FileMode // permissions; 0 means 0755
}

// Result is what a finished boot reports.
type Result struct {
	ExitCode int           // the guest program's exit status
	Console  string        // everything the guest printed
	Elapsed  time.Duration // from starting qemu to its exit
}

// GuestError is returned by Run when the guest did not report a result:
// it crashed, hung or never started its program. Console holds its log.
type GuestError struct {
	Reason  string
	Console string
}

func (e *GuestError) Error() string {
	return "vm guest: " + e.Reason + "\n--- guest console ---\n" + e.Console + "\n--- end of guest console ---"
}

// guestConfig travels to the guest as /vmtest.json in the initramfs.
type guestConfig struct {
	Modules []string    `json:"modules"` // paths inside the initramfs, in load order
	Disks   []guestDisk `json:"disks"`
}

type guestDisk struct {
	Serial  string `json:"serial"`
	Mount   string `json:"mount"`
	FSType  string `json:"fstype"`
	Options string `json:"options"`
}

var diskNameRe = regexp.MustCompile(`^[a-z0-9]{1,20}$`)

// Run boots cfg.Kernel under qemu-system-x86_64 (TCG, one CPU) with
// cfg.Binary as init and waits for the guest's result. It returns the
// result whatever the program's exit status; a guest that reports no
// result (panic, hang, timeout) is a *GuestError.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Kernel == nil || cfg.Binary == "" {
		return nil, errors.New("vmtest: Config needs Kernel and Binary")
	}
	if err := checkStatic(cfg.Binary); err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	mem := cfg.MemoryMiB
	if mem == 0 {
		mem = 512
	}
	work, err := os.MkdirTemp("", "lightbox-vmtest-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(work) }() // best effort: a left scratch dir is litter only

	mods, err := cfg.Kernel.ResolveModules(cfg.Modules)
	if err != nil {
		return nil, err
	}
	gc := guestConfig{}
	entries := []cpioEntry{
		{Name: "dev", Mode: sIFDIR | 0o755},
		{Name: "dev/console", Mode: sIFCHR | 0o600, Major: 5, Minor: 1},
		{Name: "dev/null", Mode: sIFCHR | 0o666, Major: 1, Minor: 3},
		{Name: "proc", Mode: sIFDIR | 0o555},
		{Name: "sys", Mode: sIFDIR | 0o555},
		{Name: "tmp", Mode: sIFDIR | 0o1777},
		{Name: "run", Mode: sIFDIR | 0o755},
		{Name: "etc", Mode: sIFDIR | 0o755},
		{Name: "root", Mode: sIFDIR | 0o700},
		{Name: "mnt", Mode: sIFDIR | 0o755},
		{Name: "lib", Mode: sIFDIR | 0o755},
		{Name: "lib/modules", Mode: sIFDIR | 0o755},
		{Name: "init", Mode: sIFREG | 0o755, Source: cfg.Binary},
	}
	have := map[string]bool{}
	for _, e := range entries {
		have[e.Name] = true
	}
	for _, f := range cfg.Files {
		name := strings.TrimPrefix(filepath.Clean("/"+f.Guest), "/")
		if name == "" || have[name] || !filepath.IsAbs(f.Guest) {
			return nil, fmt.Errorf("vmtest: file %q: want a new absolute guest path", f.Guest)
		}
		for d := filepath.Dir(name); d != "."; d = filepath.Dir(d) {
			if !have[d] {
				have[d] = true
				entries = append(entries, cpioEntry{Name: d, Mode: sIFDIR | 0o755})
			}
		}
		mode := f.Mode.Perm()
		if mode == 0 {
			mode = 0o755
		}
		have[name] = true
		entries = append(entries, cpioEntry{Name: name, Mode: sIFREG | uint32(mode), Source: f.Host})
	}
	for _, m := range mods {
		name := "lib/modules/" + filepath.Base(m)
		entries = append(entries, cpioEntry{Name: name, Mode: sIFREG | 0o644, Source: m})
		gc.Modules = append(gc.Modules, "/"+name)
	}
	args := []string{
		"-accel", "tcg,thread=multi", "-smp", "1", "-m", strconv.Itoa(mem),
		"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-monitor", "none",
		"-kernel", cfg.Kernel.Vmlinuz, "-initrd", filepath.Join(work, "initrd.cpio"),
	}
	for i, d := range cfg.Disks {
		if !diskNameRe.MatchString(d.Name) {
			return nil, fmt.Errorf("vmtest: disk name %q: want [a-z0-9]{1,20}", d.Name)
		}
		entries = append(entries, cpioEntry{Name: "mnt/" + d.Name, Mode: sIFDIR | 0o755})
		gc.Disks = append(gc.Disks, guestDisk{Serial: d.Name, Mount: MountPoint(d.Name), FSType: d.FSType, Options: d.Options})
		id := fmt.Sprintf("disk%d", i)
		args = append(args,
			"-drive", "file="+d.Image+",format=raw,if=none,cache=unsafe,id="+id,
			"-device", "nvme,drive="+id+",serial="+d.Name)
	}
	gcJSON, err := json.Marshal(gc)
	if err != nil {
		return nil, err
	}
	entries = append(entries, cpioEntry{Name: guestConfigPath[1:], Mode: sIFREG | 0o644, Data: gcJSON})
	if err := writeCpioFile(filepath.Join(work, "initrd.cpio"), entries); err != nil {
		return nil, err
	}

	// nvme_core.io_timeout: a request that QEMU answers late (its host
	// busy) is waited for, not aborted after the default 30 s and failed
	// with EIO after the retries.
	cmdline := []string{"console=ttyS0", "quiet", "panic=-1", "nvme_core.io_timeout=180", envGuest + "=1"}
	for _, kv := range cfg.Env {
		if strings.ContainsAny(kv, " \t\n\"") || !strings.Contains(kv, "=") {
			return nil, fmt.Errorf("vmtest: env %q: want KEY=VALUE without spaces or quotes", kv)
		}
		cmdline = append(cmdline, kv)
	}
	if len(cfg.Args) > 0 {
		cmdline = append(cmdline, "--")
		for _, a := range cfg.Args {
			if a == "" || strings.ContainsAny(a, " \t\n\"") {
				return nil, fmt.Errorf("vmtest: argument %q: the kernel command line cannot carry it", a)
			}
		}
		cmdline = append(cmdline, cfg.Args...)
	}
	args = append(args, "-append", strings.Join(cmdline, " "))

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	cmd.Stdin = nil
	cmd.WaitDelay = 5 * time.Second
	var console testutil.Buffer
	var out io.Writer = &console
	if cfg.Console != nil {
		out = io.MultiWriter(&console, cfg.Console)
	}
	cmd.Stdout = out
	cmd.Stderr = out
	start := time.Now()
	runErr := cmd.Run()
	elapsed := time.Since(start)
	text := strings.ReplaceAll(console.String(), "\r\n", "\n")
	code, ok := parseResult(text)
	switch {
	case ctx.Err() != nil && !ok:
		return nil, &GuestError{Reason: fmt.Sprintf("no result after %s (timeout): killed", timeout), Console: text}
	case !ok && runErr != nil:
		return nil, &GuestError{Reason: fmt.Sprintf("qemu-system-x86_64: %v, no result from the guest", runErr), Console: text}
	case !ok:
		return nil, &GuestError{Reason: "the guest stopped without reporting a result (crash or kernel panic?)", Console: text}
	}
	return &Result{ExitCode: code, Console: text, Elapsed: elapsed}, nil
}

func writeCpioFile(path string, entries []cpioEntry) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	err = writeCpio(bw, entries)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

var resultRe = regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(resultMarker) + `(-?[0-9]+)$`)

// parseResult finds the guest's result line (the last one, should the
// program print the marker itself).
func parseResult(console string) (int, bool) {
	ms := resultRe.FindAllStringSubmatch(console, -1)
	if len(ms) == 0 {
		return 0, false
	}
	code, err := strconv.Atoi(ms[len(ms)-1][1])
	return code, err == nil
}

// checkStatic refuses a dynamically linked binary: the guest has no libc.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("vmtest: %s: %w", path, err)
	}
	defer func() { _ = f.Close() }() // read-only
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("vmtest: %s is dynamically linked; build it with CGO_ENABLED=0", path)
		}
	}
	return nil
}
