//go:build linux

package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/testutil"
)

// typescriptTests is how many tests clients/typescript's suites hold: fewer
// passing means some did not run.
const typescriptTests = 36

// TestTypeScriptClient runs the node --test suites of @beamhop/lightbox
// (clients/typescript: the docs' snippets as written, the client's
// behaviour, SIGKILL of Node.js, npm pack and install in a fresh project)
// against this binary, on a copy of the client with its pinned TypeScript
// installed by `npm ci` from the npm registry.
func TestTypeScriptClient(t *testing.T) {
	testutil.NeedBusybox(t)
	node := testutil.NeedTool(t, "node")
	npm := testutil.NeedTool(t, "npm")
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		t.Fatalf("node --version: %v", err)
	}
	t.Logf("node %s", strings.TrimSpace(string(out)))
	if major, _ := strconv.Atoi(strings.TrimPrefix(strings.Split(strings.TrimSpace(string(out)), ".")[0], "v")); major < 18 {
		t.Fatalf("node %s: the client needs Node.js 18 or newer", out)
	}

	// A copy, so that neither the checkout nor its node_modules changes.
	dir := filepath.Join(t.TempDir(), "typescript")
	tmp := filepath.Join(t.TempDir(), "tmp")
	for _, d := range []string{dir, tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { removeStore(t, tmp) }) // stores a failed test left
	cp := exec.Command("sh", "-c", `tar -C "$1" --exclude=./node_modules --exclude=./dist-test --exclude='*.tgz' -cf - . | tar -C "$2" -xf -`,
		"sh", filepath.Join("..", "clients", "typescript"), dir)
	if out, err := cp.CombinedOutput(); err != nil {
		t.Fatalf("copy clients/typescript: %v: %s", err, out)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	env := append(os.Environ(), "LIGHTBOX_BIN="+binPath, "TMPDIR="+tmp)
	ci := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	ci.Dir, ci.Env = dir, env
	if out, err := ci.CombinedOutput(); err != nil {
		t.Fatalf("npm ci (the pinned typescript and @types/node from the npm registry): %v\n%s", err, out)
	}

	run := exec.CommandContext(ctx, npm, "test")
	run.Dir, run.Env = dir, env
	out, err = run.CombinedOutput()
	report := string(out)
	if err != nil || t.Failed() {
		t.Errorf("npm test: %v\n%s", err, report)
	} else {
		t.Logf("npm test:\n%s", summary(report))
	}
	counts := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$`).FindAllStringSubmatch(report, -1) {
		counts[m[1]], _ = strconv.Atoi(m[2])
	}
	if counts["pass"] < typescriptTests || counts["fail"]+counts["cancelled"]+counts["skipped"]+counts["todo"] != 0 {
		t.Errorf("node --test counts %v: want %d passed and nothing failed, cancelled or skipped", counts, typescriptTests)
	}
}

// summary keeps the test lines and counts of a node --test report.
func summary(report string) string {
	var keep []string
	for _, l := range strings.Split(report, "\n") {
		if strings.HasPrefix(l, "ok ") || strings.HasPrefix(l, "not ok ") || strings.HasPrefix(l, "# ") {
			keep = append(keep, "    "+l)
		}
	}
	return strings.Join(keep, "\n")
}
