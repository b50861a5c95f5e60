//go:build linux

package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/beamhop/lightbox"
	"github.com/beamhop/lightbox/internal/testutil"
)

// TestFlowParallelCache is the docs' first flow: three sandboxes in
// parallel share a cache volume, each with the project bind-mounted from a
// relative path and a workdir.
func TestFlowParallelCache(t *testing.T) {
	_, r := newStore(t)
	ctx := t.Context()
	project := filepath.Join(t.TempDir(), "my-project")
	os.MkdirAll(project, 0o755)
	os.WriteFile(filepath.Join(project, "package.json"), []byte(`{"name":"demo"}`), 0o644)
	wd, _ := os.Getwd()
	defer os.Chdir(wd)
	os.Chdir(filepath.Dir(project))

	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.RunInSandbox(ctx, lightbox.SandboxOptions{
				Snapshot: "busybox",
				Network:  lightbox.NetworkNone,
				Workdir:  "/work",
				Mounts: map[string]lightbox.Mount{
					"/work":      {Source: "./my-project"},
					"/root/.npm": {Volume: "npm-cache"},
				},
			}, func(sb *lightbox.Sandbox) error {
				res, err := sb.Shell(ctx, fmt.Sprintf("cat package.json && echo job%d > /root/.npm/job%d && pwd", i, i))
				if err != nil {
					return err
				}
				if !strings.Contains(string(res.Stdout), `"demo"`) || !strings.HasSuffix(string(res.Stdout), "/work\n") {
					return fmt.Errorf("job %d saw %q", i, res.Stdout)
				}
				return nil
			})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	// A later sandbox finds all three entries in the cache.
	err := r.RunInSandbox(ctx, lightbox.SandboxOptions{
		Snapshot: "busybox", Network: lightbox.NetworkNone,
		Mounts: map[string]lightbox.Mount{"/cache": {Volume: "npm-cache"}},
	}, func(sb *lightbox.Sandbox) error {
		res, err := sb.Shell(ctx, "cat /cache/job0 /cache/job1 /cache/job2")
		if err != nil {
			return err
		}
		if got := string(res.Stdout); got != "job0\njob1\njob2\n" {
			return fmt.Errorf("cache holds %q", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	vols, err := r.ListVolumes(ctx)
	if err != nil || len(vols) != 1 || vols[0].Name != "npm-cache" {
		t.Fatalf("ListVolumes = %v, %v; want npm-cache", vols, err)
	}
}

// TestFlowBuilderArtifact is the docs' second flow: a builder sandbox
// writes an artifact to a volume that a sandbox of another snapshot runs.
func TestFlowBuilderArtifact(t *testing.T) {
	root, r := newStore(t)
	ctx := t.Context()
	lbOK(t, root, "snapshot", "import", "runtime-img", testBusybox(t))
	if _, err := r.EnsureVolume(ctx, "artifacts", lightbox.VolumeOptions{Labels: map[string]string{"flow": "build"}}); err != nil {
		t.Fatal(err)
	}
	err := r.RunInSandbox(ctx, lightbox.SandboxOptions{
		Snapshot: "busybox", Network: lightbox.NetworkNone,
		Mounts: map[string]lightbox.Mount{"/out": {Volume: "artifacts"}},
	}, func(sb *lightbox.Sandbox) error {
		_, err := sb.Shell(ctx, "printf '#!/bin/sh\\necho built artifact runs\\n' > /out/app && chmod +x /out/app")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	err = r.RunInSandbox(ctx, lightbox.SandboxOptions{
		Snapshot: "runtime-img", Network: lightbox.NetworkNone,
		Mounts: map[string]lightbox.Mount{"/app": {Volume: "artifacts", ReadOnly: true}},
	}, func(sb *lightbox.Sandbox) error {
		res, err := sb.Exec(ctx, "/app/app")
		if err != nil {
			return err
		}
		if string(res.Stdout) != "built artifact runs\n" {
			return fmt.Errorf("artifact printed %q", res.Stdout)
		}
		if _, err := sb.Shell(ctx, "touch /app/x"); err == nil {
			return errors.New("write to a read-only volume mount succeeded")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestExecResults checks Exec/Shell results and errors as a user of the
// Go API sees them.
func TestExecResults(t *testing.T) {
	_, r := newStore(t)
	ctx := t.Context()
	err := r.RunInSandbox(ctx, lightbox.SandboxOptions{Snapshot: "busybox", Network: lightbox.NetworkNone, Env: []string{"A=1"}}, func(sb *lightbox.Sandbox) error {
		res, err := sb.Shell(ctx, "echo $A; echo e >&2; exit 7")
		var ee *lightbox.ExitError
		if !errors.As(err, &ee) || ee.ExitCode != 7 || res == nil || res.ExitCode != 7 || string(res.Stdout) != "1\n" || string(res.Stderr) != "e\n" {
			return fmt.Errorf("Shell exit 7 = %+v, %v", res, err)
		}
		_, err = sb.Shell(ctx, "kill -9 $$")
		if !errors.As(err, &ee) || ee.Signal != 9 {
			return fmt.Errorf("Shell killed by SIGKILL = %v, want an ExitError with Signal 9", err)
		}
		_, err = sb.Exec(ctx, "/no/such/binary")
		if !errors.Is(err, lightbox.ErrCommandNotFound) {
			return fmt.Errorf("Exec of a missing binary = %v, want ErrCommandNotFound", err)
		}
		// Only its own processes are visible.
		res, err = sb.Shell(ctx, "ls /proc | grep -c '^[0-9]'")
		if err != nil {
			return err
		}
		if n := strings.TrimSpace(string(res.Stdout)); n == "" || len(n) > 1 {
			return fmt.Errorf("sandbox sees %s processes", n)
		}
		// /proc/1/exe is not writable.
		if _, err := sb.Shell(ctx, "echo x >> /proc/1/exe"); err == nil {
			return errors.New("/proc/1/exe is writable from inside")
		}
		// Only loopback with NetworkNone.
		res, err = sb.Shell(ctx, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")
		if err != nil {
			return err
		}
		if got := string(res.Stdout); got != "lo\n" {
			return fmt.Errorf("interfaces with NetworkNone: %q, want lo alone", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Cancelled context kills the command.
	err = r.RunInSandbox(ctx, lightbox.SandboxOptions{Snapshot: "busybox", Network: lightbox.NetworkNone}, func(sb *lightbox.Sandbox) error {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := sb.Exec(cctx, "sleep", "100")
		if err == nil {
			return errors.New("Exec with a cancelled context succeeded")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLaunchFaults checks that bad input fails clearly and leaks nothing.
func TestLaunchFaults(t *testing.T) {
	root, r := newStore(t)
	ctx := t.Context()
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o644)
	for _, tc := range []struct {
		name string
		opts lightbox.SandboxOptions
		is   error
		msg  string
	}{
		{"unknown snapshot", lightbox.SandboxOptions{Snapshot: "nope"}, lightbox.ErrNotFound, ""},
		{"relative target", lightbox.SandboxOptions{Snapshot: "busybox", Mounts: map[string]lightbox.Mount{"rel": {Source: "/tmp"}}}, nil, "absolute"},
		{"dotdot target", lightbox.SandboxOptions{Snapshot: "busybox", Mounts: map[string]lightbox.Mount{"/a/../../b": {Source: "/tmp"}}}, nil, ".."},
		{"missing source", lightbox.SandboxOptions{Snapshot: "busybox", Mounts: map[string]lightbox.Mount{"/x": {Source: "/does/not/exist"}}}, nil, "/does/not/exist"},
		{"workdir is a file", lightbox.SandboxOptions{Snapshot: "busybox", Workdir: "/etc/passwd", Command: []string{"true"}}, nil, "/etc/passwd"},
		{"invalid name", lightbox.SandboxOptions{Snapshot: "busybox", Name: "a/b"}, lightbox.ErrInvalidName, ""},
		{"bad volume name", lightbox.SandboxOptions{Snapshot: "busybox", Mounts: map[string]lightbox.Mount{"/v": {Volume: "../x"}}}, lightbox.ErrInvalidName, ""},
		{"source and volume", lightbox.SandboxOptions{Snapshot: "busybox", Mounts: map[string]lightbox.Mount{"/v": {Volume: "x", Source: "/tmp"}}}, nil, "both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Network = lightbox.NetworkNone
			sb, err := r.LaunchSandbox(ctx, tc.opts)
			if err == nil {
				sb.Destroy(ctx)
				t.Fatalf("LaunchSandbox succeeded, want an error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v, want %v", err, tc.is)
			}
			if tc.msg != "" && !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
			assertNoMounts(t, root)
		})
	}
	// A second live sandbox with the same name.
	sb, err := r.LaunchSandbox(ctx, lightbox.SandboxOptions{Snapshot: "busybox", Name: "twin", Network: lightbox.NetworkNone})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	if _, err := r.LaunchSandbox(ctx, lightbox.SandboxOptions{Snapshot: "busybox", Name: "twin", Network: lightbox.NetworkNone}); !errors.Is(err, lightbox.ErrExists) {
		t.Errorf("second sandbox named twin = %v, want ErrExists", err)
	}
}

// TestExecOutputCap: Exec keeps at most OutputLimit bytes per stream and
// says so when it dropped some, also when the command exits non-zero (its
// ExitError said only the status); a Cmd with its own writer gets it all.
func TestExecOutputCap(t *testing.T) {
	_, r := newStore(t)
	ctx := t.Context()
	err := r.RunInSandbox(ctx, lightbox.SandboxOptions{Snapshot: "busybox", Network: lightbox.NetworkNone}, func(sb *lightbox.Sandbox) error {
		script := fmt.Sprintf("head -c %d /dev/zero", lightbox.OutputLimit+1000)
		res, err := sb.Shell(ctx, script)
		if res == nil {
			return fmt.Errorf("Shell with too much output returned no result: %v", err)
		}
		if err == nil || !strings.Contains(err.Error(), "truncated") || len(res.Stdout) != lightbox.OutputLimit {
			return fmt.Errorf("Shell with %d bytes of output: %d bytes kept, err %v; want the cap and a truncation error", lightbox.OutputLimit+1000, len(res.Stdout), err)
		}
		// Past the cap and exiting non-zero: still an ExitError (its
		// status), and it says the output was cut too.
		res, err = sb.Shell(ctx, fmt.Sprintf("head -c %d /dev/zero >&2; exit 3", lightbox.OutputLimit+1000))
		var ee *lightbox.ExitError
		if !errors.As(err, &ee) || ee.ExitCode != 3 || !ee.OutputTruncated || !strings.Contains(err.Error(), "truncated") ||
			res == nil || len(res.Stderr) != lightbox.OutputLimit {
			return fmt.Errorf("Shell with too much output that exits 3 = %v (result %v); want an ExitError of status 3 that says the output was truncated, and the cap kept", err, res != nil)
		}
		var n countWriter
		cmd := sb.Command(ctx, "sh", "-c", script)
		cmd.Stdout = &n
		if err := cmd.Run(); err != nil || int(n) != lightbox.OutputLimit+1000 {
			return fmt.Errorf("Cmd with its own writer: %d bytes, %v", n, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

type countWriter int

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// TestExecFileCapsMessage: a program whose file capabilities the sandbox
// cannot grant (Debian's ping: cap_net_raw=ep, and the sandbox keeps
// podman's set, without NET_RAW) is refused by the kernel with EPERM.
// The error says which capabilities and why, not just "operation not
// permitted", for run and exec alike; the status stays 126.
func TestExecFileCapsMessage(t *testing.T) {
	root, _ := newStore(t)
	bb, err := os.ReadFile(testutil.NeedBusybox(t))
	if err != nil {
		t.Fatal(err)
	}
	fcap := make([]byte, 20)
	binary.LittleEndian.PutUint32(fcap[0:], 0x02000001) // revision 2, effective
	binary.LittleEndian.PutUint32(fcap[4:], 1<<13)      // permitted: CAP_NET_RAW
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: "pingx", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb)), Format: tar.FormatPAX,
		PAXRecords: map[string]string{"SCHILY.xattr.security.capability": string(fcap)}}); err != nil {
		t.Fatal(err)
	}
	tw.Write(bb)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "src.tar")
	if err := os.WriteFile(src, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	lbOK(t, root, "snapshot", "import", "capsrc", src)
	lbOK(t, root, "snapshot", "build", "-q", "-t", "withcaps", "--network", "none",
		buildContextDir(t, "FROM busybox\nCOPY --from=capsrc /pingx /usr/bin/pingx\n", map[string]string{}))

	want := "/usr/bin/pingx has file capabilities the sandbox does not grant (cap_net_raw"
	res := lb(t, root, "", "run", "--network", "none", "withcaps", "pingx", "true")
	if res.code != 126 || !strings.Contains(res.stderr, want) {
		t.Errorf("run pingx: exit %d, stderr %q; want 126 and %q", res.code, res.stderr, want)
	}
	lbOK(t, root, "run", "-d", "--name", "caps", "--network", "none", "withcaps", "sleep", "600")
	res = lb(t, root, "", "exec", "caps", "/usr/bin/pingx", "true")
	if res.code != 126 || !strings.Contains(res.stderr, want) {
		t.Errorf("exec pingx: exit %d, stderr %q; want 126 and %q", res.code, res.stderr, want)
	}
	lbOK(t, root, "rm", "-f", "-q", "caps")
}

// TestPingWithoutNetRaw: sandboxes lack CAP_NET_RAW (podman's set), so
// ping needs ICMP echo sockets, which net.ipv4.ping_group_range allows:
// docker and podman open it to every group of a container's network
// namespace, and so does the sandbox's init now. It was the kernel's
// default, no group: "icmp socket: Permission denied", for root inside
// too. A ping of the loopback with such a socket (perl, of Debian's
// minbase), as an ordinary user inside; the host's own setting stays as
// it was.
func TestPingWithoutNetRaw(t *testing.T) {
	tarball := os.Getenv("LIGHTBOX_DEBIAN_TAR")
	testutil.Need(t, tarball != "", "needs LIGHTBOX_DEBIAN_TAR, a tarball of a debootstrap'd Debian (make test makes it with hack/debian-base.sh)")
	root, _ := newStore(t)
	lbOK(t, root, "snapshot", "import", "debian", tarball)
	host, err := os.ReadFile("/proc/sys/net/ipv4/ping_group_range")
	if err != nil {
		t.Fatal(err)
	}
	const ping = `use Socket;
socket(my $s, PF_INET, SOCK_DGRAM, 1) or die "icmp socket: $!\n";
send($s, pack("C C n n n a*", 8, 0, 0, 0, 1, "lightbox"), 0, sockaddr_in(0, inet_aton("127.0.0.1"))) or die "send: $!\n";
defined(recv($s, my $buf, 64, 0)) or die "recv: $!\n";
printf "echo reply: type %d, %s\n", unpack("C", $buf), substr($buf, 8);
`
	res := lb(t, root, "", "run", "--network", "none", "-u", "1000", "debian", "timeout", "20", "perl", "-e", ping)
	if res.code != 0 || res.stdout != "echo reply: type 0, lightbox\n" {
		t.Errorf("ping of the loopback in a sandbox: exit %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	if after, err := os.ReadFile("/proc/sys/net/ipv4/ping_group_range"); err != nil || string(after) != string(host) {
		t.Errorf("the host's ping_group_range: %q before, %q (%v) after", host, after, err)
	}
}
