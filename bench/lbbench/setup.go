package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const snapName = "bench-busybox"

// mode is one side of the comparison: root, or the unprivileged user.
type mode struct {
	name     string // "root" or "rootless"
	user     string // "" for root
	uid, gid int
	env      []string
	dir      string // work dir owned by the mode's user

	rootfs       string // shared busybox rootfs (root-owned, used read-only)
	podmanRootfs string // podman writes /etc/hosts & co into its rootfs: its own copy
	lbRootfs     string // what lightbox imports: a copy owned by the mode's user
	bundles      string // dir of OCI bundles: bundles/<name>/config.json
	runcRoot     string
	crunRoot     string
	lbRoot       string
	podman       []string // podman and its global flags
	podmanRun    []string // flags every podman run gets
	lbErr        string   // why lightbox cannot be measured in this mode ("" = it can)
	importMs     float64  // how long the busybox snapshot's import took
}

type bench struct {
	cfg   config
	work  string
	modes []*mode
	res   results
	// processes this run started and must stop (exec/memory targets).
	cleanups []func()
	pausePre map[int]bool // rootless podman pause processes that existed before
}

func newBench(ctx context.Context, c config) (*bench, error) {
	b := &bench{cfg: c}
	b.res.Settings = settings{Rounds: c.rounds, Runs: c.runs, Warmup: c.warmup, BatchRounds: c.batchRounds, BatchRuns: c.batchRuns}
	b.res.Machine = machineInfo()
	b.res.Versions = versions(c.lightbox)

	work, err := os.MkdirTemp("", "lightbox-bench-")
	if err != nil {
		return nil, err
	}
	b.work = work
	if err := os.Chmod(work, 0o755); err != nil {
		return nil, err
	}
	rootfs := filepath.Join(work, "rootfs")
	if err := makeRootfs(rootfs); err != nil {
		return nil, fmt.Errorf("busybox rootfs: %w", err)
	}
	log.Printf("work dir %s; busybox rootfs %s", work, rootfs)

	root := &mode{name: "root", rootfs: rootfs}
	root.env = append(filterEnv(os.Environ(), "LIGHTBOX_ROOT", "PATH"), "PATH="+stdPath)
	b.modes = append(b.modes, root)

	if c.user != "" {
		u, err := user.Lookup(c.user)
		if err != nil {
			return nil, fmt.Errorf("rootless user: %w (hack/test-user.sh %s makes it)", err, c.user)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		rtdir := fmt.Sprintf("/run/user/%d", uid)
		if err := os.MkdirAll(rtdir, 0o700); err != nil {
			return nil, err
		}
		if err := os.Chown(rtdir, uid, gid); err != nil {
			return nil, err
		}
		rl := &mode{name: "rootless", user: c.user, uid: uid, gid: gid, rootfs: rootfs}
		rl.env = []string{"PATH=" + stdPath, "HOME=" + u.HomeDir, "USER=" + c.user, "LOGNAME=" + c.user,
			"LANG=C.UTF-8", "XDG_RUNTIME_DIR=" + rtdir}
		b.modes = append(b.modes, rl)
		b.pausePre = pauseProcs(uid)
	}

	for _, m := range b.modes {
		if err := b.setupMode(ctx, m); err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
	}
	return b, nil
}

const stdPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func filterEnv(env []string, drop ...string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, d := range drop {
			if k == d {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// makeRootfs lays out a busybox root filesystem from Debian's
// busybox-static: /bin/busybox and a symlink per applet.
func makeRootfs(dir string) error {
	bb := "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		return fmt.Errorf("%w: install busybox-static", err)
	}
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "root", "run", "var/tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	_ = os.Chmod(filepath.Join(dir, "tmp"), 0o1777) // best effort: a workload that needs a sticky /tmp fails visibly
	data, err := os.ReadFile(bb)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), data, 0o755); err != nil {
		return err
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd":   "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":    "root:x:0:\nnogroup:x:65534:\n",
		"etc/hostname": "bench\n",
		"etc/hosts":    "127.0.0.1 localhost bench\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) setupMode(ctx context.Context, m *mode) error {
	m.dir = filepath.Join(b.work, m.name)
	m.podmanRootfs = filepath.Join(m.dir, "podman-rootfs")
	m.bundles = filepath.Join(m.dir, "bundles")
	m.runcRoot = filepath.Join(m.dir, "runc")
	m.crunRoot = filepath.Join(m.dir, "crun")
	m.lbRoot = filepath.Join(m.dir, "lightbox")
	for _, d := range []string{m.dir, m.bundles, m.runcRoot, m.crunRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	m.lbRootfs = filepath.Join(m.dir, "lightbox-rootfs")
	for _, dst := range []string{m.podmanRootfs, m.lbRootfs} {
		if out, err := exec.Command("cp", "-a", m.rootfs, dst).CombinedOutput(); err != nil {
			return fmt.Errorf("copy rootfs: %v: %s", err, out)
		}
	}
	// Bundles: /bin/true for cold runs; sleeps for exec and memory.
	for name, args := range map[string][]string{
		"true": {"/bin/true"},
		"exec": {"sleep", strconv.Itoa(execTag)},
		"mem":  {"sleep", strconv.Itoa(memTag)},
	} {
		if err := writeBundle(filepath.Join(m.bundles, name), m, args); err != nil {
			return fmt.Errorf("bundle %s: %w", name, err)
		}
	}
	if m.user != "" {
		if out, err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", m.uid, m.gid), m.dir).CombinedOutput(); err != nil {
			return fmt.Errorf("chown %s: %v: %s", m.dir, err, out)
		}
	}

	podmanRoot := filepath.Join(m.dir, "podman")
	m.podman = []string{"podman", "--root", podmanRoot + "/storage", "--runroot", podmanRoot + "/run",
		"--cgroup-manager", "cgroupfs", "--events-backend", "file"}
	m.podmanRun = []string{"--network", "none"}
	if m.user == "" {
		// Podman lowers its own RLIMIT_NPROC to 32768 at start and asks
		// for the host's hard limits otherwise; without CAP_SYS_RESOURCE
		// (this kind of machine) the runtime then fails with EPERM.
		nofile, nproc := rlimitHard(syscall.RLIMIT_NOFILE), rlimitHard(6 /* RLIMIT_NPROC */)
		nproc = min(nproc, 32768)
		m.podmanRun = append(m.podmanRun, "--ulimit", fmt.Sprintf("nofile=%d:%d", nofile, nofile),
			"--ulimit", fmt.Sprintf("nproc=%d:%d", nproc, nproc))
	} else {
		m.podmanRun = append(m.podmanRun, "--ulimit", "host")
	}

	// The lightbox snapshot, in a store of the mode's own, from a tree
	// the mode's user owns (as a user's own import would be).
	start := time.Now()
	out, err := m.output(ctx, 5*time.Minute, b.cfg.lightbox, "--root", m.lbRoot, "snapshot", "import", snapName, m.lbRootfs)
	if err != nil {
		m.lbErr = "lightbox: snapshot import: " + lastLine(out, err)
		log.Printf("%s: %s", m.name, m.lbErr)
	} else {
		m.importMs = float64(time.Since(start).Microseconds()) / 1000
	}
	return nil
}

func rlimitHard(res int) uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(res, &r); err != nil {
		return 1024
	}
	return r.Max
}

// writeBundle writes an OCI bundle for runc and crun on the shared rootfs
// (read-only), with new user, mount, pid, uts, ipc and network namespaces.
func writeBundle(dir string, m *mode, args []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	specArgs := []string{"spec", "--bundle", dir}
	if m.user != "" {
		specArgs = append(specArgs, "--rootless")
	}
	if out, err := exec.Command("runc", specArgs...).CombinedOutput(); err != nil {
		return fmt.Errorf("runc spec: %v: %s", err, out)
	}
	path := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(data, &spec); err != nil {
		return err
	}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = args
	spec["root"] = map[string]any{"path": m.rootfs, "readonly": true}
	spec["hostname"] = "bench"
	linux := spec["linux"].(map[string]any)
	nss, _ := linux["namespaces"].([]any)
	have := map[string]bool{}
	for _, ns := range nss {
		have[ns.(map[string]any)["type"].(string)] = true
	}
	for _, t := range []string{"pid", "network", "ipc", "uts", "mount", "user"} {
		if !have[t] {
			nss = append(nss, map[string]any{"type": t})
		}
	}
	linux["namespaces"] = nss
	if m.user == "" {
		// Identity mapping, as lightbox uses as root.
		idm := []any{map[string]any{"containerID": 0, "hostID": 0, "size": 65536}}
		linux["uidMappings"], linux["gidMappings"] = idm, idm
	} else {
		linux["uidMappings"] = []any{map[string]any{"containerID": 0, "hostID": m.uid, "size": 1}}
		linux["gidMappings"] = []any{map[string]any{"containerID": 0, "hostID": m.gid, "size": 1}}
	}
	data, err = json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// cmd runs argv as the mode's user, in its work dir, with its environment.
func (m *mode) cmd(ctx context.Context, argv ...string) *exec.Cmd {
	var c *exec.Cmd
	if m.user == "" {
		c = exec.CommandContext(ctx, argv[0], argv[1:]...)
		c.Env = m.env
	} else {
		full := append([]string{"-u", m.user, "--", "env", "-i"}, m.env...)
		c = exec.CommandContext(ctx, "runuser", append(full, argv...)...)
	}
	c.Dir = m.dir
	c.WaitDelay = 5 * time.Second
	return c
}

// output runs argv as the mode's user with a timeout and returns its
// combined output.
func (m *mode) output(ctx context.Context, timeout time.Duration, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := m.cmd(ctx, argv...)
	var buf bytes.Buffer
	c.Stdout, c.Stderr = &buf, &buf
	err := c.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v", timeout)
	}
	return buf.Bytes(), err
}

// detached runs argv as the mode's user for a command that leaves
// something running in the background (run -d, setsid -f): its output
// goes to a file, not a pipe the background process would hold open.
func (m *mode) detached(ctx context.Context, timeout time.Duration, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	f, err := os.CreateTemp("", "lbbench-out-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.Remove(f.Name()) }() // best effort cleanup
	defer func() { _ = f.Close() }()           // read-only, or nothing written through it
	c := m.cmd(ctx, argv...)
	c.Stdout, c.Stderr = f, f
	err = c.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v", timeout)
	}
	out, _ := os.ReadFile(f.Name())
	return out, err
}

// lastLine is the last non-empty line of out (the error, usually), or err.
func lastLine(out []byte, err error) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	s := strings.TrimSpace(lines[len(lines)-1])
	if s == "" && err != nil {
		s = err.Error()
	}
	// Keep the head (what failed) and the tail (why).
	if r := []rune(s); len(r) > 260 {
		s = string(r[:80]) + " … " + string(r[len(r)-170:])
	}
	return s
}

func (b *bench) cleanup() {
	for i := len(b.cleanups) - 1; i >= 0; i-- {
		b.cleanups[i]()
	}
	b.cleanups = nil
	b.sweep()
	for _, m := range b.modes {
		if m.user != "" {
			// The rootless pause process podman started for this run.
			for pid := range pauseProcs(m.uid) {
				if !b.pausePre[pid] {
					_ = syscall.Kill(pid, syscall.SIGKILL) // best effort: it may be gone already
				}
			}
		}
		// Podman's storage (in the work dir) may hold mounts of its
		// containers. (Not `system reset`: it also touches the host's
		// network configs.)
		_, _ = m.output(context.Background(), time.Minute, append(m.podman, "rm", "-a", "-f", "-t", "0")...) // best effort cleanup
	}
	if b.cfg.keep {
		log.Printf("kept %s", b.work)
		return
	}
	if out, err := exec.Command("rm", "-rf", "--one-file-system", b.work).CombinedOutput(); err != nil {
		log.Printf("could not remove %s: %v: %s", b.work, err, out)
	}
}

// pauseProcs lists the rootless podman pause processes of uid.
func pauseProcs(uid int) map[int]bool {
	out := map[int]bool{}
	for _, p := range listProcs() {
		if p.uid == uid && p.comm == "podman pause" {
			out[p.pid] = true
		}
	}
	return out
}

// sweep removes whatever this run may have left running: containers by
// their ids and busybox sleeps by their tags (owned by a mode's user).
func (b *bench) sweep() {
	bg := context.Background()
	for _, m := range b.modes {
		for _, rt := range []string{"runc", "crun"} {
			root := m.runcRoot
			if rt == "crun" {
				root = m.crunRoot
			}
			for _, id := range []string{"lbb-exec", "lbb-mem"} {
				_, _ = m.output(bg, time.Minute, rt, "--root", root, "delete", "-f", id) // best effort cleanup
			}
		}
		for _, tag := range allTags {
			for {
				p, ok := findSleep(tag, m.uid)
				if !ok {
					break
				}
				_ = syscall.Kill(p.pid, syscall.SIGKILL) // best effort: it may be gone already
				waitGone(tag, m.uid, 5*time.Second)
			}
		}
	}
}
