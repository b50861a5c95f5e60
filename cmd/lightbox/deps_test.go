package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestDeps: the CLI does not link packages that every command would pay
// for at start (their package inits, page faults in a larger binary) and
// no command uses. bench/NOTES.md says what each one cost.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-tags", "urfave_cli_no_docs", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, p := range []string{
		"net/http",                               // schollz/progressbar's status server
		"crypto/tls",                             // with net/http
		"github.com/elastic/go-seccomp-bpf/arch", // its tables are generated into internal/sys/seccomp
		"github.com/schollz/progressbar/v3",
	} {
		if slices.Contains(deps, p) {
			t.Errorf("cmd/lightbox links %s", p)
		}
	}
}
