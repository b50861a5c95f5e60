//go:build linux

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/testutil"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Engines driving lightbox-runc: Debian's containerd (ctr) and podman
// (hack/packages.txt), each on a busybox image the test makes as a
// `docker save` tar.

// runcLink is a lightbox-runc symlink to the binary under test, in a
// directory every user can read.
func runcLink(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lightbox-runc-bin-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin, err := filepath.Abs(binPath)
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "lightbox-runc")
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	return link
}

// busyboxArchive writes a docker-save tar of a busybox image tagged tag.
func busyboxArchive(t *testing.T, tag string) string {
	t.Helper()
	rootfs := testutil.BusyboxRootfs(t)
	dst := filepath.Join(t.TempDir(), "busybox.tar")
	testutil.DockerArchive(t, dst, tag, ispec.ImageConfig{
		Cmd: []string{"sh"},
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	}, testutil.TarDir(t, rootfs))
	return dst
}

type cmdResult struct {
	stdout, stderr string
	code           int
}

// runTool runs name args with env added, within a minute (in a cleanup
// too, after t.Context is done).
func runTool(t *testing.T, env []string, name string, args ...string) cmdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cmdResult{out.String(), errb.String(), 0}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return r
}

func mustTool(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	r := runTool(t, env, name, args...)
	if r.code != 0 {
		t.Fatalf("%s %s: exit %d\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// privateContainerd starts Debian's containerd with its root, state and
// sockets under a fresh directory (the CRI plugin off) and returns its
// socket; it is stopped (SIGTERM, then SIGKILL) when the test ends.
func privateContainerd(t *testing.T) string {
	t.Helper()
	bin := testutil.NeedTool(t, "containerd")
	testutil.NeedTool(t, "ctr")
	testutil.NeedTool(t, "containerd-shim-runc-v2")
	dir, err := os.MkdirTemp("", "lightbox-containerd-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "containerd.sock")
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc", filepath.Join(dir, "debug.sock"))
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", filepath.Join(dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("containerd log:\n%s", lastLines(string(b), 40))
		}
		if n := hostMountsUnder(t, dir+"/"); n != 0 {
			t.Errorf("%d mounts left under %s", n, dir)
			return // never delete through a mount
		}
		os.RemoveAll(dir)
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if r := runTool(t, nil, "ctr", "--address", sock, "version"); r.code == 0 {
			return sock
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("containerd did not answer on %s:\n%s", sock, lastLines(string(b), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// TestContainerdRunsLightboxRunc: containerd's runc shim
// (io.containerd.runc.v2) with lightbox-runc as its runc binary runs a
// container of an imported image: its stdout and exit status, a bind
// mount, ctr task exec and ctr task kill.
func TestContainerdRunsLightboxRunc(t *testing.T) {
	testutil.RootOnly(t)
	sock := privateContainerd(t)
	link := runcLink(t)
	ns := fmt.Sprintf("lightbox-test-%d", os.Getpid())
	t.Cleanup(func() { removeCgroups(t, ns) })
	ctr := func(args ...string) cmdResult {
		t.Helper()
		return runTool(t, nil, "ctr", append([]string{"--address", sock, "--namespace", ns}, args...)...)
	}
	mustCtr := func(args ...string) string {
		t.Helper()
		r := ctr(args...)
		if r.code != 0 {
			t.Fatalf("ctr %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
		return r.stdout
	}
	const ref = "lightbox.test/busybox:1"
	mustCtr("image", "import", busyboxArchive(t, ref))
	if out := mustCtr("image", "ls", "-q"); !strings.Contains(out, ref) {
		t.Fatalf("ctr image ls after import: %q, want %s", out, ref)
	}

	// stdout, exit status and a bind mount, in one run.
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "in"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := ctr("run", "--rm", "--runc-binary", link,
		"--mount", "type=bind,src="+host+",dst=/data,options=rbind:rw",
		ref, "once", "sh", "-c", "cat /data/in; echo from the container > /data/out; echo hello; exit 7")
	if r.code != 7 || r.stdout != "from the host\nhello\n" {
		t.Fatalf("ctr run: exit %d, stdout %q (stderr %q), want 7 and the host file and hello", r.code, r.stdout, r.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(host, "out")); err != nil || string(b) != "from the container\n" {
		t.Fatalf("bind mount: the container's write reads %q, %v on the host", b, err)
	}

	// A detached task: exec into it, then kill it.
	mustCtr("run", "-d", "--runc-binary", link, ref, "long", "sh", "-c", "echo up > /tmp/up; while :; do sleep 0.05; done")
	t.Cleanup(func() {
		ctr("task", "kill", "-s", "SIGKILL", "long")
		ctr("task", "delete", "-f", "long")
		ctr("container", "delete", "long")
	})
	waitFor(t, "the task writes /tmp/up", func() bool {
		return ctr("task", "exec", "--exec-id", "probe", "long", "cat", "/tmp/up").stdout == "up\n"
	})
	r = ctr("task", "exec", "--exec-id", "e1", "long", "sh", "-c", "echo from exec; cat /tmp/up; exit 3")
	if r.code != 3 || r.stdout != "from exec\nup\n" {
		t.Fatalf("ctr task exec: exit %d, stdout %q (stderr %q), want 3 and from exec, up", r.code, r.stdout, r.stderr)
	}
	if out := mustCtr("task", "ps", "long"); len(strings.Fields(out)) < 4 {
		t.Fatalf("ctr task ps: %q, want the task's processes", out)
	}
	mustCtr("task", "kill", "-s", "SIGKILL", "long")
	waitFor(t, "the task stops after kill", func() bool {
		return strings.Contains(ctr("task", "ls").stdout, "STOPPED")
	})
	mustCtr("task", "delete", "long")
	mustCtr("container", "delete", "long")
	if out := mustCtr("task", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("ctr task ls after delete: %q", out)
	}
}

// TestContainerdRunTerminal: ctr run -t, the pty master handed to the
// runc shim over its console socket. The init kept create's stdout and
// stderr, pipes the shim reads to their end before it takes the master:
// ctr run -t hung with nothing shown, the container created and never
// started (runc's init makes the terminal its stdio).
func TestContainerdRunTerminal(t *testing.T) {
	testutil.RootOnly(t)
	testutil.NeedTool(t, "script")
	testutil.NeedTool(t, "timeout")
	sock := privateContainerd(t)
	link := runcLink(t)
	ns := fmt.Sprintf("lightbox-test-tty-%d", os.Getpid())
	t.Cleanup(func() { removeCgroups(t, ns) })
	ctr := []string{"ctr", "--address", sock, "--namespace", ns}
	const ref = "lightbox.test/busybox:1"
	mustTool(t, nil, ctr[0], append(ctr[1:], "image", "import", busyboxArchive(t, ref))...)
	t.Cleanup(func() {
		runTool(t, nil, ctr[0], append(ctr[1:], "task", "kill", "-s", "SIGKILL", "tty1")...)
		runTool(t, nil, ctr[0], append(ctr[1:], "task", "delete", "-f", "tty1")...)
		runTool(t, nil, ctr[0], append(ctr[1:], "container", "delete", "tty1")...)
	})
	// ctr run -t needs a terminal of its own: script gives it one.
	cmd := strings.Join(ctr, " ") + " run --rm -t --runc-binary " + link + " " + ref + " tty1 sh -c 'tty; echo in a terminal; exit 4'"
	r := runTool(t, nil, "timeout", "30", "script", "-qec", cmd, "/dev/null")
	if out := strings.ReplaceAll(r.stdout, "\r", ""); r.code != 4 || !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "in a terminal\n") {
		t.Fatalf("ctr run -t: exit %d, stdout %q, stderr %q: want 4, a pty and the echo (124: it hung)", r.code, r.stdout, r.stderr)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, what, ok)
}

// removeCgroups removes the cgroup /name (and anything left below it) in
// every hierarchy: the parent the runc shim puts a namespace's containers
// under, which no runtime removes.
func removeCgroups(t *testing.T, name string) {
	t.Helper()
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	if d := "/sys/fs/cgroup/" + name; fileExists(d) {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		var all []string
		filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				all = append(all, p)
			}
			return nil
		})
		for i := len(all) - 1; i >= 0; i-- {
			if err := os.Remove(all[i]); err != nil {
				t.Errorf("remove cgroup %s: %v", all[i], err)
			}
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// podmanLightbox is podman with lightbox-runc as its runtime and its
// storage in temporary directories (removed when the test ends), with
// the busybox image ref loaded from a docker-save tar. Rootless,
// podman's user namespace: lightbox-runc runs as its root. On this kind
// of machine podman needs the cgroupfs manager, the file events logger
// and rlimits within the hard ones (podmanRun's: its defaults need
// CAP_SYS_RESOURCE); --network none leaves the host's network alone.
func podmanLightbox(t *testing.T, ref string) func(args ...string) cmdResult {
	t.Helper()
	bin := testutil.NeedTool(t, "podman")
	testutil.NeedTool(t, "conmon")
	link := runcLink(t)
	dir, err := os.MkdirTemp("", "lightbox-podman-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if n := hostMountsUnder(t, dir+"/"); n != 0 {
			t.Errorf("%d mounts left under %s", n, dir)
			return
		}
		// Rootless podman's files belong to ids of its user namespace:
		// only podman unshare removes them.
		if os.Geteuid() != 0 {
			runTool(t, []string{"HOME=" + dir, "XDG_RUNTIME_DIR=" + filepath.Join(dir, "xdg")}, bin, "--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"), "--storage-driver", "vfs", "unshare", "rm", "-rf", filepath.Join(dir, "root"), filepath.Join(dir, "runroot"))
		}
		os.RemoveAll(dir)
	})
	xdg := filepath.Join(dir, "xdg")
	if err := os.Mkdir(xdg, 0o700); err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=" + dir, "XDG_RUNTIME_DIR=" + xdg, "XDG_CONFIG_HOME=" + filepath.Join(dir, "config")}
	global := []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"), "--tmpdir", filepath.Join(dir, "tmp"),
		"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", link}
	podman := func(args ...string) cmdResult {
		t.Helper()
		return runTool(t, env, bin, append(append([]string{}, global...), args...)...)
	}
	if r := podman("load", "-i", busyboxArchive(t, ref)); r.code != 0 {
		t.Fatalf("podman load: exit %d: %s", r.code, r.stderr)
	}
	return podman
}

// podmanRun is podman run's options every test here gives.
var podmanRun = []string{"--network", "none", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"}

// TestPodmanRunsLightboxRunc: podman --runtime lightbox-runc run --rm of
// an image loaded from a docker-save tar, as root and rootless. Its
// stdout, exit status and a bind mount.
func TestPodmanRunsLightboxRunc(t *testing.T) {
	const ref = "lightbox.test/busybox:1"
	podman := podmanLightbox(t, ref)
	host := t.TempDir()
	os.Chmod(host, 0o777)
	if err := os.WriteFile(filepath.Join(host, "in"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := podman(append(append([]string{"run", "--rm"}, podmanRun...),
		"-v", host+":/data", ref, "sh", "-c", "cat /data/in; echo from the container > /data/out; id -u; exit 7")...)
	if r.code != 7 || r.stdout != "from the host\n0\n" {
		t.Fatalf("podman run: exit %d, stdout %q, stderr %q: want 7, the host file and uid 0", r.code, r.stdout, r.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(host, "out")); err != nil || string(b) != "from the container\n" {
		t.Fatalf("bind mount: the container's write reads %q, %v on the host", b, err)
	}
	// --read-only and --tmpfs: podman's tmpfs mounts (/tmp, /run,
	// /var/tmp and the one asked for) carry tmpcopyup, which
	// lightbox-runc refused; they start with the image's files.
	r = podman(append(append([]string{"run", "--rm"}, podmanRun...),
		"--read-only", "--tmpfs", "/bin", ref, "/bin/sh", "-c", "echo x > /tmp/t && cat /tmp/t; echo y > /etc/z 2>/dev/null || echo read-only; touch /bin/new && ls /bin/sh")...)
	if r.code != 0 || r.stdout != "x\nread-only\n/bin/sh\n" {
		t.Fatalf("podman run --read-only --tmpfs /bin: exit %d, stdout %q, stderr %q: want a writable /tmp, a read-only root and /bin's files in its tmpfs", r.code, r.stdout, r.stderr)
	}
	if out := podman("ps", "-a", "-q"); strings.TrimSpace(out.stdout) != "" {
		t.Fatalf("podman ps -a after run --rm: %q", out.stdout)
	}
}

// TestPodmanExecAsUserKeepsLogClean: podman exec -u 1000:1000 into a
// running container gives the process the container's rlimits (podman
// puts them in the exec's process.json) without a word in the
// container's log. The init set them on the exec'd process as itself,
// after the fork: prlimit of another user's process needs
// CAP_SYS_RESOURCE, which podman's containers lack, and every such exec
// wrote "lightbox init: exec sh: rlimit 7: operation not permitted"
// into podman logs (crun and runc: nothing).
func TestPodmanExecAsUserKeepsLogClean(t *testing.T) {
	const ref = "lightbox.test/busybox:1"
	podman := podmanLightbox(t, ref)
	const name = "lightbox-exec-user"
	mustPodman := func(args ...string) string {
		t.Helper()
		r := podman(args...)
		if r.code != 0 {
			t.Fatalf("podman %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
		return r.stdout
	}
	mustPodman(append(append([]string{"run", "-d", "--name", name}, podmanRun...),
		ref, "sh", "-c", "echo up; while :; do sleep 0.05; done")...)
	t.Cleanup(func() { podman("rm", "-f", name) })
	if out := mustPodman("exec", "-u", "1000:1000", name, "sh", "-c", "id -u; ulimit -Sn; ulimit -Hn"); out != "1000\n4096\n4096\n" {
		t.Fatalf("podman exec -u 1000:1000: stdout %q, want uid 1000 and nofile 4096:4096", out)
	}
	// Killed, not stopped from inside by an exec (its own status would
	// race the container's end): conmon has read both pipes to their
	// end once the container exited.
	mustPodman("kill", name)
	if out := mustPodman("wait", name); strings.TrimSpace(out) != "137" {
		t.Fatalf("podman wait: %q, want 137", out)
	}
	r := podman("logs", name)
	if r.code != 0 || r.stdout != "up\n" || r.stderr != "" {
		t.Fatalf("podman logs: exit %d, stdout %q, stderr %q: want up and nothing else", r.code, r.stdout, r.stderr)
	}
}

// TestPodmanCgroupViewIsTheContainers: inside a podman container with
// --memory and --cpus, /sys/fs/cgroup shows the container's own cgroup
// with its limits, as runc and crun show it, with the host's cgroup
// namespace (podman's default on v1) and a private one. lightbox-runc
// mounted each v1 hierarchy whole: with the host's namespace, its root
// read no limit (memory.limit_in_bytes unlimited) and listed every
// container's cgroup; with --cgroupns private the namespace was cloned
// in conmon's cgroup, before the init was in its own: the container read
// its cgroup as /../libpod-ID and its siblings under /sys/fs/cgroup.
// Root only: rootless podman sets no limits on cgroup v1.
func TestPodmanCgroupViewIsTheContainers(t *testing.T) {
	testutil.RootOnly(t)
	const ref = "lightbox.test/busybox:1"
	podman := podmanLightbox(t, ref)
	const show = `cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us
ls /sys/fs/cgroup/memory | grep -c -e libpod -e lightbox || :
grep :memory: /proc/self/cgroup`
	for _, ns := range []string{"host", "private"} {
		r := podman(append(append([]string{"run", "--rm", "--cgroupns", ns, "--memory", "64m", "--cpus", "0.5"}, podmanRun...),
			ref, "sh", "-c", show)...)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if r.code != 0 || len(lines) != 4 || lines[0] != "67108864" || lines[1] != "50000" || lines[2] != "0" {
			t.Errorf("podman run --cgroupns %s --memory 64m --cpus 0.5: exit %d, stdout %q, stderr %q: want the limits at /sys/fs/cgroup's hierarchies' roots and no other cgroup there", ns, r.code, r.stdout, r.stderr)
			continue
		}
		path := lines[3][strings.LastIndex(lines[3], ":")+1:]
		if ns == "host" && !strings.HasPrefix(path, "/libpod_parent/libpod-") || ns == "private" && path != "/" {
			t.Errorf("podman run --cgroupns %s: /proc/self/cgroup reads %q, want the container's cgroup (with the host's namespace) or / (its own)", ns, lines[3])
		}
	}
}

// TestPodmanRunNotExecutable: podman run -d of a file that is not
// executable, or a directory, fails with 126 and says why, at create,
// as with runc and crun. lightbox-runc found the path at create and
// failed the exec at start: run -d printed the container's id and the
// container exited 126 at once, the reason in its log only.
func TestPodmanRunNotExecutable(t *testing.T) {
	const ref = "lightbox.test/busybox:1"
	podman := podmanLightbox(t, ref)
	for _, prog := range []string{"/etc/passwd", "/tmp"} {
		r := podman(append(append([]string{"run", "-d", "--rm"}, podmanRun...), ref, prog)...)
		if r.code != 126 || !strings.Contains(r.stderr, fmt.Sprintf("exec %q: permission denied", prog)) {
			t.Errorf("podman run -d %s: exit %d, stdout %q, stderr %q: want 126 and permission denied", prog, r.code, r.stdout, r.stderr)
		}
	}
	if out := podman("ps", "-a", "-q"); out.code != 0 || strings.TrimSpace(out.stdout) != "" {
		t.Errorf("podman ps -a after the failed runs: %q", out.stdout)
	}
}
