package main

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/beamhop/lightbox"
	"github.com/urfave/cli/v2"
)

func volumeCommand() *cli.Command {
	return &cli.Command{
		Name:  "volume",
		Usage: "manage named volumes",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a volume (an existing one is left as it is)",
				ArgsUsage: "NAME",
				Description: "With --owner, root keeps a volume with a quota for a rootless user (whose store cannot enforce one):\n" +
					"the quota'd data lives in root's store (--root), owned by root apart from the volume's own root directory,\n" +
					"and the user's store (--owner-root) gets a reference that the user's lightbox mounts. Run again after a\n" +
					"restart, it mounts the volume's image again. Remove it with volume rm --owner; list with volume ls --owner.",
				Flags: []cli.Flag{
					&cli.Int64Flag{Name: "quota-mib", Usage: "cap the volume's size in MiB (0 = none)"},
					&cli.StringSliceFlag{Name: "label", Usage: "K=V label (repeatable)"},
					&cli.StringFlag{Name: "owner", Usage: "as root: keep the volume for this rootless user (name or uid), who will own it"},
					&cli.StringFlag{Name: "owner-root", Usage: "with --owner: the user's store (their --root; default ~USER/.local/share/lightbox)"},
				},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 1, "NAME"); err != nil {
						return err
					}
					// Before the store is opened (and maybe made).
					labels, err := parseLabels(c.StringSlice("label"))
					if err != nil {
						return err
					}
					return withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
						want := lightbox.VolumeOptions{QuotaMiB: c.Int64("quota-mib"), Labels: labels, Owner: c.String("owner"), OwnerRoot: c.String("owner-root")}
						v, err := r.EnsureVolume(c.Context, c.Args().First(), want)
						if err != nil {
							return err
						}
						if diff := volumeDiff(v, want); diff != "" {
							fmt.Fprintf(os.Stderr, "lightbox: volume %s already exists with %s; it was left as it is (remove and recreate it to change that)\n", v.Name, diff)
						}
						fmt.Println(v.Name)
						return nil
					})(c)
				},
			},
			{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list volumes",
				Flags: []cli.Flag{
					formatFlag(),
					&cli.StringSliceFlag{Name: "filter", Usage: "label=K[=V] or dangling=true (repeatable)"},
					&cli.BoolFlag{Name: "size", Usage: "compute usage where the quota backend does not know it"},
					&cli.StringFlag{Name: "owner", Usage: "as root: list the volumes root keeps for this user (\"all\": for every user)"},
				},
				Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
					asJSON, err := wantJSON(c)
					if err != nil {
						return err
					}
					f, err := parseVolumeFilter(c.StringSlice("filter"), false)
					if err != nil {
						return err
					}
					var vols []lightbox.Volume
					if owner := c.String("owner"); owner != "" {
						if owner == "all" {
							owner = ""
						}
						vols, err = r.ListVolumesOf(c.Context, owner)
					} else {
						vols, err = r.ListVolumesWith(c.Context, lightbox.ListVolumesOptions{Size: c.Bool("size")})
					}
					if err != nil {
						return err
					}
					var out []lightbox.Volume
					for _, v := range vols {
						if f.match(v) {
							out = append(out, v)
						}
					}
					if asJSON {
						if out == nil {
							out = []lightbox.Volume{}
						}
						return printJSON(os.Stdout, out)
					}
					tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tQUOTA\tUSED\tBACKEND\tLABELS\tCREATED\tLAST USED\tUSED BY")
					for _, v := range out {
						quota := "-"
						if v.QuotaMiB > 0 {
							quota = fmt.Sprintf("%d MiB", v.QuotaMiB)
						}
						used := "-"
						if v.UsageKnown {
							used = humanBytes(v.UsedBytes)
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", safe(v.Name), quota, used, safe(v.Backend),
							joinLabels(v.Labels), ago(v.CreatedAt), ago(v.LastUsedAt), safeJoin(v.UsedBy, ","))
					}
					return tw.Flush()
				}),
			},
			{
				Name:      "inspect",
				Usage:     "show a volume",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{formatFlag(), &cli.BoolFlag{Name: "size", Usage: "compute usage where the backend does not know it"}},
				Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
					if err := needArgs(c, 1, "NAME"); err != nil {
						return err
					}
					if _, err := wantJSON(c); err != nil {
						return err
					}
					v, err := r.InspectVolume(c.Context, c.Args().First(), lightbox.ListVolumesOptions{Size: c.Bool("size")})
					if err != nil {
						return err
					}
					return printJSON(os.Stdout, v)
				}),
			},
			{
				Name:      "rm",
				Aliases:   []string{"remove"},
				Usage:     "remove volumes and their contents (refused while a sandbox uses one)",
				ArgsUsage: "NAME...",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "ignore volumes that do not exist"}, quietFlag(),
					&cli.StringFlag{Name: "owner", Usage: "as root: remove volumes root keeps for this user (see volume create --owner)"},
				},
				Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
					if owner := c.String("owner"); owner != "" {
						return eachName(c, func(name string) error { return r.RemoveVolumeOf(c.Context, owner, name) })
					}
					return eachName(c, func(name string) error { return r.RemoveVolume(c.Context, name) })
				}),
			},
			{
				Name:  "prune",
				Usage: "remove unused volumes that match the filters",
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "filter", Usage: "label=K[=V] or until=DURATION|TIMESTAMP (repeatable)"},
					&cli.BoolFlag{Name: "dry-run", Usage: "only print what would be removed"},
				},
				Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
					f, err := parseVolumeFilter(c.StringSlice("filter"), true)
					if err != nil {
						return err
					}
					removed, err := r.PruneVolumes(c.Context, lightbox.PruneVolumesOptions{
						Labels: f.labels, Until: f.until, DryRun: c.Bool("dry-run"),
					})
					for _, n := range removed {
						fmt.Println(n)
					}
					return err
				}),
			},
		},
	}
}

func parseLabels(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		if k == "" {
			return nil, fmt.Errorf("--label %q: want K=V with a non-empty key", kv)
		}
		m[k] = v
	}
	if err := lightbox.CheckVolumeLabels(m); err != nil {
		return nil, fmt.Errorf("--label: %w", err)
	}
	return m, nil
}

// joinLabels shows labels as K=V,K=V sorted by key, each key and value
// escaped by safe.
func joinLabels(m map[string]string) string {
	var s []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		s = append(s, safe(k)+"="+safe(m[k]))
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

// volumeDiff says how an existing volume differs from what was asked.
func volumeDiff(v *lightbox.Volume, want lightbox.VolumeOptions) string {
	var d []string
	if want.QuotaMiB != v.QuotaMiB {
		d = append(d, fmt.Sprintf("quota %d MiB (asked %d)", v.QuotaMiB, want.QuotaMiB))
	}
	same := len(want.Labels) == len(v.Labels)
	for k, val := range want.Labels {
		if got, ok := v.Labels[k]; !ok || got != val {
			same = false
		}
	}
	if !same {
		d = append(d, fmt.Sprintf("labels %s (asked %s)", joinLabels(v.Labels), joinLabels(want.Labels)))
	}
	return strings.Join(d, " and ")
}

type volumeFilter struct {
	labels   []string // K or K=V
	dangling *bool
	until    time.Time
}

func parseVolumeFilter(fs []string, prune bool) (volumeFilter, error) {
	var f volumeFilter
	for _, s := range fs {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return f, fmt.Errorf("--filter %q: want label=K[=V]", s)
		}
		switch {
		case k == "label":
			if err := lightbox.CheckLabelFilter(v); err != nil {
				return f, fmt.Errorf("--filter %s: %w", safe(s), err)
			}
			f.labels = append(f.labels, v)
		case k == "dangling" && !prune:
			b := v == "true" || v == "1"
			if !b && v != "false" && v != "0" {
				return f, fmt.Errorf("--filter %q: dangling takes true or false", s)
			}
			f.dangling = &b
		case k == "until" && prune:
			if d, err := time.ParseDuration(v); err == nil {
				f.until = time.Now().Add(-d)
			} else if t, err := time.Parse(time.RFC3339, v); err == nil {
				f.until = t
			} else {
				return f, fmt.Errorf("--filter %q: until takes a duration (24h) or an RFC 3339 time", s)
			}
		default:
			return f, fmt.Errorf("--filter %q: unknown filter", s)
		}
	}
	return f, nil
}

func (f volumeFilter) match(v lightbox.Volume) bool {
	if !v.MatchesLabels(f.labels) {
		return false
	}
	if f.dangling != nil && *f.dangling != (len(v.UsedBy) == 0) {
		return false
	}
	return true
}
