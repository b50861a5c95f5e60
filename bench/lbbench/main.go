// Command lbbench is the instrument behind `make bench` (issue 8): it sets
// up one busybox root filesystem with a matching OCI bundle, podman rootfs
// and lightbox snapshot, then measures lightbox beside runc, crun,
// bubblewrap, podman and the floor
//
//	unshare --user --map-root-user --mount --pid --fork --uts --ipc --net chroot ROOTFS /bin/true
//
// in one run, as root and as an unprivileged user: cold /bin/true, exec
// into a running sandbox, 50 sandboxes 8 at a time, and the host-side
// private memory of an idle detached sandbox. Timings come from hyperfine
// (-N, warm-up, many runs) in interleaved rounds; the table shows medians,
// the interquartile range and each median as a ratio to the floor measured
// in the same group. It writes the figures to -out as JSON.
//
// It runs as root, in a private mount namespace without the hybrid
// cgroup2 mount (crun refuses hybrid cgroups; bench/run.sh arranges it),
// and needs the peers installed (bench/run.sh installs them).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type config struct {
	lightbox string // bin/lightbox
	apiTest  string // compiled bench/api test binary ("" = skip the Go API rows)
	user     string // unprivileged user for the rootless rows
	out      string // results.json
	keep     bool   // keep the work dir

	rounds, runs, warmup int // cold and exec groups
	batchRounds          int // parallel groups
	batchRuns            int
	bigMiB, bigLayers    int     // the big snapshot of section 4 (0 MiB = skip)
	budgetScale          float64 // scales each group's time budget
}

func main() {
	var c config
	flag.StringVar(&c.lightbox, "lightbox", "bin/lightbox", "lightbox binary")
	flag.StringVar(&c.apiTest, "api", "", "test binary of bench/api (Go API benchmarks); empty skips them")
	flag.StringVar(&c.user, "user", "lbtest", "unprivileged user for the rootless rows (must exist, with subuid/subgid ranges)")
	flag.StringVar(&c.out, "out", "bench/results.json", "where to write the results")
	flag.BoolVar(&c.keep, "keep", false, "keep the work dir")
	flag.IntVar(&c.rounds, "rounds", 5, "interleaved rounds per group")
	flag.IntVar(&c.runs, "runs", 10, "runs of each command per round")
	flag.IntVar(&c.warmup, "warmup", 2, "warm-up runs of each command per round")
	flag.IntVar(&c.batchRounds, "batch-rounds", 2, "rounds of the 50-sandbox batches")
	flag.IntVar(&c.batchRuns, "batch-runs", 2, "runs of each batch per round")
	flag.IntVar(&c.bigMiB, "big-mib", 1024, "size of the many-layer snapshot launched beside the busybox one (0 skips it)")
	flag.IntVar(&c.bigLayers, "big-layers", 50, "layers of the many-layer snapshot")
	flag.Float64Var(&c.budgetScale, "budget", 1, "scale of the per-group time budgets (rounds stop early past them on a busy machine)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("bench: ")

	if os.Geteuid() != 0 {
		log.Fatal("run as root (make bench): the rootless rows run as -user through runuser")
	}
	for _, p := range []*string{&c.lightbox, &c.apiTest, &c.out} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				log.Fatal(err)
			}
			*p = abs
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	b, err := newBench(ctx, c)
	if err != nil {
		log.Fatal(err)
	}
	err = b.run(ctx)
	b.cleanup()
	if err != nil {
		log.Fatal(err)
	}
	b.res.Seconds = time.Since(start).Seconds()
	table := b.table()
	fmt.Print(table)
	if err := b.writeJSON(c.out); err != nil {
		log.Fatal(err)
	}
	md := strings.TrimSuffix(c.out, filepath.Ext(c.out)) + ".md"
	if err := os.WriteFile(md, []byte(strings.TrimPrefix(table, "\n")), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("\nwrote %s and %s (%.0f s in all)\n", c.out, md, time.Since(start).Seconds())
}
