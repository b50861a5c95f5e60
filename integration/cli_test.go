//go:build linux

package integration

import (
	"archive/tar"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beamhop/lightbox/internal/testutil"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestCLIRun drives `lightbox run` as a user would: exit codes, stdin,
// separate streams, env, workdir, hostname, :ro mounts, missing commands.
func TestCLIRun(t *testing.T) {
	root, _ := newStore(t)
	run := func(stdin string, args ...string) cliResult {
		return lb(t, root, stdin, append([]string{"run", "--network", "none"}, args...)...)
	}

	if r := run("", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3"); r.code != 3 || r.stdout != "out\n" || r.stderr != "err\n" {
		t.Errorf("run exit 3 = code %d stdout %q stderr %q, want 3 %q %q", r.code, r.stdout, r.stderr, "out\n", "err\n")
	}
	if r := run("hello stdin\n", "busybox", "cat"); r.code != 0 || r.stdout != "hello stdin\n" {
		t.Errorf("run cat = code %d stdout %q stderr %q, want stdin echoed", r.code, r.stdout, r.stderr)
	}
	if r := run("", "-e", "GREETING=hi there", "busybox", "sh", "-c", `echo "$GREETING"`); r.stdout != "hi there\n" {
		t.Errorf("run -e = %q (stderr %q), want %q", r.stdout, r.stderr, "hi there\n")
	}
	// A value with commas is one value (NO_PROXY lists); a bare name
	// takes its value from the caller's environment, and is left out
	// when the caller has none, as docker run -e does.
	t.Setenv("LB_PASSED", "from the caller")
	if r := run("", "-e", "NO_PROXY=localhost,127.0.0.1", "-e", "LB_PASSED", "-e", "LB_NOT_SET_ANYWHERE", "busybox", "sh", "-c",
		`echo "$NO_PROXY|$LB_PASSED|${LB_NOT_SET_ANYWHERE-unset}"`); r.stdout != "localhost,127.0.0.1|from the caller|unset\n" {
		t.Errorf("run -e with commas and bare names = %q (stderr %q)", r.stdout, r.stderr)
	}
	if r := run("", "-w", "/etc", "busybox", "pwd"); r.stdout != "/etc\n" {
		t.Errorf("run -w /etc pwd = %q (stderr %q)", r.stdout, r.stderr)
	}
	if r := run("", "--name", "probe-host", "busybox", "hostname"); r.stdout != "probe-host\n" {
		t.Errorf("run --name probe-host hostname = %q (stderr %q)", r.stdout, r.stderr)
	}
	// The error names the sandbox once (it said "launch sandbox N: start
	// main command: exec in sandbox N: …").
	if r := run("", "--name", "named-once", "busybox", "no-such-command"); r.code != 127 || strings.Count(r.stderr, "named-once") != 1 ||
		!strings.Contains(r.stderr, "command not found") {
		t.Errorf("run of a missing command: exit %d (stderr %q), want 127, the sandbox named once and the cause", r.code, r.stderr)
	}
	if r := run("", "busybox", "/etc/passwd"); r.code != 126 {
		t.Errorf("run of a non-executable file: exit %d (stderr %q), want 126", r.code, r.stderr)
	}
	// The same with -d, as docker run -d: the launch fails, nothing is
	// left, and the status says why.
	for _, tc := range []struct {
		cmd  string
		code int
	}{{"no-such-command", 127}, {"/etc/passwd", 126}} {
		if r := run("", "-d", "--name", "dfail", "busybox", tc.cmd); r.code != tc.code || r.stdout != "" || !strings.Contains(r.stderr, tc.cmd) {
			t.Errorf("run -d %s: exit %d stdout %q stderr %q, want %d and the error", tc.cmd, r.code, r.stdout, r.stderr, tc.code)
		}
		if e, ok := ps(t, root)["dfail"]; ok {
			t.Errorf("run -d %s left sandbox dfail %s", tc.cmd, e.Status)
		}
	}
	// A user id the sandbox's user namespace does not map (the store's
	// range is 65536 ids) is named as such, not "invalid argument".
	if r := run("", "-u", "99999999", "busybox", "id"); r.code != 125 || !strings.Contains(r.stderr, "uid 99999999 is not mapped in the sandbox") {
		t.Errorf("run -u 99999999: exit %d stderr %q, want 125 and the uid named as not mapped", r.code, r.stderr)
	}
	if r := run("", "-u", "0:99999999", "busybox", "id"); r.code != 125 || !strings.Contains(r.stderr, "gid 99999999 is not mapped in the sandbox") {
		t.Errorf("run -u 0:99999999: exit %d stderr %q, want 125 and the gid named as not mapped", r.code, r.stderr)
	}
	if r := run("", "no-such-snapshot", "true"); r.code != 125 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("run of an unknown snapshot: exit %d stderr %q, want 125 and not found", r.code, r.stderr)
	}

	// Bind mounts: relative source, read-only, the host file untouched.
	project := t.TempDir()
	if err := os.WriteFile(filepath.Join(project, "data.txt"), []byte("host data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	defer os.Chdir(wd)
	os.Chdir(filepath.Dir(project))
	rel := "./" + filepath.Base(project)
	r := lb(t, root, "", "run", "--network", "none", "-v", rel+":/work:ro", "-w", "/work", "busybox",
		"sh", "-c", "cat data.txt; echo x > data.txt && echo WROTE")
	if !strings.Contains(r.stdout, "host data") || strings.Contains(r.stdout, "WROTE") || r.code == 0 {
		t.Errorf("run -v %s:/work:ro: code %d stdout %q stderr %q, want the data and a failed write", rel, r.code, r.stdout, r.stderr)
	}
	r = lb(t, root, "", "run", "--network", "none", "-v", rel+":/work", "busybox", "sh", "-c", "echo new > /work/out.txt")
	if got, _ := os.ReadFile(filepath.Join(project, "out.txt")); r.code != 0 || string(got) != "new\n" {
		t.Errorf("run -v rw: code %d stderr %q, host file %q", r.code, r.stderr, got)
	}
	// A missing bind source is an error, not a created directory.
	r = lb(t, root, "", "run", "--network", "none", "-v", "./does-not-exist:/x", "busybox", "true")
	if r.code != 125 || !strings.Contains(r.stderr, "does-not-exist") {
		t.Errorf("missing bind source: code %d stderr %q, want 125 naming it", r.code, r.stderr)
	}
	if _, err := os.Stat("does-not-exist"); err == nil {
		t.Errorf("a missing bind source was created")
	}
}

func TestCLISnapshots(t *testing.T) {
	root, _ := newStore(t)
	var list []map[string]any
	if err := json.Unmarshal([]byte(lbOK(t, root, "snapshot", "ls", "--format", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0]["name"] != "busybox" {
		t.Fatalf("snapshot ls --format json = %v, want busybox alone", list)
	}
	var insp map[string]any
	if err := json.Unmarshal([]byte(lbOK(t, root, "snapshot", "inspect", "busybox")), &insp); err != nil {
		t.Fatal(err)
	}
	if insp["name"] != "busybox" || insp["digest"] == "" {
		t.Errorf("snapshot inspect = %v", insp)
	}
	if r := lb(t, root, "", "snapshot", "import", "busybox", testBusybox(t)); r.code == 0 || !strings.Contains(r.stderr, "already exists (--replace replaces it)") {
		t.Errorf("import over an existing name: code %d stderr %q, want an error saying it exists", r.code, r.stderr)
	}
	lbOK(t, root, "snapshot", "import", "--replace", "busybox", testBusybox(t))
	// Export in both forms and import back.
	dir := t.TempDir()
	lbOK(t, root, "snapshot", "export", "busybox", dir+"/layout")
	lbOK(t, root, "snapshot", "export", "--format", "oci-archive", "--tag", "v1", "busybox", dir+"/img.tar")
	// A destination named .tar is an archive without --format.
	lbOK(t, root, "snapshot", "export", "busybox", dir+"/auto.tar")
	if st, err := os.Stat(dir + "/auto.tar"); err != nil || !st.Mode().IsRegular() {
		t.Errorf("export to auto.tar without --format: %v, %v; want an oci-archive file", st, err)
	}
	lbOK(t, root, "snapshot", "import", "from-auto", dir+"/auto.tar")
	lbOK(t, root, "snapshot", "rm", "from-auto")
	lbOK(t, root, "snapshot", "import", "from-layout", dir+"/layout:busybox")
	lbOK(t, root, "snapshot", "import", "from-archive", dir+"/img.tar:v1")
	if out := lbOK(t, root, "run", "--network", "none", "from-archive", "sh", "-c", "echo round trip"); out != "round trip\n" {
		t.Errorf("a snapshot exported and imported back printed %q", out)
	}
	lbOK(t, root, "snapshot", "rm", "from-layout", "from-archive")
	lbOK(t, root, "snapshot", "rm", "busybox")
	if out := lbOK(t, root, "snapshot", "ls", "--format", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("snapshot ls after rm = %s, want []", out)
	}
	if r := lb(t, root, "", "snapshot", "import", "../bad", testBusybox(t)); r.code == 0 || !strings.Contains(r.stderr, "invalid name") {
		t.Errorf("import as ../bad: code %d stderr %q, want invalid name", r.code, r.stderr)
	}
}

// A launcher's umask does not reach the sandbox: under umask 077 the
// sandbox's root keeps the image's mode, the init's /etc files are 0644,
// and its commands, run's and exec's, get runc's and podman's 0022, so a
// user of the sandbox other than root can still use it.
func TestCLIUmask(t *testing.T) {
	root, _ := newStore(t)
	lb077 := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("/bin/sh", append([]string{"-c", `umask 077 && exec "$0" "$@"`, binPath, "--root", root}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("umask 077; lightbox %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// An image whose top layer has no "./" entry (as most layers), imported
	// under umask 077 too: its root is 0755, as a Mkdir's would be under
	// 022.
	layout := testutil.NewOCILayout(t)
	testutil.AddOCIImage(t, layout, "latest", ispec.ImageConfig{}, testutil.TarDir(t, testBusybox(t)),
		testutil.Tar(t, testutil.TarFile{Hdr: tar.Header{Name: "etc/extra"}, Body: "x"}))
	lb077("snapshot", "import", "layered", layout+":latest")
	probe := "umask; stat -c %a / /etc/hosts; echo x > /dev/shm/f; stat -c %a /dev/shm/f"
	want := "0022\n755\n644\n644\n"
	for _, snap := range []string{"busybox", "layered"} {
		if got := lb077("run", "--network", "none", "--user", "1000", snap, "sh", "-c", probe); got != want {
			t.Errorf("run %s under umask 077 (as uid 1000):\n%s\nwant:\n%s", snap, got, want)
		}
	}
	lb077("run", "-d", "--name", "um", "--network", "none", "busybox", "sleep", "1000")
	defer lb(t, root, "", "rm", "-f", "um")
	if got := lb077("exec", "--user", "1000", "um", "sh", "-c", "rm -f /dev/shm/f; "+probe); got != want {
		t.Errorf("exec under umask 077 (as uid 1000):\n%s\nwant:\n%s", got, want)
	}
}
