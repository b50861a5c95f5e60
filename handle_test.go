//go:build linux

package lightbox

import (
	"bufio"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLaunchAfterClose: a launch after Close, or racing it, fails with
// ErrClosed and leaves nothing in the store; a sandbox launched before
// Close still runs commands and is destroyed through its handle, all of
// it gone when Destroy returns. (As
// root a launch after Close exec'd the closed descriptor of the init's
// read-only bind: "fork/exec /proc/self/fd/11: no such file or
// directory"; rootless it launched a sandbox Close no longer covered.)
func TestLaunchAfterClose(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	r, err := Open(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	importBusybox(t, r)
	ctx := t.Context()
	opts := SandboxOptions{Snapshot: "busybox", Network: NetworkNone}
	before, err := r.LaunchSandbox(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}

	// Launches racing Close: each either launches (and is destroyed) or
	// is ErrClosed.
	var wg sync.WaitGroup
	errc := make(chan error, 64)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				sb, err := r.LaunchSandbox(ctx, opts)
				if err != nil {
					errc <- err
					return
				}
				if err := sb.Destroy(ctx); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	if err := r.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("LaunchSandbox racing Close = %v, want ErrClosed", err)
		}
	}

	sb, err := r.LaunchSandbox(ctx, opts)
	if !errors.Is(err, ErrClosed) {
		t.Errorf("LaunchSandbox after Close = %v, want ErrClosed", err)
	}
	if sb != nil {
		_ = sb.Destroy(ctx) // the error above says it should not exist
	}
	res, err := before.Shell(ctx, "echo still")
	if err != nil || string(res.Stdout) != "still\n" {
		t.Errorf("Shell in a sandbox launched before Close = %v, %v; want still", res, err)
	}
	if err := before.Destroy(ctx); err != nil {
		t.Errorf("Destroy after Close: %v", err)
	}
	// After Close nobody waits for a removal left to the background: a
	// Destroy then removes the sandbox before it returns (it raced the
	// test's cleanup of the store, rootless: "permission denied").
	if left := leftInStore(t, root); len(left) > 0 {
		t.Errorf("left in the store once Destroy after Close returned: %v", left)
	}
	r2, err := Open(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	list, err := r2.ListSandboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range list {
		t.Errorf("left after Close: sandbox %s (%s)", in.Name, in.Status)
	}
}

// TestRunInSandboxContextEnds: when RunInSandbox's context ends while fn
// runs a command, the sandbox is destroyed under it, and the error says
// why: it matches the context's error (it was only fn's "command killed
// by signal 15", which a CI job cancelled on purpose reported as a
// failed command) and still carries fn's ExitError.
func TestRunInSandboxContextEnds(t *testing.T) {
	r, _ := busyboxStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var name string
	err := r.RunInSandbox(ctx, SandboxOptions{Snapshot: "busybox", Network: NetworkNone}, func(sb *Sandbox) error {
		name = sb.Name()
		c := sb.Command(t.Context(), "sh", "-c", "echo started; exec sleep 100") // not ctx: the destroy ends it
		out, pw := io.Pipe()
		defer pw.Close()
		c.Stdout = pw
		if err := c.Start(); err != nil {
			return err
		}
		if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
			return err
		}
		cancel()
		return c.Wait()
	})
	var ee *ExitError
	if !errors.Is(err, context.Canceled) || !errors.As(err, &ee) {
		t.Errorf("RunInSandbox whose context ended under a command = %v; want it to match context.Canceled and carry the command's ExitError", err)
	}
	if _, err := r.InspectSandbox(t.Context(), name); !errors.Is(err, ErrNotFound) {
		t.Errorf("the sandbox after RunInSandbox returned: %v, want ErrNotFound", err)
	}
}

// TestTimeoutEndsCommand: a command that runs when the sandbox's Timeout
// passes ends with an ExitError that says the timeout ended it (it said
// only "command killed by signal 15"), so does a main command, and the
// exited sandbox says it timed out.
func TestTimeoutEndsCommand(t *testing.T) {
	r, _ := busyboxStore(t)
	ctx := t.Context()
	idle, err := r.LaunchSandbox(ctx, SandboxOptions{Snapshot: "busybox", Network: NetworkNone, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Destroy(ctx)
	res, err := idle.Shell(ctx, "sleep 100")
	var ee *ExitError
	if !errors.As(err, &ee) || !ee.TimedOut || !strings.Contains(err.Error(), "timeout") || res == nil || res.ExitCode == 0 {
		t.Errorf("Shell when the sandbox's timeout passed = %v, %v; want an ExitError that says the timeout ended it", res, err)
	}
	// With a main command, the timeout ends it (and then the sandbox).
	sb, err := r.LaunchSandbox(ctx, SandboxOptions{Snapshot: "busybox", Network: NetworkNone, Timeout: time.Second, Command: []string{"sleep", "100"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	if err := sb.MainCommand().Wait(); !errors.As(err, &ee) || !ee.TimedOut {
		t.Errorf("the main command's Wait = %v, want an ExitError that says the timeout ended it", err)
	}
	if _, err := sb.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := r.InspectSandbox(ctx, sb.Name())
	if err != nil {
		t.Fatal(err)
	}
	if info.Status != "exited" || !info.TimedOut {
		t.Errorf("InspectSandbox once it ended = status %q, TimedOut %v; want exited, true", info.Status, info.TimedOut)
	}
	// A command that ran to its end before is no timeout's.
	sb2, err := r.LaunchSandbox(ctx, SandboxOptions{Snapshot: "busybox", Network: NetworkNone, Timeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer sb2.Destroy(ctx)
	if _, err := sb2.Shell(ctx, "exit 3"); !errors.As(err, &ee) || ee.TimedOut || strings.Contains(err.Error(), "timeout") {
		t.Errorf("a command that exited 3 in a sandbox with a timeout = %v, want a plain ExitError", err)
	}
}

// TestListSaysDetached: ListSandboxes (and InspectSandbox) say which
// sandboxes were detached; Detached was always false.
func TestListSaysDetached(t *testing.T) {
	r, _ := busyboxStore(t)
	ctx := t.Context()
	want := map[string]bool{}
	for _, detach := range []bool{false, true} {
		sb, err := r.LaunchSandbox(ctx, SandboxOptions{Snapshot: "busybox", Network: NetworkNone})
		if err != nil {
			t.Fatal(err)
		}
		defer sb.Destroy(ctx)
		if detach {
			if err := sb.Detach(); err != nil {
				t.Fatal(err)
			}
		}
		want[sb.Name()] = detach
	}
	list, err := r.ListSandboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(want) {
		t.Fatalf("ListSandboxes = %d sandboxes, want %d", len(list), len(want))
	}
	for _, in := range list {
		if in.Detached != want[in.Name] {
			t.Errorf("sandbox %s: Detached = %v, want %v", in.Name, in.Detached, want[in.Name])
		}
		got, err := r.InspectSandbox(ctx, in.Name)
		if err != nil || got.Detached != want[in.Name] {
			t.Errorf("InspectSandbox(%s) = %v, %v; want Detached %v", in.Name, got, err, want[in.Name])
		}
	}
}

// TestDestroyEndsCommand: a command that a Destroy (from another
// goroutine, or another handle) ends returns an ExitError that says the
// sandbox was destroyed; it said only "command killed by signal 15".
func TestDestroyEndsCommand(t *testing.T) {
	r, _ := busyboxStore(t)
	ctx := t.Context()
	sb, err := r.LaunchSandbox(ctx, SandboxOptions{Snapshot: "busybox", Network: NetworkNone})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	c := sb.Command(ctx, "sh", "-c", "echo started; exec sleep 100")
	out, pw := io.Pipe()
	defer pw.Close()
	c.Stdout = pw
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	other, err := r.AttachSandbox(ctx, sb.Name())
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	var ee *ExitError
	if err := c.Wait(); !errors.As(err, &ee) || !ee.Destroyed || ee.TimedOut || !strings.Contains(err.Error(), "destroyed") {
		t.Errorf("Wait of a command the sandbox's Destroy ended = %v, want an ExitError that says the sandbox was destroyed", err)
	}
	// A command that ends on its own says nothing of the kind.
	sb2, err := r.LaunchSandbox(ctx, SandboxOptions{Snapshot: "busybox", Network: NetworkNone})
	if err != nil {
		t.Fatal(err)
	}
	defer sb2.Destroy(ctx)
	if _, err := sb2.Shell(ctx, "kill -TERM $$"); !errors.As(err, &ee) || ee.Destroyed || ee.Signal != 15 {
		t.Errorf("a shell that killed itself = %v, want a plain ExitError of signal 15", err)
	}
}
