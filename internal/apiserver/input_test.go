package apiserver

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
)

// TestStdinQueue: what exec.input queues is read in order, in pieces of
// any size; eof ends it after what was queued; more than MaxStdinQueued
// waiting is refused whole; input after eof, or once the command ended,
// is an error; close wakes a reader waiting and drops the rest.
func TestStdinQueue(t *testing.T) {
	q := newStdinQueue()
	for _, s := range []string{"one ", "two ", "three"} {
		if err := q.add([]byte(s), false); err != nil {
			t.Fatalf("add(%q) = %v", s, err)
		}
	}
	if err := q.add(make([]byte, MaxStdinQueued), false); err == nil || !strings.Contains(err.Error(), "holds") {
		t.Errorf("add past MaxStdinQueued = %v, want an error saying the queue is full", err)
	}
	if err := q.add([]byte("!"), true); err != nil {
		t.Fatalf("add with eof = %v", err)
	}
	if err := q.add([]byte("late"), false); !errors.Is(err, errStdinEnded) {
		t.Errorf("add after eof = %v, want errStdinEnded", err)
	}
	var got strings.Builder
	buf := make([]byte, 3)
	for {
		n, err := q.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if got.String() != "one two three!" {
		t.Errorf("read %q, want %q", got.String(), "one two three!")
	}

	q = newStdinQueue()
	read := make(chan error)
	go func() {
		_, err := q.Read(make([]byte, 8))
		read <- err
	}()
	q.close()
	if err := <-read; err != io.EOF {
		t.Errorf("Read waiting when the queue closed = %v, want io.EOF", err)
	}
	if err := q.add([]byte("x"), false); !errors.Is(err, errStdinClosed) {
		t.Errorf("add after close = %v, want errStdinClosed", err)
	}
}

// TestTurn: lines that take their turn act in the order the lines were
// read, whatever order their goroutines run in, and a line that passes
// at once (any other method) holds none up.
func TestTurn(t *testing.T) {
	const n = 200
	last := make(chan struct{})
	close(last)
	turns := make([]*turn, n)
	for i := range turns {
		turns[i] = &turn{prev: last, mine: make(chan struct{})}
		last = turns[i].mine
	}
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := n - 1; i >= 0; i-- { // started last first
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer turns[i].pass()
			if i%3 == 0 {
				turns[i].pass() // not ordered
				return
			}
			if err := turns[i].take(context.Background()); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		}()
	}
	wg.Wait()
	<-last
	for k := 1; k < len(order); k++ {
		if order[k] < order[k-1] {
			t.Fatalf("turns taken in the order %v, want increasing", order)
		}
	}
}
