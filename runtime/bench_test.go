//go:build linux

package runtime

import (
	"context"
	"os/exec"
	"testing"

	"github.com/beamhop/lightbox/internal/testutil"
	"github.com/containerd/cgroups/v3/cgroup1"
)

// BenchmarkLaunch measures launch + exec of /bin/true + destroy, the
// life of a throwaway sandbox.
func BenchmarkLaunch(b *testing.B) {
	e := newEnvB(b)
	for b.Loop() {
		sb, err := e.m.Launch(context.Background(), e.spec(""))
		if err != nil {
			b.Fatal(err)
		}
		if err := sb.Command("/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
		if err := sb.Destroy(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLaunchMain measures a sandbox whose main command is /bin/true:
// launch, Wait, destroy (`lightbox run SNAP /bin/true`).
func BenchmarkLaunchMain(b *testing.B) {
	e := newEnvB(b)
	for b.Loop() {
		spec := e.spec("")
		spec.Command = []string{"/bin/true"}
		sb, err := e.m.Launch(context.Background(), spec)
		if err != nil {
			b.Fatal(err)
		}
		if code, err := sb.Wait(context.Background()); err != nil || code != 0 {
			b.Fatal(code, err)
		}
		if err := sb.Destroy(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExec measures one exec of /bin/true in a running sandbox.
func BenchmarkExec(b *testing.B) {
	e := newEnvB(b)
	sb, err := e.m.Launch(context.Background(), e.spec("bench-exec"))
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Destroy(context.Background())
	for b.Loop() {
		if err := sb.Command("/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFloorUnshare is the floor the launch is compared with, in the
// same run: unshare's namespaces + chroot + /bin/true, no overlay, no
// init, no exec socket.
func BenchmarkFloorUnshare(b *testing.B) {
	unshare := testutil.NeedTool(b, "unshare")
	e := newEnvB(b)
	for b.Loop() {
		cmd := exec.Command(unshare, "--user", "--map-root-user", "--mount", "--pid", "--fork", "--uts", "--ipc", "--net", "chroot", e.rootfs, "/bin/true")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
	}
}

// BenchmarkStatus reads a running sandbox's status with the cgroup's usage
// (Info, ps) and without it (Attach, exec, destroy, every launch's look at
// the sandboxes already there).
func BenchmarkStatus(b *testing.B) {
	e := newEnvB(b)
	sb, err := e.m.Launch(context.Background(), e.spec("bench-status"))
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Destroy(context.Background())
	for _, usage := range []bool{true, false} {
		b.Run(map[bool]string{true: "usage", false: "no-usage"}[usage], func(b *testing.B) {
			for b.Loop() {
				if info, err := e.m.statusOf("bench-status", usage); err != nil || info.Status != StatusRunning {
					b.Fatal(info.Status, err)
				}
			}
		})
	}
}

// BenchmarkCgroupParents is the cgroup v1 planning's lookup of this
// process's cgroups: containerd's NestedPath against v1NestedPath.
func BenchmarkCgroupParents(b *testing.B) {
	for name, nested := range map[string]func(string) cgroup1.Path{"containerd": cgroup1.NestedPath, "lightbox": v1NestedPath} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				p := nested("lightbox")
				for _, c := range v1Controllers {
					_, _ = p(c) // a missing controller is planLimits' concern, not this benchmark's
				}
			}
		})
	}
}
