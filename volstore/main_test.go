package volstore_test

import (
	"os"
	"testing"

	"github.com/beamhop/lightbox/internal/reexec"
	"github.com/beamhop/lightbox/internal/rmtree"
)

func TestMain(m *testing.M) {
	switch reexec.Role() {
	case rmtree.Role:
		rmtree.Main()
	}
	if os.Getenv(envHelper) != "" {
		helperMain()
	}
	os.Exit(m.Run())
}
