package volstore_test

import (
	"testing"

	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/testutil"
	"github.com/beamhop/lightbox/volstore"
	"github.com/beamhop/lightbox/volstore/backendtest"
)

func TestDirBackendConformance(t *testing.T) {
	m, err := idmap.Detect()
	if err != nil {
		t.Fatal(err)
	}
	backendtest.Run(t, func(t *testing.T) (volstore.Backend, string) {
		return volstore.NewDirBackend(m), t.TempDir()
	})
}

func TestLoopBackendConformance(t *testing.T) {
	testutil.RootOnly(t)
	testutil.NeedTool(t, "mkfs.ext4")
	b, err := volstore.NewLoopBackend()
	testutil.Need(t, err == nil, "needs the loop backend: "+errString(err))
	backendtest.Run(t, func(t *testing.T) (volstore.Backend, string) {
		return b, t.TempDir()
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
