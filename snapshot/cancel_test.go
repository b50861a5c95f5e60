package snapshot

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/testutil"
	"github.com/google/go-cmp/cmp"
)

// TestCancelImport cancels an import while it unpacks a layer: it fails
// with the context's error and the store is as it was.
func TestCancelImport(t *testing.T) {
	s := openStore(t)
	var files []testutil.TarFile
	body := strings.Repeat("cancel me ", 3000)
	for i := range 4000 {
		files = append(files, testutil.TarFile{Hdr: tar.Header{Name: "d/f" + strconv.Itoa(i)}, Body: body})
	}
	layout := testutil.NewOCILayout(t)
	testutil.AddOCIImage(t, layout, "v", busyCfg, testutil.Tar(t, files...))
	before := storeState(t, s)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			ents, _ := os.ReadDir(s.tmp)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), tmpPrefix+"unpack-") {
					cancel()
					return
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	_, err := s.Import(ctx, "big", layout, ImportOptions{})
	if err == nil {
		t.Fatal("the import finished although it was cancelled while unpacking")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Import = %v, want context.Canceled", err)
	}
	// A collection (which an orphaned unpacker may briefly hold off)
	// leaves the store as it was.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := s.GC(t.Context()); err != nil {
			t.Fatal(err)
		}
		diff := cmp.Diff(before, storeState(t, s))
		if diff == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store after a cancelled import (-before +after):\n%s", diff)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
