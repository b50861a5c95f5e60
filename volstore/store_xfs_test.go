//go:build linux

package volstore_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/vmtest"
	"github.com/beamhop/lightbox/volstore"
	"golang.org/x/sys/unix"
)

// TestXFSGuestStorePicksXFS (run in the VM by TestXFSInVM): a store on XFS
// mounted with prjquota, opened as root, enforces quotas with the xfs
// backend, records it, and its volumes stop a writer at the quota.
func TestXFSGuestStorePicksXFS(t *testing.T) {
	vmtest.GuestOnly(t)
	base := filepath.Join(vmtest.MountPoint(xfsDisk), "store-volstore")
	t.Cleanup(func() { os.RemoveAll(base) })
	s, err := volstore.Open(t.Context(), volstore.Options{Root: filepath.Join(base, "volumes"), TmpDir: filepath.Join(base, "tmp"), Mapping: idmap.Identity()})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := s.QuotaBackend(); b != "xfs" {
		t.Fatalf("QuotaBackend() = %q, %v; want xfs", b, err)
	}
	v, _, err := s.Ensure(t.Context(), "q", volstore.CreateOptions{UID: -1, GID: -1, QuotaMiB: 8})
	if err != nil {
		t.Fatal(err)
	}
	if v.Backend != "xfs" {
		t.Errorf("Backend = %q, want xfs", v.Backend)
	}
	f, err := os.Create(filepath.Join(v.DataDir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	n := 0
	for n < 32<<20 {
		k, werr := f.Write(buf)
		n += k
		if werr != nil {
			err = werr
			break
		}
	}
	f.Close()
	if !errors.Is(err, unix.ENOSPC) || n > 8<<20 || n < 7<<20 {
		t.Errorf("writer stopped after %d bytes with %v, want ENOSPC at 8 MiB", n, err)
	}
	if g, err := s.Get(t.Context(), "q"); err != nil || !g.UsageKnown || g.UsedBytes < int64(n) {
		t.Errorf("Get = %+v, %v; want usage >= %d known", g, err, n)
	}
	if err := s.Remove(t.Context(), "q"); err != nil {
		t.Fatalf("Remove = %v", err)
	}
	if vols, _ := s.List(t.Context(), false); len(vols) != 0 {
		t.Errorf("List after Remove = %+v", vols)
	}
}
