//go:build linux

package integration

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCLIPrintsRemoved: volume rm, snapshot rm, rm and gc print what they
// removed (as docker does), and nothing with -q.
func TestCLIPrintsRemoved(t *testing.T) {
	root, _ := newStore(t)
	for _, v := range []string{"v1", "v2", "v3"} {
		lbOK(t, root, "volume", "create", v)
	}
	if out := lbOK(t, root, "volume", "rm", "v1", "v2"); out != "v1\nv2\n" {
		t.Errorf("volume rm v1 v2 printed %q, want the names", out)
	}
	if out := lbOK(t, root, "volume", "rm", "-q", "v3"); out != "" {
		t.Errorf("volume rm -q printed %q, want nothing", out)
	}
	if out := lbOK(t, root, "volume", "rm", "-f", "gone"); out != "" {
		t.Errorf("volume rm -f of a missing volume printed %q, want nothing", out)
	}
	lbOK(t, root, "snapshot", "import", "copy1", testBusybox(t))
	lbOK(t, root, "snapshot", "import", "copy2", testBusybox(t))
	if out := lbOK(t, root, "snapshot", "rm", "copy1"); out != "copy1\n" {
		t.Errorf("snapshot rm copy1 printed %q, want its name", out)
	}
	if out := lbOK(t, root, "snapshot", "rm", "--quiet", "copy2"); out != "" {
		t.Errorf("snapshot rm --quiet printed %q, want nothing", out)
	}
	lbOK(t, root, "run", "-d", "--network", "none", "--name", "gone1", "busybox")
	if out := lbOK(t, root, "rm", "-f", "-q", "gone1"); out != "" {
		t.Errorf("rm -f -q printed %q, want nothing", out)
	}

	// gc: dead sandboxes (their init killed) are removed and named.
	for _, name := range []string{"dead1", "dead2"} {
		lbOK(t, root, "run", "-d", "--network", "none", "--name", name, "busybox")
		killInit(t, root, name)
	}
	if out := lbOK(t, root, "gc", "-q"); out != "" {
		t.Errorf("gc -q printed %q, want nothing", out)
	}
	lbOK(t, root, "run", "-d", "--network", "none", "--name", "dead3", "busybox")
	killInit(t, root, "dead3")
	if out := lbOK(t, root, "gc"); out != "sandbox dead3\n" {
		t.Errorf("gc printed %q, want \"sandbox dead3\\n\"", out)
	}
	if out := lbOK(t, root, "gc"); out != "" {
		t.Errorf("gc with nothing to do printed %q", out)
	}
	if got := ps(t, root); len(got) != 0 {
		t.Errorf("ps after gc: %v", got)
	}
}

// killInit SIGKILLs a detached sandbox's init and waits until ps calls it
// dead.
func killInit(t *testing.T, root, name string) {
	t.Helper()
	var list []struct {
		Name   string `json:"name"`
		Pid    int    `json:"pid"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(lbOK(t, root, "ps", "-a", "--format", "json")), &list); err != nil {
		t.Fatal(err)
	}
	pid := 0
	for _, e := range list {
		if e.Name == name {
			pid = e.Pid
		}
	}
	if pid <= 0 {
		t.Fatalf("no pid for sandbox %s in ps: %+v", name, list)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the init of %s (pid %d): %v", name, pid, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for ps(t, root)[name].Status != "dead" {
		if time.Now().After(deadline) {
			t.Fatalf("sandbox %s not dead 30 s after its init was killed: %+v", name, ps(t, root)[name])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCLISnapshotSize: snapshot ls shows one SIZE for a tree imported as a
// directory and as its tarball (the unpacked size); inspect also shows
// what the blobs take as stored.
func TestCLISnapshotSize(t *testing.T) {
	root, _ := newStore(t)
	tree := testBusybox(t)
	tarball := filepath.Join(t.TempDir(), "rootfs.tar")
	if out, err := exec.Command("tar", "-C", tree, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	lbOK(t, root, "snapshot", "import", "fromtar", tarball)
	// "busybox" is the directory import newStore made.
	type snap struct {
		Name       string `json:"name"`
		Size       int64  `json:"size"`
		StoredSize int64  `json:"storedSize"`
	}
	inspect := func(name string) snap {
		var s snap
		if err := json.Unmarshal([]byte(lbOK(t, root, "snapshot", "inspect", name)), &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	dir, tar := inspect("busybox"), inspect("fromtar")
	if dir.Size != tar.Size || dir.Size <= 0 {
		t.Errorf("size of the directory import %d, of the tarball import %d: want one unpacked size", dir.Size, tar.Size)
	}
	if dir.StoredSize >= dir.Size || tar.StoredSize <= tar.Size {
		t.Errorf("stored sizes: directory %d (want the gzipped blob, under %d), tarball %d (want the tar, over %d)",
			dir.StoredSize, dir.Size, tar.StoredSize, tar.Size)
	}
	sizes := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(lbOK(t, root, "snapshot", "ls")), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 {
			t.Fatalf("snapshot ls row %q", line)
		}
		sizes[f[0]] = f[3] + " " + f[4]
	}
	if sizes["busybox"] == "" || sizes["busybox"] != sizes["fromtar"] {
		t.Errorf("snapshot ls SIZE: directory %q, tarball %q; want the same", sizes["busybox"], sizes["fromtar"])
	}
}

// TestCLILabels: a label with a control character is refused before the
// store is touched, and a label lightbox did not validate (a hand-edited
// meta.json) is printed escaped by volume ls, so it can forge no row and
// send no escape sequence to the terminal.
func TestCLILabels(t *testing.T) {
	root, _ := newStore(t)
	for _, bad := range []string{"k=line\nforged   0 B   dir", "k=\x1b[2J", "k=a\tb", "k\x1b=v", "k=evil\u202e"} {
		r := lb(t, root, "", "volume", "create", "--label", bad, "badvol")
		if r.code == 0 || !strings.Contains(r.stderr, "label") || strings.ContainsAny(r.stderr, "\x1b\t") {
			t.Errorf("volume create --label %q: code %d stderr %q; want a refusal that names the label, escaped", bad, r.code, r.stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "volumes", "badvol")); !os.IsNotExist(err) {
		t.Errorf("volume dir after refused creates: %v", err)
	}
	if r := lb(t, root, "", "volume", "ls", "--filter", "label=k=\x1b[2J"); r.code == 0 {
		t.Errorf("volume ls --filter with an escape: code 0, want a refusal")
	}

	lbOK(t, root, "volume", "create", "--label", "flow=build", "--label", "team=ml infra ✓", "good")
	meta := filepath.Join(root, "volumes", "good", "meta.json")
	data, err := os.ReadFile(meta)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	m["labels"] = map[string]string{"flow": "x\nforged\t1 GiB\tdir", "clear": "\x1b[2J\x1b[H", "ok": "ml infra ✓", "k\u202e": "v"}
	m["backend"] = "dir\x1b]0;title\x07"
	edited, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(meta, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	out := lbOK(t, root, "volume", "ls")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 {
		t.Errorf("volume ls printed %d lines, want a header and one row:\n%s", len(lines), out)
	}
	if strings.ContainsAny(out, "\x1b\x07\t\u202e") {
		t.Errorf("volume ls printed raw control characters: %q", out)
	}
	for _, want := range []string{`clear="\x1b[2J\x1b[H"`, `flow="x\nforged\t1 GiB\tdir"`, "ok=ml infra ✓", `"k\u202e"=v`, `"dir\x1b]0;title\a"`} {
		if !strings.Contains(out, want) {
			t.Errorf("volume ls does not show %s:\n%s", want, out)
		}
	}
}

// TestCLIUsageErrors: a bad flag or an unknown command is one line on
// stderr naming it and where the help is, status 125, and nothing on
// stdout (a script's `out=$(lightbox …)` must not capture the help);
// urfave/cli's defaults printed the whole help on stdout, and an unknown
// command said "No help topic" with status 3.
func TestCLIUsageErrors(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store") // no store is made: the command line fails first
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--no-such-flag", "busybox", "true"}, "-no-such-flag (lightbox run --help lists the flags)"},
		{[]string{"--no-such-global", "ps"}, "-no-such-global (lightbox --help lists the flags)"},
		{[]string{"volume", "create", "--bad", "v"}, "-bad (lightbox volume create --help lists the flags)"},
		{[]string{"no-such-command"}, `"no-such-command" is not a lightbox command`},
		{[]string{"snapshot", "no-such"}, `"no-such" is not a lightbox snapshot command`},
		{[]string{"volume", "no-such"}, `"no-such" is not a lightbox volume command`},
	} {
		r := lb(t, root, "", tc.args...)
		if r.code != 125 || r.stdout != "" || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("lightbox %s: exit %d, stdout %.80q, stderr %q; want 125, nothing on stdout, one line with %q",
				strings.Join(tc.args, " "), r.code, r.stdout, r.stderr, tc.want)
		}
	}
	// Help asked for is still help, on stdout.
	for _, args := range [][]string{{"--help"}, {"run", "--help"}, {"volume"}} {
		if r := lb(t, root, "", args...); r.code != 0 || !strings.Contains(r.stdout, "USAGE:") {
			t.Errorf("lightbox %s: exit %d stdout %.80q, want the help", strings.Join(args, " "), r.code, r.stdout)
		}
	}
}

// TestCLIEmptyRoot: `--root ""` (a script's `--root "$STORE"` with STORE
// unset) is refused before any store is opened: it used to mean the
// default store, /var/lib/lightbox as root. (LIGHTBOX_ROOT names another
// store here, so that the old behaviour opened that one, not the system's.)
func TestCLIEmptyRoot(t *testing.T) {
	fallback := filepath.Join(t.TempDir(), "fallback")
	for _, args := range [][]string{{"--root", "", "ps"}, {"--root=", "ps"}} {
		cmd := exec.Command(binPath, args...)
		cmd.Env = append(os.Environ(), "LIGHTBOX_ROOT="+fallback)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 125 || !strings.Contains(string(out), "--root is empty") {
			t.Errorf("lightbox %q: %v, output %q; want 125 and --root is empty", args, err, out)
		}
	}
	if _, err := os.Stat(fallback); err == nil {
		t.Errorf("a store was made at %s", fallback)
		removeStore(t, fallback)
	}
}
