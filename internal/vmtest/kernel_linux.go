package vmtest

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/beamhop/lightbox/internal/lockfile"
)

// KernelMetaPackage is the Debian meta-package whose dependency names the
// kernel the guest boots: Debian's cloud kernel, which has
// CONFIG_XFS_QUOTA, built-in NVMe and virtio, and XFS as a module.
const KernelMetaPackage = "linux-image-cloud-amd64"

// Kernel is a Debian kernel unpacked in the cache: its image and its
// modules directory (lib/modules/<version>).
type Kernel struct {
	Package   string // e.g. linux-image-6.1.0-56-cloud-amd64
	Version   string // e.g. 6.1.0-56-cloud-amd64
	Vmlinuz   string
	ModuleDir string
}

// CacheDir is where downloads and unpacked kernels are kept between runs:
// $LIGHTBOX_VMTEST_CACHE, else /var/cache/lightbox-vmtest.
func CacheDir() string {
	if d := os.Getenv("LIGHTBOX_VMTEST_CACHE"); d != "" {
		return d
	}
	return "/var/cache/lightbox-vmtest"
}

var kernelPkgRe = regexp.MustCompile(`^\s*Depends:\s*(linux-image-[0-9][^\s]*)\s*$`)

// kernelPackage asks apt which numbered package the meta-package depends
// on, running apt-get update once if apt knows none.
func kernelPackage(ctx context.Context) (string, error) {
	for attempt := 0; ; attempt++ {
		out, err := exec.CommandContext(ctx, "apt-cache", "depends", KernelMetaPackage).CombinedOutput()
		if err == nil {
			for _, line := range strings.Split(string(out), "\n") {
				if m := kernelPkgRe.FindStringSubmatch(line); m != nil {
					return m[1], nil
				}
			}
		}
		if attempt > 0 {
			return "", fmt.Errorf("apt-cache depends %s: no numbered kernel package: %v: %s", KernelMetaPackage, err, bytes.TrimSpace(out))
		}
		if err := aptUpdate(ctx); err != nil {
			return "", err
		}
	}
}

func aptUpdate(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "apt-get", "-o", "DPkg::Lock::Timeout=300", "update", "-qq")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get update: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// EnsureKernel returns the current Debian cloud kernel, downloading
// (apt-get download) and unpacking (dpkg-deb -x) it into the cache on
// first use. Module signatures are stripped at unpack time: the kernel
// does not require them and checking them doubles module load time under
// TCG. Safe for concurrent use by several processes (a lock in the cache).
func EnsureKernel(ctx context.Context) (*Kernel, error) {
	cache := CacheDir()
	pkg, err := kernelPackage(ctx)
	if err != nil {
		// Offline (no package lists, no mirror): any kernel already in
		// the cache will do.
		if k := cachedKernel(cache); k != nil {
			return k, nil
		}
		return nil, err
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	lk, err := lockfile.Exclusive(ctx, filepath.Join(cache, ".lock"))
	if err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	defer lk.Close()
	dir := filepath.Join(cache, pkg)
	if k, err := loadKernel(pkg, dir); err == nil {
		return k, nil
	}
	tmp, err := os.MkdirTemp(cache, ".tmp-"+pkg+"-")
	if err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }() // best effort: a left scratch dir is litter only
	download := func(pkg string) error {
		dl := exec.CommandContext(ctx, "apt-get", "download", pkg)
		dl.Dir = tmp
		if out, err := dl.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get download %s: %w: %s", pkg, err, bytes.TrimSpace(out))
		}
		return nil
	}
	if err := download(pkg); err != nil {
		// Stale package lists name a kernel the mirror has dropped:
		// update, ask again; offline, fall back to the cache.
		derr := err
		if err := aptUpdate(ctx); err == nil {
			if pkg2, err := kernelPackage(ctx); err == nil {
				pkg, dir = pkg2, filepath.Join(cache, pkg2)
				if k, err := loadKernel(pkg, dir); err == nil {
					return k, nil
				}
				derr = download(pkg)
			}
		}
		if derr != nil {
			if k := cachedKernel(cache); k != nil {
				return k, nil
			}
			return nil, derr
		}
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("apt-get download %s: expected one .deb, found %d", pkg, len(debs))
	}
	tree := filepath.Join(tmp, "tree")
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], tree).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dpkg-deb -x %s: %w: %s", debs[0], err, bytes.TrimSpace(out))
	}
	out := filepath.Join(tmp, "out")
	if err := os.MkdirAll(filepath.Join(out, "modules"), 0o755); err != nil {
		return nil, err
	}
	vmlinuz, _ := filepath.Glob(filepath.Join(tree, "boot", "vmlinuz-*"))
	if len(vmlinuz) != 1 {
		return nil, fmt.Errorf("%s: expected one boot/vmlinuz-*, found %d", pkg, len(vmlinuz))
	}
	if err := os.Rename(vmlinuz[0], filepath.Join(out, "vmlinuz")); err != nil {
		return nil, err
	}
	version := strings.TrimPrefix(filepath.Base(vmlinuz[0]), "vmlinuz-")
	// Keep every module, flat, unsigned: a few MB more than xfs alone, and
	// later guests (cgroup tests, other filesystems) need no new download.
	modRoot := filepath.Join(tree, "lib", "modules", version)
	err = filepath.WalkDir(modRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".ko") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(out, "modules", d.Name()), stripModuleSignature(data), 0o644)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: modules: %w", pkg, err)
	}
	if err := os.WriteFile(filepath.Join(out, "version"), []byte(version+"\n"), 0o644); err != nil {
		return nil, err
	}
	_ = os.RemoveAll(dir) // if it stays, the rename below fails and says so; a half-made leftover of a crash
	if err := os.Rename(out, dir); err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	return loadKernel(pkg, dir)
}

// cachedKernel returns the newest complete kernel in the cache, or nil.
func cachedKernel(cache string) *Kernel {
	dirs, _ := filepath.Glob(filepath.Join(cache, "linux-image-*"))
	var best *Kernel
	var bestTime int64
	for _, d := range dirs {
		k, err := loadKernel(filepath.Base(d), d)
		if err != nil {
			continue
		}
		if fi, err := os.Stat(d); err == nil && fi.ModTime().UnixNano() > bestTime {
			best, bestTime = k, fi.ModTime().UnixNano()
		}
	}
	return best
}

func loadKernel(pkg, dir string) (*Kernel, error) {
	v, err := os.ReadFile(filepath.Join(dir, "version"))
	if err != nil {
		return nil, err
	}
	k := &Kernel{
		Package:   pkg,
		Version:   strings.TrimSpace(string(v)),
		Vmlinuz:   filepath.Join(dir, "vmlinuz"),
		ModuleDir: filepath.Join(dir, "modules"),
	}
	if _, err := os.Stat(k.Vmlinuz); err != nil {
		return nil, err
	}
	return k, nil
}

const moduleSigMagic = "~Module signature appended~\n"

// stripModuleSignature removes the signature appended to a .ko (struct
// module_signature, 12 bytes ending with the big-endian signature length,
// then the magic string); other data is returned as is.
func stripModuleSignature(data []byte) []byte {
	if !bytes.HasSuffix(data, []byte(moduleSigMagic)) {
		return data
	}
	end := len(data) - len(moduleSigMagic)
	if end < 12 {
		return data
	}
	sigLen := int(binary.BigEndian.Uint32(data[end-4 : end]))
	cut := end - 12 - sigLen
	if cut < 0 {
		return data
	}
	return data[:cut]
}

// moduleDepends reads the depends= field of a module's .modinfo section
// (the .deb ships no modules.dep: depmod makes it at install time).
func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	defer func() { _ = f.Close() }() // read-only
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s: no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

// ResolveModules returns the files of the named modules and of everything
// they depend on, dependencies first (the order to load them in).
func (k *Kernel) ResolveModules(names []string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string) error
	visit = func(name string) error {
		name = strings.ReplaceAll(name, "-", "_")
		switch state[name] {
		case 1:
			return fmt.Errorf("module %s: dependency cycle", name)
		case 2:
			return nil
		}
		state[name] = 1
		p, err := k.findModule(name)
		if err != nil {
			return err
		}
		deps, err := moduleDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return fmt.Errorf("module %s: %w", name, err)
			}
		}
		state[name] = 2
		order = append(order, p)
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// findModule finds name.ko; module names treat '-' and '_' alike.
func (k *Kernel) findModule(name string) (string, error) {
	for _, cand := range []string{name, strings.ReplaceAll(name, "_", "-")} {
		p := filepath.Join(k.ModuleDir, cand+".ko")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("module %s: not in kernel %s", name, k.Version)
}
