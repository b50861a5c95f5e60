package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/beamhop/lightbox"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

func buildCommand() *cli.Command {
	return &cli.Command{
		Name:      "build",
		Usage:     "build a snapshot from a Dockerfile (FROM a snapshot or scratch); exit status is a failed RUN's",
		ArgsUsage: "CONTEXT",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "tag", Aliases: []string{"t"}, Usage: "the snapshot to make", Required: true},
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "the recipe (default: CONTEXT/Dockerfile; - reads stdin)"},
			&cli.StringSliceFlag{Name: "build-arg", Usage: "K=V build argument (repeatable)"},
			&cli.BoolFlag{Name: "no-cache", Usage: "run every step again"},
			&cli.StringFlag{Name: "target", Usage: "the stage (FROM … AS STAGE) to make the snapshot of; later stages are not built"},
			&cli.StringFlag{Name: "network", Usage: "each RUN's network: private, none or host", Value: string(lightbox.NetworkPrivate)},
			&cli.StringSliceFlag{Name: "volume", Aliases: []string{"v"}, Usage: "SRC:DST[:ro|:O] mounted into each RUN, as run -v (repeatable)"},
			caCertsFlag(),
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only the snapshot's name (and a failed step's output)"},
			&cli.BoolFlag{Name: "replace", Usage: "replace an existing snapshot of that name"},
		},
		Action: func(c *cli.Context) error {
			if err := exactArgs(c, 1, "CONTEXT"); err != nil {
				return err
			}
			mounts, err := parseMounts(c.StringSlice("volume"))
			if err != nil {
				return err
			}
			args := map[string]string{}
			for _, kv := range c.StringSlice("build-arg") {
				k, v, ok := strings.Cut(kv, "=")
				if k == "" {
					return fmt.Errorf("--build-arg %q: no name (want K=V, or K for this K's value here)", kv)
				}
				if !ok {
					// As docker: a bare name takes the caller's value.
					if v, ok = os.LookupEnv(k); !ok {
						continue
					}
				}
				args[k] = v
			}
			// As docker does: the caller's proxy settings reach every RUN
			// as predefined arguments (in no cache key and no image).
			for _, k := range lightbox.PredefinedBuildArgs() {
				if _, given := args[k]; given {
					continue
				}
				if v, ok := os.LookupEnv(k); ok {
					args[k] = v
				}
			}
			opts := lightbox.BuildOptions{
				Name: c.String("tag"), RecipeFile: c.String("file"), Context: c.Args().First(),
				Args: args, NoCache: c.Bool("no-cache"), Target: c.String("target"), Network: lightbox.Network(c.String("network")),
				Mounts: mounts, Replace: c.Bool("replace"), CACerts: c.String("ca-certs"),
			}
			if opts.RecipeFile == "-" {
				text, err := io.ReadAll(os.Stdin)
				if err != nil {
					return err
				}
				opts.RecipeFile, opts.Recipe = "", string(text)
			}
			quiet := c.Bool("quiet")
			var out bytes.Buffer // a quiet build's RUN output, shown if it fails
			var transfers func(lightbox.TransferProgress)
			if quiet {
				opts.Stdout, opts.Stderr = &out, &out
			} else if term.IsTerminal(int(os.Stderr.Fd())) {
				bar := newBuildBar(os.Stderr)
				opts.Stdout, opts.Stderr = bar, bar
				opts.Progress = bar.report
				transfers = bar.transfer // a layer unpacked in a step: on the step bar, not a bar of its own
			} else {
				opts.Stdout, opts.Stderr = os.Stderr, os.Stderr
				opts.Progress = printProgress
			}
			r, err := openWith(c, transfers)
			if err != nil {
				return err
			}
			defer func() { _ = r.Close() }() // releases read-only handles (the re-executable binary); the build's result stands
			sn, err := r.BuildSnapshot(c.Context, opts)
			if err != nil {
				err = replaceHint(err)
				if quiet {
					_, _ = os.Stderr.Write(out.Bytes()) // best effort: the build's error follows on stderr
				}
				var ee *lightbox.ExitError
				if errors.As(err, &ee) {
					fmt.Fprintf(os.Stderr, "lightbox: %v\n", err)
					return exitCode(ee.ExitCode)
				}
				return err
			}
			fmt.Println(sn.Name)
			return nil
		},
	}
}

// printProgress writes a step starting and then how it ended, on stderr
// (the steps' own output goes there too, between the two lines).
func printProgress(p lightbox.BuildProgress) {
	if !p.Done {
		fmt.Fprintf(os.Stderr, "[%d/%d] %s\n", p.Step, p.Total, p.Instruction)
		return
	}
	fmt.Fprintln(os.Stderr, stepLine(p))
}

// stepLine is how a finished step is reported.
func stepLine(p lightbox.BuildProgress) string {
	switch {
	case p.Cached:
		return fmt.Sprintf("[%d/%d] cached", p.Step, p.Total)
	case p.LayerSize > 0:
		return fmt.Sprintf("[%d/%d] done in %.1fs, layer %s", p.Step, p.Total, p.Duration.Seconds(), humanBytes(p.LayerSize))
	default:
		return fmt.Sprintf("[%d/%d] done in %.1fs", p.Step, p.Total, p.Duration.Seconds())
	}
}
