package volstore_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/testutil"
	"github.com/beamhop/lightbox/volstore"
)

// TestFillOnce: a new volume comes with a Fill, one holder at a time
// (another store of the same root, as another process, waits); once Done
// the volume is never handed out to fill again, and a Fill closed unused
// goes to the next one.
func TestFillOnce(t *testing.T) {
	f := newStore(t)
	ctx := t.Context()
	l1, _, fill, err := f.s.AcquireToFill(ctx, "v", defaults())
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Close()
	if fill == nil {
		t.Fatal("AcquireToFill of a new volume: no Fill")
	}
	if u, err := f.s.Unfilled("v"); err != nil || !u {
		t.Errorf("Unfilled(new volume) = %v, %v; want true", u, err)
	}

	// Another process's launch waits for the first's Fill.
	other := f.open(t)
	type got struct {
		l    *volstore.Lease
		fill *volstore.Fill
		err  error
	}
	done := make(chan got, 1)
	go func() {
		l, _, fl, err := other.AcquireToFill(ctx, "v", defaults())
		done <- got{l, fl, err}
	}()
	testutil.WaitFor(t, 10*time.Second, "the second AcquireToFill to wait", func() bool { return f.waiting.Load() > 0 })
	select {
	case g := <-done:
		t.Fatalf("a second AcquireToFill while the first's Fill is held returned %+v; want it to wait", g)
	default:
	}
	if err := fill.Done(ctx); err != nil {
		t.Fatal(err)
	}
	g := <-done
	if g.err != nil || g.fill != nil {
		t.Fatalf("AcquireToFill after the Fill was Done = %v, %v; want a lease and no Fill", g.fill, g.err)
	}
	g.l.Close()
	if u, err := f.s.Unfilled("v"); err != nil || u {
		t.Errorf("Unfilled(filled volume) = %v, %v; want false", u, err)
	}

	// A Fill given back unused (nothing to copy, a failed copy) goes to
	// the next launch.
	l2, _, fill2, err := f.s.AcquireToFill(ctx, "w", defaults())
	if err != nil || fill2 == nil {
		t.Fatalf("AcquireToFill(w) = %v, %v", fill2, err)
	}
	l2.Close()
	if err := fill2.Close(); err != nil {
		t.Fatal(err)
	}
	l3, _, fill3, err := f.s.AcquireToFill(ctx, "w", defaults())
	if err != nil || fill3 == nil {
		t.Fatalf("AcquireToFill after a Fill closed unused = %v, %v; want a Fill", fill3, err)
	}
	fill3.Close()
	l3.Close()
}

// TestFillNotForOldVolumes: a volume made before volumes were filled (its
// meta.json without "unfilled") is never handed out to fill.
func TestFillNotForOldVolumes(t *testing.T) {
	f := newStore(t)
	ctx := t.Context()
	if _, _, err := f.s.Ensure(ctx, "old", defaults()); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(f.root, "old", "meta.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var md map[string]any
	if err := json.Unmarshal(b, &md); err != nil {
		t.Fatal(err)
	}
	if md["unfilled"] != true {
		t.Fatalf("a new volume's meta.json = %s; want unfilled", b)
	}
	delete(md, "unfilled")
	if b, err = json.Marshal(md); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	l, _, fill, err := f.s.AcquireToFill(ctx, "old", defaults())
	if err != nil || fill != nil {
		t.Fatalf("AcquireToFill(old volume) = %v, %v; want no Fill", fill, err)
	}
	l.Close()
}

// TestFillRecorded: a Fill whose filler wrote its Record in the fill lock
// and whose Done never ran (the launcher killed after the fill) is not
// handed out again: the volume is recorded filled. The record of a
// removed volume does not count for a new one of the same name.
func TestFillRecorded(t *testing.T) {
	f := newStore(t)
	ctx := t.Context()
	l, _, fill, err := f.s.AcquireToFill(ctx, "v", defaults())
	if err != nil || fill == nil {
		t.Fatalf("AcquireToFill(new volume) = %v, %v; want a Fill", fill, err)
	}
	// The filler (a sandbox's init) writes the record; its launcher dies.
	if _, err := fill.File().WriteAt(fill.Record(), 0); err != nil {
		t.Fatal(err)
	}
	l.Close()
	fill.Close()
	l, _, again, err := f.s.AcquireToFill(ctx, "v", defaults())
	if err != nil || again != nil {
		t.Fatalf("AcquireToFill after a recorded fill = %v, %v; want no Fill", again, err)
	}
	l.Close()
	if u, err := f.s.Unfilled("v"); err != nil || u {
		t.Errorf("Unfilled(volume whose fill was recorded by its filler) = %v, %v; want false", u, err)
	}

	if err := f.s.Remove(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	l, _, fresh, err := f.s.AcquireToFill(ctx, "v", defaults())
	if err != nil || fresh == nil {
		t.Fatalf("AcquireToFill(a new volume of a removed one's name) = %v, %v; want a Fill", fresh, err)
	}
	l.Close()
	fresh.Close()
}
