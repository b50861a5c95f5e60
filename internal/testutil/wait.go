package testutil

import (
	"testing"
	"time"
)

// WaitFor polls ok until it holds, and fails the test once within has
// passed without it: for a state another process reaches in its own time
// (a log line, a cgroup emptied, a container's status), never for a
// guess at how long something takes.
func WaitFor(t testing.TB, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
