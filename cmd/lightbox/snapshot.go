package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/beamhop/lightbox"
	"github.com/urfave/cli/v2"
)

func snapshotCommand() *cli.Command {
	return &cli.Command{
		Name:  "snapshot",
		Usage: "manage snapshots (immutable root filesystems)",
		Subcommands: []*cli.Command{
			buildCommand(),
			{
				Name:      "import",
				Usage:     "import an OCI layout dir[:tag], oci-archive tar[:tag], docker save tar, rootfs dir or rootfs tar",
				ArgsUsage: "NAME SOURCE",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "format", Usage: "force the source format: oci, oci-archive, docker-archive, rootfs-dir, rootfs-tar"},
					&cli.BoolFlag{Name: "replace", Usage: "replace an existing snapshot of that name"},
				},
				Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
					if err := exactArgs(c, 2, "NAME SOURCE"); err != nil {
						return err
					}
					s, err := r.ImportSnapshot(c.Context, c.Args().Get(0), c.Args().Get(1),
						lightbox.ImportOptions{Format: c.String("format"), Replace: c.Bool("replace")})
					if err != nil {
						return replaceHint(err)
					}
					fmt.Println(s.Name)
					return nil
				}),
			},
			{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list snapshots",
				Flags:   []cli.Flag{formatFlag()},
				Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
					asJSON, err := wantJSON(c)
					if err != nil {
						return err
					}
					snaps, err := r.ListSnapshots(c.Context)
					if err != nil {
						return err
					}
					if asJSON {
						if snaps == nil {
							snaps = []lightbox.Snapshot{}
						}
						return printJSON(os.Stdout, snaps)
					}
					tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tDIGEST\tLAYERS\tSIZE\tCREATED")
					for _, s := range snaps {
						fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", safe(s.Name), safe(shortDigest(s.Digest)), s.Layers, humanBytes(s.Size), ago(s.CreatedAt))
					}
					return tw.Flush()
				}),
			},
			{
				Name:      "inspect",
				Usage:     "show a snapshot's layers and image config",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{formatFlag()},
				Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
					if err := exactArgs(c, 1, "NAME"); err != nil {
						return err
					}
					if _, err := wantJSON(c); err != nil {
						return err
					}
					s, err := r.InspectSnapshot(c.Context, c.Args().First())
					if err != nil {
						return err
					}
					return printJSON(os.Stdout, s)
				}),
			},
			{
				Name:      "export",
				Usage:     "write a snapshot as an OCI image layout dir or oci-archive tar",
				ArgsUsage: "NAME DST",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "format", Usage: "oci (a layout directory) or oci-archive (a tar file) (default: oci-archive when DST ends in .tar, else oci)"},
					&cli.StringFlag{Name: "tag", Usage: "the image's tag in DST (default: the snapshot's name)"},
				},
				Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
					if err := exactArgs(c, 2, "NAME DST"); err != nil {
						return err
					}
					dst, format := c.Args().Get(1), c.String("format")
					if format == "" && strings.HasSuffix(dst, ".tar") {
						format = "oci-archive" // a name that says what the user expects there
					}
					return r.ExportSnapshot(c.Context, c.Args().Get(0), dst,
						lightbox.ExportOptions{Format: format, Tag: c.String("tag")})
				}),
			},
			{
				Name:      "rm",
				Aliases:   []string{"remove"},
				Usage:     "remove snapshots and free the layers nothing else uses",
				ArgsUsage: "NAME...",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "ignore snapshots that do not exist"}, quietFlag()},
				Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
					return eachName(c, func(name string) error { return r.RemoveSnapshot(c.Context, name) })
				}),
			},
		},
	}
}

func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	}
}

// exactArgs is needArgs for a command that takes exactly n arguments: one
// more is an error, not ignored. urfave/cli stops reading flags at the
// first argument, so "snapshot export NAME DST --format oci-archive" (as
// docker and podman take it) would quietly do without the flag; the
// error says where flags go.
func exactArgs(c *cli.Context, n int, usage string) error {
	if err := needArgs(c, n, usage); err != nil {
		return err
	}
	if c.NArg() == n {
		return nil
	}
	extra := c.Args().Get(n)
	if strings.HasPrefix(extra, "-") && extra != "-" {
		return fmt.Errorf("%s after %s: flags go before the arguments: %s [OPTIONS] %s", extra, usage, c.Command.HelpName, usage)
	}
	return fmt.Errorf("unexpected argument %q: usage: %s [OPTIONS] %s", extra, c.Command.HelpName, usage)
}
