package snapshot

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/reexec"
	"github.com/beamhop/lightbox/internal/rmtree"
)

// envChildImport makes the test binary an importing child (for the kill
// test): ROOT NAME SOURCE separated by newlines.
const envChildImport = "LIGHTBOX_SNAPSHOT_TEST_IMPORT"

func TestMain(m *testing.M) {
	switch reexec.Role() {
	case HelperRole:
		HelperMain()
	case rmtree.Role:
		rmtree.Main()
	}
	if v := os.Getenv(envChildImport); v != "" {
		childImport(v)
	}
	os.Exit(m.Run())
}

func childImport(v string) {
	var root, name, source string
	fmt.Sscanf(v, "%s %s %s", &root, &name, &source)
	m, err := idmap.Detect()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s, err := Open(Options{Root: root, Mapping: m})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if _, err := s.Import(context.Background(), name, source, ImportOptions{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}
