//go:build linux

package integration

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/beamhop/lightbox"
)

// treeState records a host tree: each entry's type, mode, owner and
// content, to prove a tree unchanged.
func treeState(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s %v %d:%d", strings.TrimPrefix(p, dir), fi.Mode(), st.Uid, st.Gid)
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %q", data)
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestCopyOnWriteProject: three sandboxes alive at once, each with the
// same project mounted copy-on-write (Mount.Overlay), each writing its own
// node_modules tree, editing package.json and deleting a file. None sees
// another's writes, the host's copy is unchanged (as root, owned by an
// ordinary user, and shown inside as the sandbox's root), a commit does not
// take what was written there, and nothing is left behind.
func TestCopyOnWriteProject(t *testing.T) {
	root, r := newStore(t)
	ctx := t.Context()
	project := filepath.Join(t.TempDir(), "my-project")
	os.MkdirAll(filepath.Join(project, "src"), 0o755)
	os.WriteFile(filepath.Join(project, "package.json"), []byte(`{"name":"demo"}`+"\n"), 0o644)
	os.WriteFile(filepath.Join(project, "README"), []byte("read me\n"), 0o644)
	os.WriteFile(filepath.Join(project, "src", "index.js"), []byte("module.exports = 1\n"), 0o644)
	if os.Geteuid() == 0 {
		// A checkout of an ordinary user: shown inside as the sandbox's root.
		filepath.WalkDir(project, func(p string, _ fs.DirEntry, _ error) error { return os.Lchown(p, 4242, 4242) })
	}
	before := treeState(t, project)

	sbs := make([]*lightbox.Sandbox, 3)
	for i := range sbs {
		sb, err := r.LaunchSandbox(ctx, lightbox.SandboxOptions{
			Snapshot: "busybox", Network: lightbox.NetworkNone, Workdir: "/work",
			Mounts: map[string]lightbox.Mount{"/work": {Source: project, Overlay: true}},
		})
		if err != nil {
			t.Fatal(err)
		}
		sbs[i] = sb
		defer sb.Destroy(ctx)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(sbs))
	for i, sb := range sbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			script := fmt.Sprintf(`set -e
stat -c '%%u:%%g' package.json
rm -rf node_modules
for d in a b c d e f g h; do
	mkdir -p node_modules/dep-%[1]d-$d/lib
	for f in 1 2 3 4 5 6 7 8 9 10; do echo job%[1]d > node_modules/dep-%[1]d-$d/lib/f$f.js; done
done
echo '"job%[1]d"' >> package.json
rm README
echo changed > src/index.js
ls node_modules | tr '\n' ' '; echo
cat package.json
cat node_modules/dep-%[1]d-h/lib/f10.js`, i)
			res, err := sb.Shell(ctx, script)
			if err != nil {
				errs[i] = fmt.Errorf("job %d: %w (stderr %q)", i, err, res.Stderr)
				return
			}
			want := fmt.Sprintf("0:0\ndep-%[1]d-a dep-%[1]d-b dep-%[1]d-c dep-%[1]d-d dep-%[1]d-e dep-%[1]d-f dep-%[1]d-g dep-%[1]d-h \n{\"name\":\"demo\"}\n\"job%[1]d\"\njob%[1]d\n", i)
			if got := string(res.Stdout); got != want {
				errs[i] = fmt.Errorf("job %d saw\n%s\nwant\n%s", i, got, want)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	// Each still sees only its own writes once all three wrote.
	for i, sb := range sbs {
		res, err := sb.Shell(ctx, "ls node_modules | wc -l; ls; cat src/index.js")
		if err != nil {
			t.Fatal(err)
		}
		if got := string(res.Stdout); got != "8\nnode_modules\npackage.json\nsrc\nchanged\n" {
			t.Errorf("sandbox %d sees %q after all wrote", i, got)
		}
	}
	if after := treeState(t, project); after != before {
		t.Errorf("the host's project changed:\nbefore\n%s\nafter\n%s", before, after)
	}
	// A commit takes the sandbox's own layer, not what it wrote in /work.
	if _, err := sbs[0].Commit(ctx, "committed"); err != nil {
		t.Fatal(err)
	}
	err := r.RunInSandbox(ctx, lightbox.SandboxOptions{Snapshot: "committed", Network: lightbox.NetworkNone}, func(sb *lightbox.Sandbox) error {
		res, err := sb.Shell(ctx, "ls -A /work 2>&1; true")
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(res.Stdout)) != "" {
			return fmt.Errorf("the committed snapshot has /work holding %q", res.Stdout)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	for _, sb := range sbs {
		if err := sb.Destroy(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if after := treeState(t, project); after != before {
		t.Errorf("the host's project changed after the sandboxes went:\n%s", after)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "sandboxes")); len(ents) > 0 {
		var left []string
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), ".") {
				left = append(left, e.Name())
			}
		}
		if len(left) > 0 {
			t.Errorf("left in the store's sandboxes: %v", left)
		}
	}
}

// TestCopyOnWriteCLI: -v SRC:DST:O through the CLI, and the mounts it
// refuses (a file, read-only too, a volume), each naming the mount.
func TestCopyOnWriteCLI(t *testing.T) {
	root, _ := newStore(t)
	dir := t.TempDir()
	project := filepath.Join(dir, "p")
	os.Mkdir(project, 0o755)
	os.WriteFile(filepath.Join(project, "f"), []byte("host\n"), 0o644)
	wd, _ := os.Getwd()
	defer os.Chdir(wd)
	os.Chdir(dir)
	out := lbOK(t, root, "run", "--network", "none", "-v", "./p:/work:O", "busybox", "sh", "-c", "echo sandbox > /work/f; touch /work/new; cat /work/f")
	if out != "sandbox\n" {
		t.Errorf("run -v ./p:/work:O printed %q", out)
	}
	if b, _ := os.ReadFile(filepath.Join(project, "f")); string(b) != "host\n" {
		t.Errorf("host file now %q", b)
	}
	if _, err := os.Stat(filepath.Join(project, "new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file the sandbox made is on the host: %v", err)
	}
	for _, c := range []struct{ v, want string }{
		{"./p/f:/work:O", "not a directory"},
		{"vol:/work:O", "host paths"},
	} {
		r := lb(t, root, "", "run", "--network", "none", "-v", c.v, "busybox", "true")
		if r.code != 125 || !strings.Contains(r.stderr, c.want) || !strings.Contains(r.stderr, "/work") {
			t.Errorf("-v %s: exit %d stderr %q, want 125 and %q", c.v, r.code, r.stderr, c.want)
		}
	}
	_, rt := newStore(t)
	err := rt.RunInSandbox(t.Context(), lightbox.SandboxOptions{Snapshot: "busybox", Network: lightbox.NetworkNone,
		Mounts: map[string]lightbox.Mount{"/work": {Source: project, Overlay: true, ReadOnly: true}}}, func(*lightbox.Sandbox) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "choose one") {
		t.Errorf("Overlay and ReadOnly: %v, want a refusal", err)
	}
	if vols := lbOK(t, root, "volume", "ls", "--format", "json"); strings.TrimSpace(vols) != "[]" {
		t.Errorf("a refused launch left volumes: %s", vols)
	}
}

// TestVolumeNameWarning: -v my-project:/work names a volume; when
// ./my-project exists the run says so once it made the volume, and not
// when the volume was there already or no such entry exists.
func TestVolumeNameWarning(t *testing.T) {
	root, _ := newStore(t)
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "my-project"), 0o755)
	wd, _ := os.Getwd()
	defer os.Chdir(wd)
	os.Chdir(dir)
	const warning = "created volume my-project; did you mean ./my-project?"
	for i, c := range []struct {
		args []string
		warn bool
	}{
		{[]string{"run", "--network", "none", "-v", "my-project:/work", "busybox", "true"}, true},
		{[]string{"run", "--network", "none", "-v", "my-project:/work", "busybox", "true"}, false}, // exists now
		{[]string{"run", "--network", "none", "-v", "other:/work", "busybox", "true"}, false},      // no ./other
	} {
		r := lb(t, root, "", c.args...)
		if r.code != 0 || strings.Contains(r.stderr, warning) != c.warn {
			t.Errorf("run %d (%v): exit %d stderr %q, want the warning: %v", i, c.args, r.code, r.stderr, c.warn)
		}
	}
	lbOK(t, root, "volume", "rm", "my-project")
	if r := lb(t, root, "", "run", "-d", "--network", "none", "-v", "my-project:/work", "busybox", "true"); !strings.Contains(r.stderr, warning) {
		t.Errorf("run -d: stderr %q, want the warning", r.stderr)
	}
}
