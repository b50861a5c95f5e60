//go:build linux

package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/beamhop/lightbox"
	"github.com/beamhop/lightbox/internal/testutil"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// buildContextDir writes a context with a Dockerfile and returns it.
func buildContextDir(t *testing.T, recipe string, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ctx")
	files["Dockerfile"] = recipe
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const buildRecipe = `# every instruction the builder supports
ARG BASE=busybox
FROM $BASE AS base
ARG WHO=world
ENV APP=/opt/app \
    MODE=test
WORKDIR $APP
COPY --chown=user:user src/ ./
COPY --chmod=0755 <<EOF /usr/local/bin/hello
#!/bin/sh
echo "hello from $APP"
EOF
ADD pkg.tar /opt/
RUN --mount=type=cache,target=/var/cache/demo,id=demo-cache \
    echo "$WHO" > who && date >> /var/cache/demo/runs && wc -l < /var/cache/demo/runs > runs-seen
RUN rm src-remove-me && mkdir -p /data && echo data > /data/file
SHELL ["/bin/sh", "-e", "-c"]
RUN ["/bin/sh", "-c", "echo exec-form > exec"]
LABEL org.example.flow=build
EXPOSE 8080
USER user
ENTRYPOINT ["/usr/local/bin/hello"]
`

// tarOf is a tar holding one file.
func tarOf(t *testing.T, name, content string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(content))}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(content))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// shellIn runs script in a sandbox of snapshot (through the CLI, -v
// mounts as given) and returns its stdout.
func shellIn(t *testing.T, root, snapshot string, mounts []string, script string) string {
	t.Helper()
	args := []string{"run", "--network", "none"}
	for _, m := range mounts {
		args = append(args, "-v", m)
	}
	return lbOK(t, root, append(args, snapshot, "sh", "-c", script)...)
}

func TestBuildSnapshot(t *testing.T) {
	root, r := newStore(t)
	ctx := buildContextDir(t, buildRecipe, map[string]string{
		"src/main.sh": "echo main\n", "src/src-remove-me": "x", "src/debug.log": "log",
		".dockerignore": "**/*.log\n",
	})
	if err := os.WriteFile(filepath.Join(ctx, "pkg.tar"), tarOf(t, "pkg/bin/tool", "tool\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := lb(t, root, "", "snapshot", "build", "-t", "app", "--network", "none", ctx)
	if res.code != 0 || strings.TrimSpace(res.stdout) != "app" {
		t.Fatalf("build: exit %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	steps := strings.Count(res.stderr, "] done in") + strings.Count(res.stderr, "] cached")
	if steps != 15 {
		t.Errorf("build reported %d finished steps, want 15:\n%s", steps, res.stderr)
	}
	// The default command is the ENTRYPOINT, run as USER.
	if out := lbOK(t, root, "run", "--network", "none", "app"); out != "hello from /opt/app\n" {
		t.Errorf("run app = %q, want the ENTRYPOINT's output", out)
	}
	got := shellIn(t, root, "app", nil, `cd /opt/app; ls -A | sort | tr '\n' ' '; echo; cat who exec runs-seen /data/file; stat -c '%u:%g %a' main.sh /usr/local/bin/hello; cat /opt/pkg/bin/tool; id -un; pwd; echo $MODE; test -e /var/cache && echo /var/cache kept || echo gone`)
	// The cache mount's target (and /var/cache, both made only to
	// mount on) is in no layer, as with docker's buildkit.
	want := "exec main.sh runs-seen who \nworld\nexec-form\n1\ndata\n1000:1000 644\n0:0 755\ntool\nuser\n/opt/app\ntest\ngone\n"
	if got != want {
		t.Errorf("the built snapshot shows:\n%s\nwant:\n%s", got, want)
	}
	var sn lightbox.Snapshot
	if err := json.Unmarshal([]byte(lbOK(t, root, "snapshot", "inspect", "app")), &sn); err != nil {
		t.Fatal(err)
	}
	if sn.Config.User != "user" || sn.Config.Labels["org.example.flow"] != "build" || sn.Config.WorkingDir != "/opt/app" {
		t.Errorf("config = %+v", sn.Config)
	}

	// Unchanged: every step from the cache, the same snapshot.
	res = lb(t, root, "", "snapshot", "build", "-t", "app2", "--network", "none", ctx)
	if res.code != 0 || strings.Contains(res.stderr, "done in") {
		t.Fatalf("rebuild: exit %d, want every step cached:\n%s", res.code, res.stderr)
	}
	sn2, err := r.InspectSnapshot(t.Context(), "app2")
	if err != nil || sn2.Digest != sn.Digest {
		t.Errorf("rebuild = %v %v, want digest %s", sn2, err, sn.Digest)
	}
	// --no-cache runs the RUN again: the cache volume sees a second run,
	// and a sandbox mounting that volume sees both.
	lbOK(t, root, "snapshot", "build", "--no-cache", "-q", "-t", "app-nc", "--network", "none", ctx)
	if got := shellIn(t, root, "app-nc", nil, "cat /opt/app/runs-seen"); got != "2\n" {
		t.Errorf("runs seen by the second build = %q, want 2", got)
	}
	if got := shellIn(t, root, "busybox", []string{"demo-cache:/c"}, "wc -l < /c/runs"); got != "2\n" {
		t.Errorf("the cache volume in a sandbox holds %q runs, want 2", got)
	}
	// A changed file: the COPY and what follows run again.
	if err := os.WriteFile(filepath.Join(ctx, "src/main.sh"), []byte("echo changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res = lb(t, root, "", "snapshot", "build", "-t", "app3", "--network", "none", ctx)
	if res.code != 0 || !strings.Contains(res.stderr, "[4/15] cached") || strings.Contains(res.stderr, "[5/15] cached") {
		t.Errorf("build after a change: exit %d, want steps 1-4 cached and the COPY (5) run:\n%s", res.code, res.stderr)
	}
	// Removing the snapshots keeps the cache consistent: a rebuild
	// still works (and is cached).
	lbOK(t, root, "snapshot", "rm", "app-nc", "app2", "app3")
	lbOK(t, root, "snapshot", "build", "-q", "-t", "app", "--replace", "--network", "none", ctx)
	lbOK(t, root, "snapshot", "rm", "app")
	lbOK(t, root, "gc")
	res = lb(t, root, "", "snapshot", "build", "-t", "app", "--network", "none", ctx)
	if res.code != 0 || strings.Contains(res.stderr, "done in") {
		t.Errorf("rebuild after rm and gc: exit %d, want every step cached:\n%s", res.code, res.stderr)
	}
	if got := shellIn(t, root, "app", nil, "cat /opt/app/main.sh"); got != "echo changed\n" {
		t.Errorf("main.sh = %q", got)
	}
	// Pruning the cache frees what only it held.
	lbOK(t, root, "snapshot", "rm", "app")
	if err := r.PruneBuildCache(t.Context()); err != nil {
		t.Fatal(err)
	}
	layers, err := os.ReadDir(filepath.Join(root, "snapshots", "layers"))
	if err != nil || len(layers) != 1 {
		t.Errorf("layers after pruning the cache: %d (%v), want busybox's only", len(layers), err)
	}
}

func TestBuildFailuresLeaveNothing(t *testing.T) {
	root, r := newStore(t)
	outer := t.TempDir()
	if err := os.WriteFile(filepath.Join(outer, "secret"), []byte("s"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := buildContextDir(t, "FROM busybox\n", map[string]string{"ok": "ok"})
	if err := os.Symlink(filepath.Join(outer, "secret"), filepath.Join(ctx, "leak")); err != nil {
		t.Fatal(err)
	}
	lbOK(t, root, "snapshot", "build", "-q", "-t", "taken", ctx)
	// A cache volume made with an owner and mode, which a later mount
	// asking for another owner finds.
	owned := buildContextDir(t, "FROM busybox\nRUN --mount=type=cache,id=owned,target=/c,uid=1000,gid=1001,mode=0700 stat -c '%u:%g %a' /c > /owner\n", map[string]string{})
	lbOK(t, root, "snapshot", "build", "-q", "-t", "owned", "--network", "none", owned)
	if got := shellIn(t, root, "owned", nil, "cat /owner"); got != "1000:1001 700\n" {
		t.Errorf("a cache mount with uid=1000,gid=1001,mode=0700 showed %q", got)
	}
	lbOK(t, root, "snapshot", "build", "-q", "-t", "owned2", "--network", "none", owned) // the same owner again: fine
	layersBefore := dirNames(t, filepath.Join(root, "snapshots", "layers"))
	for _, tc := range []struct {
		name, recipe string
		args         []string
		code         int
		want         string
	}{
		{"parse", "FROM busybox\nRUN true\nHEALTHCHECK CMD true\n", nil, 125, "line 3: HEALTHCHECK is not supported"},
		{"unknown-instruction", "FROM busybox\nFROBNICATE\n", nil, 125, "line 2: unknown instruction: FROBNICATE"},
		{"unknown-from", "FROM nosuch\nRUN true\n", nil, 125, "line 1: FROM nosuch: snapshot nosuch: not found"},
		{"dotdot", "FROM busybox\nCOPY ../secret /x\n", nil, 125, "line 2: COPY ../secret /x: ../secret: outside the build context"},
		{"absolute", "FROM busybox\nCOPY /etc/passwd /x\n", nil, 125, "/etc/passwd: an absolute path"},
		{"symlink", "FROM busybox\nCOPY leak /x\n", nil, 125, "leak: leaves the build context"},
		{"secret", "FROM busybox\nRUN --mount=type=secret,id=k true\n", nil, 125, "line 2: RUN --mount=type=secret"},
		{"taken", "FROM busybox\n", []string{"-t", "taken"}, 125, "snapshot taken: already exists (--replace replaces it)"},
		{"run-fails", "FROM busybox\nRUN echo out; exit 7\nRUN true\n", nil, 7, "line 2: RUN echo out; exit 7: command exited with status 7"},
		{"cache-owner", "FROM busybox\nRUN --mount=type=cache,id=owned,target=/c,uid=2000 true\n", nil, 125,
			"line 2: RUN --mount=type=cache,id=owned,target=/c,uid=2000 true: --mount=type=cache,id=owned: cache volume owned is owned by 1000:1001 mode 0700, not 2000:0 mode 0755 as the mount asks"},
		{"tmpfs-size", "FROM busybox\nRUN --mount=type=tmpfs,target=/t,size=1m true\n", nil, 125, "line 2: RUN --mount=type=tmpfs,target=/t,size=1m true: --mount=type=tmpfs,size=1048576: a size limit is not supported (the mount is a scratch directory on the store's disk, which nothing caps): drop size= for an uncapped scratch directory, or for a capped one use a volume with a quota (lightbox volume create --quota-mib MIB NAME) as --mount=type=cache,id=NAME,target=/t (kept between builds)"},
		{"bad-cache-id", "FROM busybox\nRUN --mount=type=cache,id=../x,target=/c true\n", nil, 125, "id=../x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(tc.recipe), 0o644); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"snapshot", "build", "--network", "none"}, tc.args...)
			if tc.args == nil {
				args = append(args, "-t", "made")
			}
			res := lb(t, root, "", append(args, ctx)...)
			if res.code != tc.code || !strings.Contains(res.stderr, tc.want) {
				t.Errorf("build: exit %d, stderr:\n%s\nwant exit %d and %q", res.code, res.stderr, tc.code, tc.want)
			}
			if _, err := r.InspectSnapshot(t.Context(), "made"); !errors.Is(err, lightbox.ErrNotFound) {
				t.Errorf("snapshot made after a failed build: %v", err)
			}
			if list, err := r.ListSandboxes(t.Context()); err != nil || len(list) != 0 {
				t.Errorf("sandboxes after a failed build: %v %v", list, err)
			}
			if got := dirNames(t, filepath.Join(root, "snapshots", "layers")); len(got) != len(layersBefore) {
				t.Errorf("layers after a failed build: %v, want %v", got, layersBefore)
			}
		})
	}
	if res := lb(t, root, "", "snapshot", "build", "-t", "x", filepath.Join(outer, "nope")); res.code != 125 || !strings.Contains(res.stderr, "build context") {
		t.Errorf("a missing context: exit %d %s", res.code, res.stderr)
	}
}

// Two builds of recipes that share steps, at once: both succeed.
func TestBuildParallel(t *testing.T) {
	root, r := newStore(t)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = r.BuildSnapshot(t.Context(), lightbox.BuildOptions{
				Name: fmt.Sprintf("p%d", i), Context: t.TempDir(), Network: lightbox.NetworkNone,
				Recipe: fmt.Sprintf("FROM busybox\nRUN echo shared > /shared\nRUN echo %d > /own\n", i),
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("build %d: %v", i, err)
		}
	}
	for i := range 2 {
		if got := shellIn(t, root, fmt.Sprintf("p%d", i), nil, "cat /shared /own"); got != fmt.Sprintf("shared\n%d\n", i) {
			t.Errorf("p%d shows %q", i, got)
		}
	}
}

// A multi-stage build: COPY --from an earlier stage (a stack of layers)
// and from a snapshot of the store (one layer), owners and links kept;
// no stage but the target gets a name; a source that leaves the stage's
// root is refused.
func TestBuildCopyFrom(t *testing.T) {
	root, r := newStore(t)
	recipe := `FROM busybox AS builder
RUN mkdir -p /out/bin /out/etc && printf '#!/bin/sh\necho built\n' > /out/bin/tool && chmod 755 /out/bin/tool && \
    ln -s ../etc/conf /out/bin/conf-link && echo conf > /out/etc/conf && chown 1000:1001 /out/etc/conf && chmod 600 /out/etc/conf && \
    ln -s ../../../../../../etc/hostname /out/escape && ln -s /out/etc /out/abs
FROM busybox
COPY --from=builder /out/bin /usr/local/bin/
COPY --from=builder /out/abs/conf /etc/
COPY --from=busybox /bin/busybox /copied-busybox
COPY --from=builder /out/*/conf* /globbed
`
	ctx := buildContextDir(t, recipe, map[string]string{})
	res := lb(t, root, "", "snapshot", "build", "-t", "app", "--network", "none", ctx)
	if res.code != 0 {
		t.Fatalf("build: exit %d\n%s", res.code, res.stderr)
	}
	got := shellIn(t, root, "app", nil, `tool; readlink /usr/local/bin/conf-link; stat -c '%u:%g %a' /etc/conf; cat /etc/conf; cmp /bin/busybox /copied-busybox && echo same; ls /out 2>&1 >/dev/null | wc -l; ls /globbed | tr '\n' ' '; cat /globbed/conf-link`)
	if want := "built\n../etc/conf\n1000:1001 600\nconf\nsame\n1\nconf conf-link conf\n"; got != want {
		t.Errorf("the built snapshot shows:\n%s\nwant:\n%s", got, want)
	}
	list, err := r.ListSnapshots(t.Context())
	if err != nil || len(list) != 2 {
		t.Errorf("snapshots after a two-stage build: %v %v, want busybox and app (no stage named)", list, err)
	}
	// Unchanged: every step cached.
	if res := lb(t, root, "", "snapshot", "build", "-t", "app2", "--network", "none", ctx); res.code != 0 || strings.Contains(res.stderr, "done in") {
		t.Errorf("rebuild: exit %d, want every step cached:\n%s", res.code, res.stderr)
	}
	// --target: the builder stage only.
	lbOK(t, root, "snapshot", "build", "-q", "--target", "builder", "-t", "builder-only", "--network", "none", ctx)
	if got := shellIn(t, root, "builder-only", nil, "cat /out/etc/conf; ls /usr/local/bin | wc -l"); got != "conf\n0\n" {
		t.Errorf("--target builder shows %q", got)
	}
	for _, tc := range []struct{ src, want string }{
		{"/out/escape", "/out/escape: leaves the image's root"},
		{"../../etc/passwd", "../../etc/passwd: leaves the image's root"},
		{"/nosuch", "/nosuch: not in the image"},
		{"/out/*.none", "/out/*.none: nothing in the image matches"},
	} {
		if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(recipe+"COPY --from=builder "+tc.src+" /x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		before := dirNames(t, filepath.Join(root, "snapshots", "layers"))
		res := lb(t, root, "", "snapshot", "build", "-t", "bad", "--network", "none", ctx)
		if res.code != 125 || !strings.Contains(res.stderr, "line 10: COPY --from=builder "+tc.src) || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("COPY --from=builder %s: exit %d, stderr:\n%s\nwant exit 125 and %q", tc.src, res.code, res.stderr, tc.want)
		}
		if got := dirNames(t, filepath.Join(root, "snapshots", "layers")); len(got) != len(before) {
			t.Errorf("layers after a refused COPY --from: %v, want %v", got, before)
		}
		if _, err := r.InspectSnapshot(t.Context(), "bad"); !errors.Is(err, lightbox.ErrNotFound) {
			t.Errorf("snapshot made after a failed build: %v", err)
		}
	}
}

// RUN --mount=type=tmpfs: an empty writable directory, in no layer, gone
// after the step.
func TestBuildTmpfsMount(t *testing.T) {
	root, _ := newStore(t)
	ctx := buildContextDir(t, `FROM busybox
RUN --mount=type=tmpfs,target=/scratch ls -A /scratch | wc -l > /seen && echo x > /scratch/f && stat -c %a /scratch >> /seen
RUN --mount=type=tmpfs,target=/scratch ls -A /scratch | wc -l >> /seen
`, map[string]string{})
	lbOK(t, root, "snapshot", "build", "-q", "-t", "app", "--network", "none", ctx)
	if got := shellIn(t, root, "app", nil, "cat /seen; ls -A /scratch 2>/dev/null | wc -l"); got != "0\n1777\n0\n0\n" {
		t.Errorf("the tmpfs mounts showed %q, want each empty and nothing of them in the snapshot", got)
	}
	if left, _ := filepath.Glob(filepath.Join(root, "tmp", "snapshot-scratch-*")); len(left) != 0 {
		t.Errorf("scratch directories left after the build: %v", left)
	}
}

// kill -9 of `lightbox snapshot build` while a RUN runs leaves nothing
// that `lightbox gc` does not clean: no sandbox, no mount, no new layer
// or blob, no snapshot, no scratch directory, no lease on the cache
// volume (a later build uses it and `volume rm` removes it).
func TestBuildKilledMidStep(t *testing.T) {
	root, r := newStore(t)
	ctx := buildContextDir(t, `FROM busybox
RUN --mount=type=cache,id=kcache,target=/c --mount=type=tmpfs,target=/t \
    echo started > /c/started; while :; do sleep 1; done
`, map[string]string{})
	layersBefore := dirNames(t, filepath.Join(root, "snapshots", "layers"))
	blobsBefore := dirNames(t, filepath.Join(root, "snapshots", "oci", "blobs", "sha256"))
	cmd := exec.Command(binPath, "--root", root, "snapshot", "build", "-q", "-t", "killed", "--network", "none", ctx)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The step runs once its command has written into the cache volume:
	// the whole line, not only the file the shell's redirection makes
	// before echo writes (a kill in between leaves it empty, and the
	// build after it rightly sees "").
	started := filepath.Join(root, "volumes", "kcache", "data", "started")
	deadline := time.Now().Add(time.Minute)
	for {
		if b, err := os.ReadFile(started); err == nil && string(b) == "started\n" {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("the RUN step never started: %s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // killed: the status says so
	// The sandbox's init sees its launcher gone and exits; gc then
	// removes what is left. Poll until gc has nothing more to remove.
	deadline = time.Now().Add(time.Minute)
	for {
		lbOK(t, root, "gc")
		list, err := r.ListSandboxes(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandboxes after kill -9 and gc: %+v", list)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// (Dot files are the store's: its lock and the cached lean init.)
	if left := slices.DeleteFunc(dirNames(t, filepath.Join(root, "sandboxes")), func(n string) bool { return strings.HasPrefix(n, ".") }); len(left) != 0 {
		t.Errorf("sandbox state left: %v", left)
	}
	assertNoMounts(t, root)
	if got := dirNames(t, filepath.Join(root, "snapshots", "layers")); !slices.Equal(got, layersBefore) {
		t.Errorf("layers after kill -9 and gc: %v, want %v", got, layersBefore)
	}
	if got := dirNames(t, filepath.Join(root, "snapshots", "oci", "blobs", "sha256")); !slices.Equal(got, blobsBefore) {
		t.Errorf("blobs after kill -9 and gc: %v, want %v", got, blobsBefore)
	}
	if left, _ := filepath.Glob(filepath.Join(root, "tmp", "snapshot-*")); len(left) != 0 {
		t.Errorf("temporary directories after kill -9 and gc: %v", left)
	}
	if _, err := r.InspectSnapshot(t.Context(), "killed"); !errors.Is(err, lightbox.ErrNotFound) {
		t.Errorf("snapshot after kill -9: %v, want none", err)
	}
	// No lease held on the cache volume: a build uses it, rm removes it.
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM busybox\nRUN --mount=type=cache,id=kcache,target=/c cat /c/started > /seen\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lbOK(t, root, "snapshot", "build", "-q", "-t", "after", "--network", "none", ctx)
	if got := shellIn(t, root, "after", nil, "cat /seen"); got != "started\n" {
		t.Errorf("the build after the kill saw %q in the cache", got)
	}
	lbOK(t, root, "volume", "rm", "kcache")
}

// A build leases the snapshots it reads (FROM and COPY --from) until it
// ends: while it runs, `snapshot rm` of either is refused as in use and
// `gc` frees none of their layers; the build then finishes and its
// result runs. A failed build leaves no lease behind.
func TestBuildLeasesItsSources(t *testing.T) {
	root, r := newStore(t)
	// Two snapshots with layers of their own that no build-cache entry
	// holds (the cache is pruned): only their names keep them.
	for _, name := range []string{"base", "src"} {
		ctx := buildContextDir(t, "FROM busybox\nRUN echo "+name+" > /"+name+"\n", map[string]string{})
		if _, err := r.BuildSnapshot(t.Context(), lightbox.BuildOptions{Name: name, Context: ctx, Network: lightbox.NetworkNone}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.PruneBuildCache(t.Context()); err != nil {
		t.Fatal(err)
	}
	layersDir := filepath.Join(root, "snapshots", "layers")
	layers := dirNames(t, layersDir)
	if len(layers) != 3 {
		t.Fatalf("layers of busybox, base and src: %v, want 3", layers)
	}
	// The build stops twice, each time until the test writes to a fifo:
	// first in a RUN on base, then after a COPY --from=src.
	ctl := t.TempDir()
	if err := os.Chmod(ctl, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"go1", "go2"} {
		if err := syscall.Mkfifo(filepath.Join(ctl, f), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	ctx := buildContextDir(t, `FROM base
RUN echo 1 > /ctl/started1 && read x < /ctl/go1
COPY --from=src /src /src
RUN echo 2 > /ctl/started2 && read x < /ctl/go2 && cat /base /src > /both
`, map[string]string{})
	cmd := exec.Command(binPath, "--root", root, "snapshot", "build", "-q", "-t", "app", "--network", "none", "-v", ctl+":/ctl", ctx)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill() // the test failed with the build still running
			<-done
		}
	})
	waitFor := func(name string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			if _, err := os.Stat(filepath.Join(ctl, name)); err == nil {
				return
			}
			select {
			case err := <-done:
				t.Fatalf("the build ended (%v) before %s: %s", err, name, errb.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("the build never wrote %s: %s", name, errb.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	release := func(fifo string) {
		t.Helper()
		// The RUN is blocked reading the fifo: this open does not block.
		if err := os.WriteFile(filepath.Join(ctl, fifo), []byte("go\n"), 0); err != nil {
			t.Fatal(err)
		}
	}
	for i, name := range []string{"base", "src"} {
		waitFor(fmt.Sprintf("started%d", i+1))
		res := lb(t, root, "", "snapshot", "rm", name)
		if res.code == 0 || !strings.Contains(res.stderr, "a sandbox or a build uses it") {
			t.Errorf("snapshot rm %s during a build that reads it: exit %d, stderr %q; want it refused as in use", name, res.code, res.stderr)
		}
		lbOK(t, root, "gc")
		if got := dirNames(t, layersDir); !isSubset(layers, got) {
			t.Errorf("layers after rm %s and gc during the build: %v, want %v kept", name, got, layers)
		}
		if i == 1 {
			// The second RUN runs on an image only the build cache
			// holds (base + RUN + COPY --from): a prune meanwhile
			// must keep it, and so its layers.
			before := dirNames(t, layersDir)
			if err := r.PruneBuildCache(t.Context()); err != nil {
				t.Errorf("PruneBuildCache during a RUN: %v", err)
			}
			if got := dirNames(t, layersDir); !isSubset(before, got) {
				t.Errorf("layers after a build-cache prune during a RUN: %v, want %v kept", got, before)
			}
		}
		release(fmt.Sprintf("go%d", i+1))
	}
	if err := <-done; err != nil {
		t.Fatalf("build: %v\n%s", err, errb.String())
	}
	if got := shellIn(t, root, "app", nil, "cat /both"); got != "base\nsrc\n" {
		t.Errorf("the built snapshot shows %q, want base's and src's files", got)
	}
	// Released at the end: both can go now.
	lbOK(t, root, "snapshot", "rm", "base", "src")

	// A failed build releases what it leased.
	lbOK(t, root, "snapshot", "build", "-q", "-t", "base", "--network", "none", buildContextDir(t, "FROM busybox\nRUN true\n", map[string]string{}))
	fail := buildContextDir(t, "FROM base\nRUN exit 3\n", map[string]string{})
	if _, err := r.BuildSnapshot(t.Context(), lightbox.BuildOptions{Name: "bad", Context: fail, Network: lightbox.NetworkNone}); err == nil {
		t.Fatal("a build whose RUN exits 3 succeeded")
	}
	if err := r.RemoveSnapshot(t.Context(), "base"); err != nil {
		t.Errorf("rm of a failed build's base: %v, want it removed (no lease left)", err)
	}
}

// isSubset reports whether every element of want is in got.
func isSubset(want, got []string) bool {
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	return true
}

// COPY --from keeps the extended attributes a layer carries: a user.*
// xattr and a file capability go from a snapshot into one stage and from
// that stage into the next, into the result's layer on disk.
func TestBuildCopyFromXattrs(t *testing.T) {
	root, _ := newStore(t)
	cp := make([]byte, 20)
	binary.LittleEndian.PutUint32(cp[0:], 0x02000001) // revision 2, effective
	binary.LittleEndian.PutUint32(cp[4:], 1<<13)      // permitted: CAP_NET_RAW
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range []struct {
		name, xattr, value string
	}{{"tool", "security.capability", string(cp)}, {"note", "user.note", "hello"}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o755, Size: 1, Format: tar.FormatPAX,
			PAXRecords: map[string]string{"SCHILY.xattr." + f.xattr: f.value}}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte("x"))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "src.tar")
	if err := os.WriteFile(src, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	lbOK(t, root, "snapshot", "import", "xsrc", src)
	ctx := buildContextDir(t, `FROM busybox AS one
COPY --from=xsrc /tool /note /first/
FROM busybox
COPY --from=one /first/ /final/
`, map[string]string{})
	lbOK(t, root, "snapshot", "build", "-q", "-t", "app", "--network", "none", ctx)
	if got := shellIn(t, root, "app", nil, "cat /final/tool /final/note"); got != "xx" {
		t.Fatalf("the copied files read %q", got)
	}
	// The result's top layer (the only one with final/) on the host.
	layers, err := filepath.Glob(filepath.Join(root, "snapshots", "layers", "*", "final"))
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers with final/: %v %v, want one", layers, err)
	}
	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(filepath.Join(layers[0], "note"), "user.note", buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Errorf("user.note of the twice-copied file = %q, %v; want hello", buf[:max(n, 0)], err)
	}
	n, err = unix.Lgetxattr(filepath.Join(layers[0], "tool"), "security.capability", buf)
	if err != nil || n < 8 {
		t.Errorf("security.capability of the twice-copied file: %d bytes, %v; want the capability kept", n, err)
	} else if perm := binary.LittleEndian.Uint32(buf[4:8]); perm != 1<<13 {
		t.Errorf("security.capability permitted = %#x, want CAP_NET_RAW", perm)
	}
}

// TestBuildKeepsParentsOfCopies: a COPY, ADD or WORKDIR into a
// directory the image has leaves that directory, and each one above,
// as the image has them (owner, mode, sticky and setgid bits), as docker
// does; a layer unpacked without them gets them made root's 0755, which
// the overlay shows over the image's: `COPY f /tmp/x/` left /tmp 0755,
// so a USER's RUN could not write there, and a RUN's chown of /opt/app
// to the app's user was undone by the COPY into it that followed.
func TestBuildKeepsParentsOfCopies(t *testing.T) {
	root, _ := newStore(t)
	ctx := buildContextDir(t, `FROM busybox
RUN mkdir -p /opt/app /srv && chmod 1777 /tmp && chown 1000:1000 /opt/app && chmod 2770 /opt/app
COPY f /opt/app/src/
COPY f /tmp/sub/
ADD f /srv/a/b/
WORKDIR /opt/app/w/x
USER 1000
RUN touch /tmp/made-by-1000 /opt/app/made-by-1000
`, map[string]string{"f": "x\n"})
	res := lb(t, root, "", "snapshot", "build", "-t", "parents", "--network", "none", ctx)
	if res.code != 0 {
		t.Fatalf("build: exit %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	got := shellIn(t, root, "parents", nil, `stat -c '%n %u:%g %a' /tmp /opt/app /opt /srv /srv/a`)
	want := "/tmp 0:0 1777\n/opt/app 1000:1000 2770\n/opt 0:0 755\n/srv 0:0 755\n/srv/a 0:0 755\n"
	if got != want {
		t.Errorf("after COPY, ADD and WORKDIR under them:\n%swant:\n%s", got, want)
	}
}

// TestBuildCacheSharingLocked: RUN --mount=type=cache,sharing=locked
// (docker's recipe for apt's caches, which apt's own locks make fail when
// two builds share them at once) gives each step the cache to itself:
// a second build's step waits, saying so, until the first one's is done.
// It was accepted and ignored: the two ran at once.
func TestBuildCacheSharingLocked(t *testing.T) {
	root, _ := newStore(t)
	const mount = "--mount=type=cache,id=shared-cache,target=/c,sharing=locked"
	first := buildContextDir(t, "FROM busybox\nRUN "+mount+` touch /c/in-a && i=0 && while [ ! -e /c/release ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; ls /c | grep -c '^in-' > /c/seen-a; rm /c/in-a
`, map[string]string{})
	second := buildContextDir(t, "FROM busybox\nRUN "+mount+` touch /c/in-b && ls /c | grep -c '^in-' > /c/seen-b; rm /c/in-b
`, map[string]string{})
	start := func(name, dir string) (*exec.Cmd, *testutil.Buffer) {
		cmd := exec.Command(binPath, "--root", root, "snapshot", "build", "-t", name, "--network", "none", dir)
		var out testutil.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd, &out
	}
	data := filepath.Join(root, "volumes", "shared-cache", "data")
	a, aout := start("first", first)
	waitFor(t, "the first build's step is in the cache", func() bool {
		_, err := os.Stat(filepath.Join(data, "in-a"))
		return err == nil
	})
	b, bout := start("second", second)
	bDone := make(chan error, 1)
	go func() { bDone <- b.Wait() }()
	deadline := time.After(time.Minute)
	for !strings.Contains(bout.String(), "waiting for cache volume shared-cache") {
		select {
		case err := <-bDone:
			t.Fatalf("the second build ended (%v) while the first one's step held the cache:\n%s", err, bout.String())
		case <-deadline:
			t.Fatalf("the second build does not say it waits for the cache:\n%s", bout.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	lbOK(t, root, "run", "--network", "none", "-v", "shared-cache:/c", "busybox", "touch", "/c/release")
	if err := a.Wait(); err != nil {
		t.Fatalf("first build: %v\n%s", err, aout.String())
	}
	if err := <-bDone; err != nil {
		t.Fatalf("second build: %v\n%s", err, bout.String())
	}
	for _, f := range []string{"seen-a", "seen-b"} {
		if got, err := os.ReadFile(filepath.Join(data, f)); err != nil || string(got) != "1\n" {
			t.Errorf("%s = %q, %v; want 1 (the step alone in the cache)", f, got, err)
		}
	}
}

// TestBuildArgMistakes: --build-arg with no name is refused before
// anything runs; one that no ARG declares is said to be unused, and the
// build goes on, as docker's.
func TestBuildArgMistakes(t *testing.T) {
	root, _ := newStore(t)
	ctx := buildContextDir(t, "FROM busybox\nARG VERSION=1\nRUN echo v$VERSION\n", map[string]string{})
	res := lb(t, root, "", "snapshot", "build", "-t", "noname", "--network", "none", "--build-arg", "=2", ctx)
	if res.code != 125 || !strings.Contains(res.stderr, `--build-arg "=2": no name`) || strings.Contains(res.stderr, "RUN") {
		t.Errorf("--build-arg =2: exit %d, stderr %q; want 125 naming it, before any step", res.code, res.stderr)
	}
	if r := lb(t, root, "", "snapshot", "inspect", "noname"); r.code == 0 {
		t.Errorf("a refused build left a snapshot")
	}
	res = lb(t, root, "", "snapshot", "build", "-t", "typo", "--network", "none", "--build-arg", "VERISON=2", ctx)
	if res.code != 0 || !strings.Contains(res.stderr, "warning: build arguments no ARG declares, unused: VERISON") || !strings.Contains(res.stderr, "v1") {
		t.Errorf("--build-arg VERISON=2: exit %d, stderr %q; want the build, with v1 and a warning naming VERISON", res.code, res.stderr)
	}
}

// TestBuildDockerfileForms: forms of a Dockerfile docker builds that
// lightbox refused or built otherwise. A command with a heredoc (RUN cat
// <<EOF > file) writes the file (it was refused); COPY <<EOF expands the
// build's variables (it copied "$GREETING"); a SHELL holds in a stage FROM
// the one that set it (RUN ran with /bin/sh -c); RUN <<EOF with a "#!"
// line runs it with that interpreter (it ran it as shell commands, exit
// 127); ENTRYPOINT after the
// stage's own CMD keeps the CMD (the snapshot ran "/bin/echo hi", not
// "/bin/echo hi world").
func TestBuildDockerfileForms(t *testing.T) {
	root, _ := newStore(t)
	ctx := buildContextDir(t, `FROM busybox AS base
SHELL ["/bin/sh", "-e", "-c"]
FROM base
ARG GREETING=hello
RUN cat <<EOF > /etc/app.conf
greeting=$GREETING
EOF
COPY <<EOF /etc/app.env
GREETING=${GREETING}
EOF
RUN echo "$-" > /shell-flags
RUN <<EOF
#!/bin/awk -f
BEGIN { print "by awk" > "/by-awk" }
EOF
CMD ["world"]
ENTRYPOINT ["/bin/echo", "hi"]
`, map[string]string{})
	res := lb(t, root, "", "snapshot", "build", "-t", "forms", "--network", "none", ctx)
	if res.code != 0 {
		t.Fatalf("build: exit %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	if got, want := lbOK(t, root, "run", "--network", "none", "forms"), "hi world\n"; got != want {
		t.Errorf("run forms = %q, want ENTRYPOINT and CMD: %q", got, want)
	}
	got := lbOK(t, root, "run", "--network", "none", "--entrypoint", "", "forms", "cat", "/etc/app.conf", "/etc/app.env", "/shell-flags", "/by-awk")
	if want := "greeting=hello\nGREETING=hello\nce\nby awk\n"; got != want {
		t.Errorf("the built files:\n%swant:\n%s", got, want)
	}
}

// exportedImage exports snapshot sn as an oci-archive and returns its
// blobs (those under 8 MiB), by path in the archive, and its manifest.
func exportedImage(t *testing.T, root, sn string) (map[string][]byte, ispec.Manifest) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "image.tar")
	lbOK(t, root, "snapshot", "export", sn, dst)
	f, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	blobs := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if b, err := io.ReadAll(tr); err == nil && h.Size < 8<<20 {
			blobs[strings.TrimPrefix(h.Name, "./")] = b
		}
	}
	var idx ispec.Index
	var m ispec.Manifest
	if err := json.Unmarshal(blobs["index.json"], &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("%s: index.json: %v (%d manifests)", dst, err, len(idx.Manifests))
	}
	if err := json.Unmarshal(blobs["blobs/sha256/"+idx.Manifests[0].Digest.Encoded()], &m); err != nil {
		t.Fatalf("%s: manifest: %v", dst, err)
	}
	return blobs, m
}

// exportedConfig exports snapshot sn as an oci-archive and returns its
// image configuration.
func exportedConfig(t *testing.T, root, sn string) ispec.Image {
	t.Helper()
	blobs, m := exportedImage(t, root, sn)
	var img ispec.Image
	if err := json.Unmarshal(blobs["blobs/sha256/"+m.Config.Digest.Encoded()], &img); err != nil {
		t.Fatalf("snapshot %s: config: %v", sn, err)
	}
	return img
}

// lastLayerNames returns the names in snapshot sn's top layer, as it
// exports it.
func lastLayerNames(t *testing.T, root, sn string) []string {
	t.Helper()
	blobs, m := exportedImage(t, root, sn)
	if len(m.Layers) == 0 {
		t.Fatalf("snapshot %s: no layers", sn)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blobs["blobs/sha256/"+m.Layers[len(m.Layers)-1].Digest.Encoded()]))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	lr := tar.NewReader(zr)
	for {
		h, err := lr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/"))
	}
	return names
}

// TestBuildMountStubs: what a RUN's sandbox makes only to mount on (the
// targets of its cache, tmpfs and bind mounts and their missing parents)
// is in no layer, as with docker's
// buildkit; a target the image has stays, and so does a made parent the
// step wrote into. They were all committed, empty.
func TestBuildMountStubs(t *testing.T) {
	root, _ := newStore(t)
	ctx := buildContextDir(t, `FROM busybox
RUN mkdir -p /keep/empty /w
RUN --mount=type=cache,id=stubs,target=/c1/deep/cache --mount=type=tmpfs,target=/t1 --mount=type=bind,source=f,target=/b1/f \
    --mount=type=tmpfs,target=/keep/empty --mount=type=tmpfs,target=/w/sub/t \
    echo ran > /ran && echo note > /w/note && mkdir /w/sub/mine && cat /b1/f > /w/sub/mine/f
`, map[string]string{"f": "from the context\n"})
	lbOK(t, root, "snapshot", "build", "-q", "-t", "stubs", "--network", "none", ctx)
	got := shellIn(t, root, "stubs", nil, `for p in /c1 /t1 /b1 /keep/empty /w/sub/t /w/sub/mine; do test -e $p && echo $p; done; cat /ran /w/note /w/sub/mine/f`)
	if want := "/keep/empty\n/w/sub/mine\nran\nnote\nfrom the context\n"; got != want {
		t.Errorf("the built snapshot shows:\n%swant:\n%s", got, want)
	}
	names := lastLayerNames(t, root, "stubs")
	for _, n := range []string{"c1", "c1/deep", "c1/deep/cache", "t1", "b1", "b1/f", "keep/empty", "w/sub/t", "etc/resolv.conf"} {
		if slices.Contains(names, n) {
			t.Errorf("the RUN's layer holds %s, a mount stub: %v", n, names)
		}
	}
	for _, n := range []string{"ran", "w/note", "w/sub", "w/sub/mine/f"} {
		if !slices.Contains(names, n) {
			t.Errorf("the RUN's layer lacks %s: %v", n, names)
		}
	}
}

// TestBuildHistoryCountsLayers: an exported snapshot's history has an
// entry for each layer, as docker's images do and as buildah checks
// before it builds on one (podman build FROM an export of a lightbox
// build failed: "history lists 1 non-empty layers, but we have 2 layers
// on disk"). An imported root filesystem had no history entry, and a
// build (or commit) FROM it one too few; one FROM an image without
// history (this archive's) gets entries for the layers it lacks them for.
func TestBuildHistoryCountsLayers(t *testing.T) {
	root, _ := newStore(t)
	lbOK(t, root, "snapshot", "import", "nohistory", busyboxArchive(t, "nohistory:1"))
	for _, sn := range []string{"busybox", "nohistory"} {
		ctx := buildContextDir(t, "FROM "+sn+"\nRUN echo x > /x\nENV A=1\nCOPY f /f\n", map[string]string{"f": "f"})
		lbOK(t, root, "snapshot", "build", "-q", "-t", "built-"+sn, "--network", "none", ctx)
		check := []string{"built-" + sn}
		if sn == "busybox" {
			check = append(check, sn)
		}
		for _, name := range check {
			img := exportedConfig(t, root, name)
			n := 0
			for _, h := range img.History {
				if !h.EmptyLayer {
					n++
				}
			}
			if n != len(img.RootFS.DiffIDs) {
				t.Errorf("%s: history names %d layers (%d entries), the image has %d", name, n, len(img.History), len(img.RootFS.DiffIDs))
			}
		}
	}
}

// TestBuildCopyOntoAFile: COPY of a directory where the image has a file
// fails naming it, as docker's and podman's builds do; it replaced the
// file with the directory.
func TestBuildCopyOntoAFile(t *testing.T) {
	root, _ := newStore(t)
	ctx := buildContextDir(t, "FROM busybox\nRUN echo file > /t\nCOPY d /t\n", map[string]string{"d/x": "x"})
	res := lb(t, root, "", "snapshot", "build", "-t", "onto", "--network", "none", ctx)
	if want := "line 3: COPY d /t: /t: the image has a file there"; res.code != 125 || !strings.Contains(res.stderr, want) {
		t.Errorf("build: exit %d, stderr:\n%s\nwant 125 and %q", res.code, res.stderr, want)
	}
	// From a stage, without a trailing "/" too (it replaced the file);
	// a file over the file is copied.
	const src = "FROM busybox AS src\nRUN mkdir /d && echo x > /d/x\nFROM busybox\nRUN echo file > /t\n"
	ctx = buildContextDir(t, src+"COPY --from=src /d /t\n", map[string]string{})
	res = lb(t, root, "", "snapshot", "build", "-t", "onto", "--network", "none", ctx)
	if want := "line 5: COPY --from=src /d /t: /t: the image has a file there"; res.code != 125 || !strings.Contains(res.stderr, want) {
		t.Errorf("build: exit %d, stderr:\n%s\nwant 125 and %q", res.code, res.stderr, want)
	}
	ctx = buildContextDir(t, src+"COPY --from=src /d/x /t\n", map[string]string{})
	lbOK(t, root, "snapshot", "build", "-q", "-t", "onto", "--network", "none", ctx)
	if got := shellIn(t, root, "onto", nil, "cat /t"); got != "x\n" {
		t.Errorf("COPY --from=src /d/x /t: /t holds %q, want x", got)
	}
}

// TestBuildScratchPath: a FROM scratch image has the default PATH in its
// configuration, as docker build and podman build give it: ENV
// PATH=/opt/bin:$PATH keeps /bin for the RUN after it and in the image.
// It had none, and that PATH was "/opt/bin:".
func TestBuildScratchPath(t *testing.T) {
	root, r := newStore(t)
	bb, err := os.ReadFile(testutil.NeedBusybox(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := buildContextDir(t, `FROM scratch
COPY --chmod=0755 busybox /bin/busybox
ENV PATH=/opt/bin:$PATH
RUN ["/bin/busybox", "sh", "-c", "busybox mkdir -p /opt/bin && echo $PATH > /seen"]
`, map[string]string{"busybox": string(bb)})
	lbOK(t, root, "snapshot", "build", "-q", "-t", "fromscratch", "--network", "none", ctx)
	const want = "/opt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	if got := lbOK(t, root, "run", "--network", "none", "fromscratch", "/bin/busybox", "cat", "/seen"); got != want+"\n" {
		t.Errorf("the RUN saw PATH %q, want %s", got, want)
	}
	sn, err := r.InspectSnapshot(t.Context(), "fromscratch")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(sn.Config.Env, "PATH="+want) {
		t.Errorf("the image's Env = %q, want PATH=%s", sn.Config.Env, want)
	}
}
