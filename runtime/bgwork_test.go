//go:build linux

package runtime

import (
	"sync"
	"testing"
)

// TestBgWorkConcurrent: background removals start and end while other
// goroutines wait for them (GC and Close while other goroutines Destroy).
// With the sync.WaitGroup this replaced, a process that ran `GC` in a
// loop beside Destroys died with "sync: WaitGroup is reused before
// previous Wait has returned".
func TestBgWorkConcurrent(t *testing.T) {
	var b bgWork
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 20000 {
				done, _ := b.start()
				done()
			}
		}()
		go func() {
			defer wg.Done()
			for range 20000 {
				b.Wait()
			}
		}()
	}
	wg.Wait()
}

// TestBgWorkWaitsForEarlier: Wait waits for the removals under way when
// it was called, not for one that started later (with Destroys coming
// steadily, waiting until none runs might be never).
func TestBgWorkWaitsForEarlier(t *testing.T) {
	var b bgWork
	doneA, _ := b.start()
	snap := b.pending() // what a Wait called now waits for
	doneB, _ := b.start()
	defer doneB()
	go doneA()
	waitAll(snap) // returns once A ended, B still running
	if n := len(b.pending()); n != 1 {
		t.Errorf("removals under way once A ended: %d, want 1 (B)", n)
	}
}

// TestBgWorkClosed: after close, start says the caller removes in the
// foreground (after Manager.Close nobody would wait for it).
func TestBgWorkClosed(t *testing.T) {
	var b bgWork
	doneA, ok := b.start()
	if !ok {
		t.Fatal("start before close: !ok")
	}
	go doneA()
	b.close() // waits for A
	if n := len(b.pending()); n != 0 {
		t.Errorf("removals under way once close returned: %d, want 0", n)
	}
	if done, ok := b.start(); ok || done != nil {
		t.Errorf("start after close = %v, %v; want nil, false", done != nil, ok)
	}
}
