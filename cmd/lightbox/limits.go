package main

import (
	"fmt"
	"math"
	"strings"

	"github.com/beamhop/lightbox"
	units "github.com/docker/go-units"
	"github.com/urfave/cli/v2"
)

// limitFlags are run's resource flags, with docker's names and units.
func limitFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "memory", Aliases: []string{"m"}, Usage: "memory limit, /dev/shm included (512m, 1g; a bare number is bytes); default none"},
		&cli.StringFlag{Name: "memory-swap", Usage: "memory plus swap limit (>= --memory; -1 = unlimited swap); default = --memory (no swap)"},
		&cli.Float64Flag{Name: "cpus", Usage: "CPU limit in cores (0.5, 1.5); default none"},
		&cli.Int64Flag{Name: "pids-limit", Usage: fmt.Sprintf("most processes and threads in the sandbox (-1 = no limit); default %d", lightbox.DefaultPidsLimit)},
		&cli.StringFlag{Name: "shm-size", Usage: fmt.Sprintf("size of /dev/shm (64m); default %d MiB", lightbox.DefaultShmMiB)},
	}
}

// parseResources reads the resource flags; the library checks the values.
func parseResources(c *cli.Context) (lightbox.Resources, error) {
	var r lightbox.Resources
	var err error
	if c.IsSet("memory") {
		if r.MemoryMiB, err = parseMiB("--memory", c.String("memory"), false); err != nil {
			return r, err
		}
	}
	if c.IsSet("memory-swap") {
		if r.MemorySwapMiB, err = parseMiB("--memory-swap", c.String("memory-swap"), true); err != nil {
			return r, err
		}
	}
	if c.IsSet("cpus") {
		r.CPUs = c.Float64("cpus")
		if r.CPUs == 0 {
			return r, fmt.Errorf("--cpus 0: want a positive number of CPUs (leave the flag out for no limit)")
		}
		if r.CPUs < 0 {
			return r, fmt.Errorf("--cpus %g: negative", r.CPUs)
		}
	}
	if c.IsSet("pids-limit") {
		r.PidsLimit = c.Int64("pids-limit")
		if r.PidsLimit == 0 {
			return r, fmt.Errorf("--pids-limit 0: want a positive number, or -1 for no limit")
		}
	}
	if c.IsSet("shm-size") {
		if r.ShmMiB, err = parseMiB("--shm-size", c.String("shm-size"), false); err != nil {
			return r, err
		}
	}
	return r, nil
}

// parseMiB reads a docker size ("512m", "1g", "1048576") as MiB, rounded
// up; minusOne allows -1 (unlimited).
func parseMiB(flag, s string, minusOne bool) (int64, error) {
	if minusOne && strings.TrimSpace(s) == "-1" {
		return -1, nil
	}
	b, err := units.RAMInBytes(s)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want a size such as 512m or 1g (units b, k, m, g, t): %w", flag, s, err)
	}
	// RAMInBytes refuses a sign, so a negative result (or one that would
	// overflow as it is rounded up to MiB) is a size past int64's range.
	if b < 0 || b > math.MaxInt64-(1<<20-1) {
		return 0, fmt.Errorf("%s %q: too large", flag, s)
	}
	if b == 0 {
		return 0, fmt.Errorf("%s %q: want a positive size (leave the flag out for the default)", flag, s)
	}
	return (b + 1<<20 - 1) >> 20, nil
}
