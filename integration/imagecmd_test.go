//go:build linux

package integration

import (
	"testing"

	"github.com/beamhop/lightbox"
)

// An API launch runs the snapshot's own command only when asked to
// (UseImageCommand); by default a sandbox with no Command idles.
func TestUseImageCommand(t *testing.T) {
	_, r := newStore(t)
	ctx := t.Context()
	if _, err := r.BuildSnapshot(ctx, lightbox.BuildOptions{
		Name: "exits7", Context: t.TempDir(), Network: lightbox.NetworkNone,
		Recipe: "FROM busybox\nENTRYPOINT [\"sh\", \"-c\"]\nCMD [\"exit 7\"]\n",
	}); err != nil {
		t.Fatal(err)
	}
	sb, err := r.LaunchSandbox(ctx, lightbox.SandboxOptions{Snapshot: "exits7", Network: lightbox.NetworkNone, UseImageCommand: true})
	if err != nil {
		t.Fatal(err)
	}
	code, err := sb.Wait(ctx)
	if derr := sb.Destroy(ctx); derr != nil {
		t.Error(derr)
	}
	if err != nil || code != 7 {
		t.Fatalf("with UseImageCommand: Wait = %d, %v; want the image's command's status 7", code, err)
	}
	err = r.RunInSandbox(ctx, lightbox.SandboxOptions{Snapshot: "exits7", Network: lightbox.NetworkNone}, func(sb *lightbox.Sandbox) error {
		res, err := sb.Shell(ctx, "echo idle")
		if err == nil && string(res.Stdout) != "idle\n" {
			t.Errorf("without UseImageCommand: shell says %q, want idle", res.Stdout)
		}
		return err
	})
	if err != nil {
		t.Fatalf("without UseImageCommand the sandbox idles, serving exec: %v", err)
	}
}
