package main

import (
	"errors"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/beamhop/lightbox"
	units "github.com/docker/go-units"
	"github.com/urfave/cli/v2"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "describe sandboxes as JSON: status, how each limit holds, usage, whether the OOM killer struck",
		ArgsUsage: "NAME [NAME...]",
		Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
			if err := needArgs(c, 1, "NAME [NAME...]"); err != nil {
				return err
			}
			// As docker inspect: the sandboxes found are printed, and the
			// names that were not are errors (status 125).
			out := []*lightbox.SandboxInfo{}
			var errs []error
			for _, n := range c.Args().Slice() {
				si, err := r.InspectSandbox(c.Context, n)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				out = append(out, si)
			}
			if err := printJSON(os.Stdout, out); err != nil {
				return err
			}
			return errors.Join(errs...)
		}),
	}
}

// statsCommand prints what each running sandbox's cgroup counts, like
// docker stats --no-stream: CPU over a short sample, memory, pids.
func statsCommand() *cli.Command {
	return &cli.Command{
		Name:      "stats",
		Usage:     "print the CPU, memory and pids use of running sandboxes (those with a cgroup)",
		ArgsUsage: "[NAME...]",
		Flags: []cli.Flag{formatFlag(),
			&cli.BoolFlag{Name: "no-stream", Usage: "accepted for docker compatibility; stats prints once"}},
		Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
			asJSON, err := wantJSON(c)
			if err != nil {
				return err
			}
			sample := func() (map[string]lightbox.SandboxInfo, []string, error) {
				list, err := r.ListSandboxes(c.Context)
				if err != nil {
					return nil, nil, err
				}
				by := map[string]lightbox.SandboxInfo{}
				var order []string
				for _, s := range list {
					by[s.Name] = s
					order = append(order, s.Name)
				}
				if c.NArg() > 0 {
					order = c.Args().Slice()
					for _, n := range order {
						if _, ok := by[n]; !ok {
							return nil, nil, fmt.Errorf("sandbox %s: %w", n, lightbox.ErrNotFound)
						}
					}
				}
				return by, order, nil
			}
			first, _, err := sample()
			if err != nil {
				return err
			}
			t0 := time.Now()
			time.Sleep(500 * time.Millisecond)
			second, order, err := sample()
			if err != nil {
				return err
			}
			wall := time.Since(t0)
			type row struct {
				Name    string          `json:"name"`
				Status  string          `json:"status"`
				CPUPerc float64         `json:"cpuPercent"`
				Usage   *lightbox.Usage `json:"usage,omitempty"`
				Note    string          `json:"note,omitempty"`
			}
			var rows []row
			for _, n := range order {
				s := second[n]
				rw := row{Name: n, Status: s.Status, Usage: s.Usage}
				if s.Usage == nil {
					rw.Note = "no cgroup"
					if s.Status != "running" {
						rw.Note = s.Status
					} else if l := s.Limits["memory"]; l != "" {
						rw.Note = "no cgroup (memory: " + l + ")"
					}
				} else if p, ok := first[n]; ok && p.Usage != nil && s.Usage.CPUNanos >= p.Usage.CPUNanos {
					rw.CPUPerc = 100 * float64(s.Usage.CPUNanos-p.Usage.CPUNanos) / float64(wall.Nanoseconds())
				}
				rows = append(rows, rw)
			}
			if asJSON {
				if rows == nil {
					rows = []row{}
				}
				return printJSON(os.Stdout, rows)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tCPU %\tMEM USAGE / LIMIT\tMEM %\tPIDS")
			for _, rw := range rows {
				if rw.Usage == nil {
					fmt.Fprintf(tw, "%s\t--\t-- (%s)\t--\t--\n", rw.Name, rw.Note)
					continue
				}
				u := rw.Usage
				limit, perc := "no limit", "--"
				if u.MemoryLimitBytes > 0 {
					limit = units.BytesSize(float64(u.MemoryLimitBytes))
					perc = fmt.Sprintf("%.2f%%", 100*float64(u.MemoryBytes)/float64(u.MemoryLimitBytes))
				}
				pids := fmt.Sprint(u.Pids)
				if u.PidsLimit > 0 {
					pids += " / " + fmt.Sprint(u.PidsLimit)
				}
				fmt.Fprintf(tw, "%s\t%.2f%%\t%s / %s\t%s\t%s\n", rw.Name, rw.CPUPerc, units.BytesSize(float64(u.MemoryBytes)), limit, perc, pids)
			}
			return tw.Flush()
		}),
	}
}
