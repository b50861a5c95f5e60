// Package api holds the Go-API half of `make bench` (issue 8): the cost of
// a cold sandbox through RunInSandbox + Exec, and of Sandbox.Exec into a
// running one, as Go benchmarks. bench/run.sh runs them beside the CLI and
// the peers; outside it they skip. They need:
//
//	LIGHTBOX_BENCH_ROOT      a store that holds the snapshot
//	LIGHTBOX_BENCH_SNAPSHOT  a busybox snapshot in it
//	LIGHTBOX_BENCH_SAMPLES   optional: a file to which each timed
//	                         iteration appends its duration in ns, one a
//	                         line, so the runner can pool them with
//	                         hyperfine's samples (medians, not means)
package api

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/beamhop/lightbox"
)

func TestMain(m *testing.M) {
	lightbox.Init()
	os.Exit(m.Run())
}

func open(b *testing.B) (*lightbox.Runtime, string) {
	b.Helper()
	root, snap := os.Getenv("LIGHTBOX_BENCH_ROOT"), os.Getenv("LIGHTBOX_BENCH_SNAPSHOT")
	if root == "" || snap == "" {
		b.Skip("set LIGHTBOX_BENCH_ROOT and LIGHTBOX_BENCH_SNAPSHOT (make bench does)")
	}
	r, err := lightbox.Open(lightbox.Options{Root: root})
	if err != nil {
		b.Fatalf("open store %s: %v", root, err)
	}
	b.Cleanup(func() { r.Close() })
	return r, snap
}

// samples records per-iteration durations for the runner and reports
// the median as a metric.
type samples struct {
	d []time.Duration
}

func (s *samples) add(d time.Duration) { s.d = append(s.d, d) }

func (s *samples) report(b *testing.B) {
	b.Helper()
	if len(s.d) == 0 {
		return
	}
	sorted := slices.Clone(s.d)
	slices.Sort(sorted)
	b.ReportMetric(float64(sorted[len(sorted)/2].Nanoseconds())/1e6, "median-ms")
	// The first call with b.N == 1 is the testing package's probe: keep
	// only the timed runs the runner asked for.
	path := os.Getenv("LIGHTBOX_BENCH_SAMPLES")
	if path == "" || b.N == 1 {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		b.Fatalf("samples: %v", err)
	}
	for _, d := range s.d {
		fmt.Fprintln(f, d.Nanoseconds())
	}
	if err := f.Close(); err != nil {
		b.Fatalf("samples: %v", err)
	}
}

// BenchmarkRunInSandbox: a cold sandbox with no network running /bin/true
// through Exec, torn down each time.
func BenchmarkRunInSandbox(b *testing.B) { runInSandbox(b) }

// BenchmarkRunInSandboxLarge is BenchmarkRunInSandbox from a process that
// holds 1 GiB of touched heap, as an agent platform's server holding a
// model or a cache might: a launch must not cost it more than it costs a
// small program (a fork of the launcher would copy the page tables of all
// of it; bench/NOTES.md, 2026-12-01).
func BenchmarkRunInSandboxLarge(b *testing.B) {
	ballast := make([]byte, 1<<30)
	for i := 0; i < len(ballast); i += os.Getpagesize() {
		ballast[i] = 1
	}
	runInSandbox(b)
	runtime.KeepAlive(ballast)
}

func runInSandbox(b *testing.B) {
	r, snap := open(b)
	ctx := context.Background()
	opts := lightbox.SandboxOptions{Snapshot: snap, Network: lightbox.NetworkNone}
	var s samples
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		err := r.RunInSandbox(ctx, opts, func(sb *lightbox.Sandbox) error {
			_, err := sb.Exec(ctx, "/bin/true")
			return err
		})
		s.add(time.Since(start))
		if err != nil {
			b.Fatalf("RunInSandbox: %v", err)
		}
	}
	b.StopTimer()
	s.report(b)
}

// BenchmarkPoolTake: from a warm pool of one (PrewarmSandboxes, no
// network), LaunchSandbox takes the pooled sandbox and the first Exec of
// /bin/true returns; timed from the launch to the Exec's result. Between
// iterations (untimed) the sandbox is destroyed and the pool refilled.
func BenchmarkPoolTake(b *testing.B) {
	r, snap := open(b)
	ctx := context.Background()
	opts := lightbox.SandboxOptions{Snapshot: snap, Network: lightbox.NetworkNone}
	var s samples
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		if err := r.PrewarmSandboxes(ctx, opts, 1); err != nil {
			b.Fatalf("PrewarmSandboxes: %v", err)
		}
		b.StartTimer()
		sb := takeAndExec(b, r, opts, &s)
		b.StopTimer()
		sb.Destroy(ctx)
		b.StartTimer()
	}
	b.StopTimer()
	s.report(b)
}

// BenchmarkPoolTakeIdle is BenchmarkPoolTake from a pool that sat idle,
// as a platform's pool does between requests: b.N sandboxes are
// prewarmed at once, and the timing starts once each init has given back
// what its launch used (nsinit's launchOver, 2 s after it reported ready,
// and 1 s later the idle trim of a fresh copy, had it handed over: a
// pooled init does not until it has been used, nsinit.Config.Pooled),
// which shows nowhere: the one wait of a known length. Each iteration takes the oldest, runs /bin/true,
// and (untimed) destroys it and waits for the pool's refill, which goes
// behind the idle ones.
func BenchmarkPoolTakeIdle(b *testing.B) {
	r, snap := open(b)
	ctx := context.Background()
	opts := lightbox.SandboxOptions{Snapshot: snap, Network: lightbox.NetworkNone}
	if err := r.PrewarmSandboxes(ctx, opts, b.N); err != nil {
		b.Fatalf("PrewarmSandboxes: %v", err)
	}
	b.Cleanup(func() { _ = r.PrewarmSandboxes(context.Background(), opts, 0) }) // Close destroys them anyway
	// The inits' launchOver and trim: see above.
	time.Sleep(4 * time.Second)
	var s samples
	b.ResetTimer()
	for range b.N {
		sb := takeAndExec(b, r, opts, &s)
		b.StopTimer()
		sb.Destroy(ctx)
		if err := r.PrewarmSandboxes(ctx, opts, b.N); err != nil {
			b.Fatalf("PrewarmSandboxes: %v", err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	s.report(b)
}

// BenchmarkSandboxExec: /bin/true through Exec into one running sandbox.
func BenchmarkSandboxExec(b *testing.B) {
	r, snap := open(b)
	ctx := context.Background()
	sb, err := r.LaunchSandbox(ctx, lightbox.SandboxOptions{Snapshot: snap, Network: lightbox.NetworkNone})
	if err != nil {
		b.Fatalf("LaunchSandbox: %v", err)
	}
	b.Cleanup(func() { sb.Destroy(context.Background()) })
	var s samples
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		_, err := sb.Exec(ctx, "/bin/true")
		s.add(time.Since(start))
		if err != nil {
			b.Fatalf("Exec: %v", err)
		}
	}
	b.StopTimer()
	s.report(b)
}

// takeAndExec is the timed part of the pool benchmarks: LaunchSandbox
// (a take from the pool) and the first Exec of /bin/true, added to s.
func takeAndExec(b *testing.B, r *lightbox.Runtime, opts lightbox.SandboxOptions, s *samples) *lightbox.Sandbox {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	sb, err := r.LaunchSandbox(ctx, opts)
	if err == nil {
		_, err = sb.Exec(ctx, "/bin/true")
	}
	s.add(time.Since(start))
	if err != nil {
		b.Fatalf("take + Exec: %v", err)
	}
	return sb
}
