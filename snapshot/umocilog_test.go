package snapshot

import (
	"archive/tar"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/beamhop/lightbox/internal/testutil"
)

// umociCounter counts the records umoci's log routing hands a Logger.
type umociCounter struct{ n atomic.Int64 }

func (h *umociCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *umociCounter) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "source" && a.Value.String() == "umoci" {
			h.n.Add(1)
		}
		return true
	})
	return nil
}
func (h *umociCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *umociCounter) WithGroup(string) slog.Handler      { return h }

// umoci's records go to the Logger of the store at work, not to that of
// whichever store a process opened first.
func TestUmociLogFollowsTheStoreAtWork(t *testing.T) {
	ctx := t.Context()
	m := testMapping(t)
	var first, second umociCounter
	a := openStoreAt(t, t.TempDir(), m, slog.New(&first))
	b := openStoreAt(t, t.TempDir(), m, slog.New(&second))
	p := filepath.Join(t.TempDir(), "one.tar")
	if err := os.WriteFile(p, testutil.Tar(t, testutil.TarFile{Hdr: tar.Header{Name: "one"}, Body: "1"}), 0o644); err != nil {
		t.Fatal(err)
	}
	work := func(s *Store) {
		t.Helper()
		if _, err := s.Import(ctx, "one", p, ImportOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := s.Remove(ctx, "one"); err != nil {
			t.Fatal(err)
		}
	}
	work(b)
	if n1, n2 := first.n.Load(), second.n.Load(); n1 != 0 || n2 == 0 {
		t.Fatalf("after work in the second store: umoci records %d to the first store's Logger, %d to the second's; want 0 and some", n1, n2)
	}
	before := second.n.Load()
	work(a)
	if n1, n2 := first.n.Load(), second.n.Load(); n1 == 0 || n2 != before {
		t.Fatalf("after work in the first store: umoci records %d to its Logger, %d more to the second's; want some and 0", n1, n2-before)
	}
}
