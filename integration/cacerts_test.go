//go:build linux

package integration

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/beamhop/lightbox"
)

// hostBundle is the host's CA bundle as --ca-certs host finds it.
func hostBundle(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		t.Fatalf("this test needs the host's CA bundle (Debian's ca-certificates): %v", err)
	}
	return string(b)
}

// TestCACertsHost: --ca-certs host shows the host's bundle over the
// snapshot's, read-only, in sandboxes and in build steps, and never
// writes it into a layer: a commit and a build keep the snapshot's own.
// A snapshot with no bundle is refused for a sandbox and runs without in
// a build step.
func TestCACertsHost(t *testing.T) {
	root, r := newStore(t)
	ctx := t.Context()
	host := hostBundle(t)
	// A snapshot with a bundle of its own.
	base := buildContextDir(t, "FROM busybox\nCOPY bundle.crt /etc/ssl/certs/ca-certificates.crt\n", map[string]string{"bundle.crt": "snapshot's own bundle\n"})
	if _, err := r.BuildSnapshot(ctx, lightbox.BuildOptions{Name: "with-ca", Context: base}); err != nil {
		t.Fatal(err)
	}

	opts := lightbox.SandboxOptions{Snapshot: "with-ca", Network: lightbox.NetworkNone, CACerts: lightbox.CACertsHost}
	sb, err := r.LaunchSandbox(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	res, err := sb.Shell(ctx, "cat /etc/ssl/certs/ca-certificates.crt")
	if err != nil || string(res.Stdout) != host {
		t.Errorf("the sandbox's bundle is not the host's: %v, %d bytes", err, len(res.Stdout))
	}
	if _, err := sb.Shell(ctx, "echo forged > /etc/ssl/certs/ca-certificates.crt"); err == nil {
		t.Errorf("the sandbox wrote over the host's bundle")
	}
	if _, err := sb.Commit(ctx, "with-ca-committed"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile("/etc/ssl/certs/ca-certificates.crt"); string(b) != host {
		t.Fatalf("the host's bundle changed")
	}
	if out := lbOK(t, root, "run", "--network", "none", "with-ca-committed", "cat", "/etc/ssl/certs/ca-certificates.crt"); out != "snapshot's own bundle\n" {
		t.Errorf("the committed snapshot's bundle is %d bytes, want the snapshot's own", len(out))
	}
	// The CLI flag.
	if out := lbOK(t, root, "run", "--network", "none", "--ca-certs", "host", "with-ca", "cat", "/etc/ssl/certs/ca-certificates.crt"); out != host {
		t.Errorf("run --ca-certs host: the bundle is %d bytes, want the host's", len(out))
	}
	// No bundle in the snapshot: refused, naming what to do; a bad value too.
	rr := lb(t, root, "", "run", "--network", "none", "--ca-certs", "host", "busybox", "true")
	if rr.code != 125 || !strings.Contains(rr.stderr, "no CA bundle") || !strings.Contains(rr.stderr, "ca-certificates") {
		t.Errorf("--ca-certs host on a snapshot without a bundle: exit %d stderr %q", rr.code, rr.stderr)
	}
	if rr := lb(t, root, "", "run", "--network", "none", "--ca-certs", "mine", "busybox", "true"); rr.code != 125 || !strings.Contains(rr.stderr, "ca-certs") {
		t.Errorf("--ca-certs mine: exit %d stderr %q", rr.code, rr.stderr)
	}

	// A build: each RUN sees the host's bundle; no layer holds it.
	recipe := `FROM busybox
RUN test ! -e /etc/ssl/certs/ca-certificates.crt && echo none > /before
COPY bundle.crt /etc/ssl/certs/ca-certificates.crt
RUN cat /etc/ssl/certs/ca-certificates.crt > /seen; if echo forged > /etc/ssl/certs/ca-certificates.crt; then echo yes > /wrote; fi
`
	bctx := buildContextDir(t, recipe, map[string]string{"bundle.crt": "snapshot's own bundle\n"})
	if out := lbOK(t, root, "snapshot", "build", "-q", "--ca-certs", "host", "-t", "built", bctx); out != "built\n" {
		t.Fatalf("build printed %q", out)
	}
	out := lbOK(t, root, "run", "--network", "none", "built", "sh", "-c", "cat /before /etc/ssl/certs/ca-certificates.crt; ls /wrote 2>&1; cmp -s /seen /dev/null || wc -c < /seen")
	want := "none\nsnapshot's own bundle\nls: /wrote: No such file or directory\n"
	if !strings.HasPrefix(out, want) {
		t.Errorf("the built snapshot shows\n%s\nwant it to start with\n%s", out, want)
	}
	if !strings.HasSuffix(out, "\n") || strings.TrimSpace(strings.TrimPrefix(out, want)) != strconv.Itoa(len(host)) {
		t.Errorf("the RUN saw a bundle of %q bytes, want the host's %d", strings.TrimPrefix(out, want), len(host))
	}
}

// TestBuildProxyFromEnv: snapshot build passes the caller's proxy
// variables to every RUN as predefined arguments: in no image config and
// no cache key (a rebuild with another proxy is all cached).
func TestBuildProxyFromEnv(t *testing.T) {
	root, _ := newStore(t)
	bctx := buildContextDir(t, "FROM busybox\nRUN echo \"$HTTPS_PROXY $no_proxy\" > /proxy\n", map[string]string{})
	build := func(proxy string) string {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), binPath, "--root", root, "snapshot", "build", "--replace", "-t", "p", bctx)
		cmd.Env = append(os.Environ(), "HTTPS_PROXY="+proxy, "no_proxy=.example")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("build: %v\n%s", err, out)
		}
		return string(out)
	}
	build("http://proxy.example:3128")
	if out := lbOK(t, root, "run", "--network", "none", "p", "cat", "/proxy"); out != "http://proxy.example:3128 .example\n" {
		t.Errorf("the RUN saw %q, want the caller's proxy variables", out)
	}
	if out := lbOK(t, root, "snapshot", "inspect", "p"); strings.Contains(out, "proxy.example") {
		t.Errorf("the proxy is in the image:\n%s", out)
	}
	if out := build("http://other.example:8080"); !strings.Contains(out, "cached") {
		t.Errorf("a rebuild with another proxy ran again (the proxy is in the cache key):\n%s", out)
	}
}
