package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/beamhop/lightbox"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run a command in a new sandbox (exit status is the command's: 125 lightbox failed, 126 not executable, 127 not found)",
		ArgsUsage: "SNAPSHOT [CMD [ARG...]]",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "name", Usage: "sandbox name (and hostname); default generated"},
			&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "run in the background and print the sandbox's name"},
			&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "allocate a terminal inside the sandbox"},
			&cli.BoolFlag{Name: "interactive", Aliases: []string{"i"}, Usage: "accepted for docker compatibility; stdin is always passed through"},
			&cli.StringFlag{Name: "workdir", Aliases: []string{"w"}, Usage: "working directory inside the sandbox"},
			&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "user[:group] inside the sandbox"},
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "K=V environment variable (repeatable)"},
			&cli.StringSliceFlag{Name: "volume", Aliases: []string{"v"}, Usage: "SRC:DST[:ro]; SRC is a host path when it is . or starts with /, ./, ../ or ~, else a volume name (repeatable)"},
			&cli.StringFlag{Name: "network", Usage: "private, none or host (private:pasta or private:slirp4netns picks the stack)", Value: string(lightbox.NetworkPrivate)},
			&cli.StringSliceFlag{Name: "publish", Aliases: []string{"p"}, Usage: "[HOSTIP:]HOSTPORT:PORT[/tcp|udp] (private network only; repeatable)"},
			&cli.Int64Flag{Name: "disk-mib", Usage: "cap the sandbox's writable layer in MiB"},
			&cli.DurationFlag{Name: "timeout", Usage: "destroy the sandbox after this long"},
			&cli.BoolFlag{Name: "allow-userns", Usage: "let processes inside create user namespaces (e.g. a rootless container engine); refused by default"},
		}, limitFlags()...),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, "SNAPSHOT [CMD [ARG...]]"); err != nil {
				return err
			}
			r, err := open(c)
			if err != nil {
				return err
			}
			defer r.Close()
			mounts, err := parseMounts(c.StringSlice("volume"))
			if err != nil {
				return err
			}
			res, err := parseResources(c)
			if err != nil {
				return err
			}
			opts := lightbox.SandboxOptions{
				Snapshot:  c.Args().First(),
				Name:      c.String("name"),
				Mounts:    mounts,
				Workdir:   c.String("workdir"),
				User:      c.String("user"),
				Env:       c.StringSlice("env"),
				Network:   lightbox.Network(c.String("network")),
				Ports:     c.StringSlice("publish"),
				DiskMiB:   c.Int64("disk-mib"),
				Timeout:   c.Duration("timeout"),
				Resources: res,

				AllowUserNamespaces: c.Bool("allow-userns"),
			}
			argv := c.Args().Tail()
			if c.Bool("detach") {
				// DESIGN.md: CMD defaults to the snapshot's Entrypoint/Cmd;
				// with neither the sandbox idles, serving exec.
				if len(argv) == 0 {
					if argv, err = defaultCommand(c, r, opts.Snapshot); err != nil {
						return err
					}
				}
				opts.Command = argv
				sb, err := r.LaunchSandbox(c.Context, opts)
				if err != nil {
					return err
				}
				// A main command that already ended leaves an exited
				// sandbox with its logs and status: nothing to detach.
				if err := sb.Detach(); err != nil && !errors.Is(err, lightbox.ErrNotRunning) {
					sb.Destroy(context.WithoutCancel(c.Context))
					return err
				}
				fmt.Println(sb.Name())
				return nil
			}
			if len(argv) == 0 {
				if argv, err = defaultCommand(c, r, opts.Snapshot); err != nil {
					return err
				}
				if len(argv) == 0 {
					return fmt.Errorf("snapshot %s has no Entrypoint or Cmd: give a command", opts.Snapshot)
				}
			}
			code := exitFailed
			// The context of the sandbox outlives SIGINT/SIGTERM: those go
			// to the command, and the sandbox is torn down after it exits.
			ctx := context.WithoutCancel(c.Context)
			err = r.RunInSandbox(ctx, opts, func(sb *lightbox.Sandbox) error {
				cmd := sb.Command(ctx, argv[0], argv[1:]...)
				code, err = runAttached(cmd, c.Bool("tty"))
				return err
			})
			if err != nil {
				return err
			}
			return exitCode(code)
		},
	}
}

// defaultCommand is the snapshot's Entrypoint followed by its Cmd.
func defaultCommand(c *cli.Context, r *lightbox.Runtime, snapshot string) ([]string, error) {
	snap, err := r.InspectSnapshot(c.Context, snapshot)
	if err != nil {
		return nil, err
	}
	return append(append([]string{}, snap.Config.Entrypoint...), snap.Config.Cmd...), nil
}

// runAttached runs cmd with this process's stdio, forwarding SIGINT,
// SIGTERM and SIGHUP to it (and, with a tty, window size changes), and
// returns its exit status.
func runAttached(cmd *lightbox.Cmd, tty bool) (int, error) {
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if tty {
		if !term.IsTerminal(int(os.Stdin.Fd())) {
			return exitFailed, errors.New("-t: standard input is not a terminal")
		}
		cmd.Tty = true
		if w, h, err := term.GetSize(int(os.Stdin.Fd())); err == nil {
			cmd.TtySize = [2]uint16{uint16(h), uint16(w)}
		}
		old, err := term.MakeRaw(int(os.Stdin.Fd()))
		if err != nil {
			return exitFailed, fmt.Errorf("-t: %w", err)
		}
		defer term.Restore(int(os.Stdin.Fd()), old)
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGWINCH)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		code := startStatus(err)
		if code == exitFailed {
			return code, err
		}
		fmt.Fprintf(os.Stderr, "lightbox: %v\n", err)
		return code, nil
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case err := <-done:
			var ee *lightbox.ExitError
			if errors.As(err, &ee) {
				if ee.OOMKilled {
					fmt.Fprintln(os.Stderr, "lightbox: out of memory: the command was killed at the sandbox's memory limit (--memory)")
				}
				return ee.ExitCode, nil
			}
			if err != nil {
				return exitFailed, err
			}
			return 0, nil
		case s := <-sigs:
			if s == syscall.SIGWINCH {
				if tty {
					if w, h, err := term.GetSize(int(os.Stdin.Fd())); err == nil {
						cmd.Resize(uint16(h), uint16(w))
					}
				}
				continue
			}
			cmd.Signal(s)
		}
	}
}

// startStatus is the exit status for a command that could not start.
func startStatus(err error) int {
	switch {
	case errors.Is(err, lightbox.ErrCommandNotFound):
		return exitNotFound
	case errors.Is(err, lightbox.ErrNotExecutable):
		return exitNotExecutable
	}
	return exitFailed
}

// parseMounts parses -v SRC:DST[:ro] values.
func parseMounts(vs []string) (map[string]lightbox.Mount, error) {
	if len(vs) == 0 {
		return nil, nil
	}
	m := map[string]lightbox.Mount{}
	for _, v := range vs {
		parts := strings.Split(v, ":")
		var mt lightbox.Mount
		switch {
		case len(parts) == 3 && parts[2] == "ro":
			mt.ReadOnly = true
		case len(parts) == 3 && parts[2] == "rw":
		case len(parts) == 2:
		default:
			return nil, fmt.Errorf("-v %q: want SRC:DST[:ro]", v)
		}
		src, dst := parts[0], parts[1]
		if src == "" || dst == "" {
			return nil, fmt.Errorf("-v %q: want SRC:DST[:ro]", v)
		}
		if isHostPath(src) {
			if src == "~" || strings.HasPrefix(src, "~/") {
				home, err := os.UserHomeDir()
				if err != nil {
					return nil, fmt.Errorf("-v %q: %w", v, err)
				}
				src = filepath.Join(home, strings.TrimPrefix(src, "~"))
			}
			mt.Source = src
		} else {
			mt.Volume = src
		}
		if _, dup := m[dst]; dup {
			return nil, fmt.Errorf("-v %q: %s is mounted twice", v, dst)
		}
		m[dst] = mt
	}
	return m, nil
}

// isHostPath is DESIGN.md's rule: a host path is `.` or starts with /,
// ./, ../ or ~; anything else names a volume.
func isHostPath(s string) bool {
	return s == "." || s == ".." || s == "~" || strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") ||
		strings.HasPrefix(s, "../") || strings.HasPrefix(s, "~/")
}

func execCommand() *cli.Command {
	return &cli.Command{
		Name:      "exec",
		Usage:     "run a command in a running sandbox",
		ArgsUsage: "NAME CMD [ARG...]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "allocate a terminal inside the sandbox"},
			&cli.BoolFlag{Name: "interactive", Aliases: []string{"i"}, Usage: "accepted for docker compatibility; stdin is always passed through"},
			&cli.StringFlag{Name: "workdir", Aliases: []string{"w"}, Usage: "working directory inside the sandbox"},
			&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "user[:group] inside the sandbox"},
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "K=V environment variable (repeatable)"},
		},
		Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
			if err := needArgs(c, 2, "NAME CMD [ARG...]"); err != nil {
				return err
			}
			sb, err := r.AttachSandbox(c.Context, c.Args().First())
			if err != nil {
				return err
			}
			argv := c.Args().Tail()
			cmd := sb.Command(context.WithoutCancel(c.Context), argv[0], argv[1:]...)
			cmd.Env = c.StringSlice("env")
			cmd.Dir = c.String("workdir")
			cmd.User = c.String("user")
			code, err := runAttached(cmd, c.Bool("tty"))
			if err != nil {
				fmt.Fprintf(os.Stderr, "lightbox: %v\n", err)
			}
			return exitCode(code)
		}),
	}
}

func psCommand() *cli.Command {
	return &cli.Command{
		Name:  "ps",
		Usage: "list sandboxes",
		Flags: []cli.Flag{formatFlag()},
		Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
			asJSON, err := wantJSON(c)
			if err != nil {
				return err
			}
			list, err := r.ListSandboxes(c.Context)
			if err != nil {
				return err
			}
			if asJSON {
				if list == nil {
					list = []lightbox.SandboxInfo{}
				}
				return printJSON(os.Stdout, list)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSNAPSHOT\tSTATUS\tCREATED\tVOLUMES")
			for _, s := range list {
				status := s.Status
				if s.ExitCode != nil {
					status = fmt.Sprintf("%s (%d)", s.Status, *s.ExitCode)
				}
				vols := safeJoin(s.Volumes, ",")
				if vols == "" {
					vols = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", safe(s.Name), safe(s.Snapshot), safe(status), ago(s.CreatedAt), vols)
			}
			return tw.Flush()
		}),
	}
}

func logsCommand() *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "print the output of a sandbox's main command",
		ArgsUsage: "NAME",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing until the command exits"}},
		Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
			if err := needArgs(c, 1, "NAME"); err != nil {
				return err
			}
			return r.SandboxLogs(c.Context, c.Args().First(), os.Stdout, os.Stderr, c.Bool("follow"))
		}),
	}
}

func waitCommand() *cli.Command {
	return &cli.Command{
		Name:      "wait",
		Usage:     "wait for a sandbox's main command and exit with its status",
		ArgsUsage: "NAME",
		Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
			if err := needArgs(c, 1, "NAME"); err != nil {
				return err
			}
			code, err := r.WaitSandbox(c.Context, c.Args().First())
			if err != nil {
				return err
			}
			fmt.Println(code)
			return exitCode(code)
		}),
	}
}

func rmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "remove sandboxes (a running one only with -f: SIGTERM, then SIGKILL after --time)",
		ArgsUsage: "NAME...",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "stop running sandboxes; ignore missing ones"},
			&cli.DurationFlag{Name: "time", Aliases: []string{"t"}, Usage: "grace period before SIGKILL", Value: 10 * time.Second},
			quietFlag(),
		},
		Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
			return removeEach(c, func(name string) error {
				return r.RemoveSandbox(c.Context, name, lightbox.RemoveSandboxOptions{Force: c.Bool("force"), Grace: c.Duration("time")})
			})
		}),
	}
}

func commitCommand() *cli.Command {
	return &cli.Command{
		Name:      "commit",
		Usage:     "make a snapshot from a sandbox's snapshot plus what the sandbox wrote over it",
		ArgsUsage: "NAME SNAPSHOT",
		Description: `The new snapshot is the sandbox's snapshot plus one layer: what the
sandbox wrote over it (not its mounts or volumes), with the snapshot's
configuration.

A running sandbox is paused while its layer is read, so that the snapshot
is one consistent picture: every process in it except its init gets
SIGSTOP, and SIGCONT once the layer is read (also when the commit fails).
Processes that were already stopped stay stopped. lightbox exec keeps
working meanwhile. If the commit is killed before it resumes them,
the next commit of the sandbox or lightbox gc does.

The layer is read without following anything the sandbox made: symlinks
are stored as symlinks; a file that changes type while it is read, and
any file named .wh.* (OCI layers reserve that prefix for whiteouts), are
left out with a warning.`,
		Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
			if err := needArgs(c, 2, "NAME SNAPSHOT"); err != nil {
				return err
			}
			sb, err := r.AttachSandbox(c.Context, c.Args().Get(0))
			if err != nil {
				return err
			}
			snap, err := sb.Commit(c.Context, c.Args().Get(1))
			if err != nil {
				return err
			}
			fmt.Println(snap.Name)
			return nil
		}),
	}
}

func gcCommand() *cli.Command {
	return &cli.Command{
		Name:  "gc",
		Usage: "remove what crashed lightbox processes left: mounts, state dirs, stale names, temporary files",
		Description: "Prints one line per thing removed: \"sandbox NAME\" (a dead sandbox), \"disk NAME\"\n" +
			"(a capped writable layer no sandbox names) or \"layer DIGEST\" (an unpacked layer no\n" +
			"snapshot uses); -q prints nothing.",
		Flags: []cli.Flag{quietFlag()},
		Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
			got, err := r.Collect(c.Context)
			if got != nil && !c.Bool("quiet") {
				for _, x := range []struct {
					kind  string
					names []string
				}{{"sandbox", got.Sandboxes}, {"disk", got.Disks}, {"layer", got.Layers}} {
					for _, n := range x.names {
						fmt.Printf("%s %s\n", x.kind, safe(n))
					}
				}
			}
			return err
		}),
	}
}
