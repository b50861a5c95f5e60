package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/beamhop/lightbox"
	"github.com/beamhop/lightbox/cmd/lightbox/internal/earlysig"
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
			&cli.BoolFlag{Name: "rm", Usage: "accepted for docker compatibility: a foreground run's sandbox is always removed once its command exits (unless --keep)"},
			&cli.BoolFlag{Name: "keep", Usage: "keep the sandbox once its command exits (exited, listed by ps -a, with its status) until rm: to commit what it made (its output went to this terminal, not to logs: run -d keeps logs)"},
			&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "allocate a terminal inside the sandbox"},
			&cli.BoolFlag{Name: "interactive", Aliases: []string{"i"}, Usage: "accepted for docker compatibility; stdin is always passed through"},
			&cli.StringFlag{Name: "workdir", Aliases: []string{"w"}, Usage: "working directory inside the sandbox"},
			&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "user[:group] inside the sandbox"},
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "K=V environment variable, or K for this K's value here (repeatable)"},
			&cli.StringSliceFlag{Name: "volume", Aliases: []string{"v"}, Usage: "SRC:DST[:ro|:O|:nocopy]; SRC is a host path when it is . or starts with /, ./, ../ or ~, else a volume name; :O copy-on-write (a host dir as a read-only lower layer, the sandbox's writes thrown away with it); a new volume is filled with what the snapshot has at DST unless :nocopy (repeatable)"},
			&cli.StringFlag{Name: "network", Usage: "private, none or host (private:pasta or private:slirp4netns picks the stack)", Value: string(lightbox.NetworkPrivate)},
			caCertsFlag(),
			&cli.StringSliceFlag{Name: "publish", Aliases: []string{"p"}, Usage: "[HOSTIP:]HOSTPORT:PORT[/tcp|udp] (private network only; repeatable)"},
			&cli.Int64Flag{Name: "disk-mib", Usage: "cap the sandbox's writable layer in MiB"},
			&cli.DurationFlag{Name: "timeout", Usage: "destroy the sandbox after this long"},
			&cli.StringFlag{Name: "entrypoint", Usage: "run this program with CMD as its arguments instead of the snapshot's Entrypoint; \"\" clears it (the snapshot's Cmd, or CMD, runs alone)"},
			&cli.StringFlag{Name: "stop-signal", Usage: "what stop and rm -f send the command first (default: the snapshot's STOPSIGNAL, else SIGTERM)"},
			&cli.BoolFlag{Name: "allow-userns", Usage: "let processes inside create user namespaces (e.g. a rootless container engine); refused by default"},
		}, limitFlags()...),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, "SNAPSHOT [CMD [ARG...]]"); err != nil {
				return err
			}
			switch {
			case c.Bool("rm") && c.Bool("keep"):
				return errors.New("--rm and --keep: choose one")
			case c.Bool("rm") && c.Bool("detach"):
				// docker run -d --rm removes the container once it exits;
				// a detached sandbox here stays, exited, until rm.
				return errors.New("--rm with -d: a detached sandbox stays until lightbox rm (its command's status and logs with it)")
			}
			// Signals (run is one of ownSignals): with -d, SIGINT and
			// SIGTERM cancel the launch, which cleans up; attached, they
			// go to the command once it runs, their Notify overlapping
			// the store's open.
			var sigs chan os.Signal
			var sigsReady chan struct{}
			if c.Bool("detach") {
				ctx, stop := signal.NotifyContext(c.Context, syscall.SIGTERM, os.Interrupt)
				defer stop()
				c.Context = ctx
			} else {
				sigs, sigsReady = earlysig.Take()
			}
			r, err := open(c)
			if err != nil {
				return err
			}
			defer func() { _ = r.Close() }() // releases read-only handles (the re-executable binary); the command's result stands
			mounts, err := parseMounts(c.StringSlice("volume"))
			if err != nil {
				return err
			}
			res, err := parseResources(c)
			if err != nil {
				return err
			}
			var stopSig syscall.Signal
			if v := c.String("stop-signal"); v != "" {
				if stopSig, err = lightbox.ParseSignal(v); err != nil {
					return fmt.Errorf("--stop-signal: %w", err)
				}
			}
			opts := lightbox.SandboxOptions{
				Snapshot:  c.Args().First(),
				Name:      c.String("name"),
				Mounts:    mounts,
				Workdir:   c.String("workdir"),
				User:      c.String("user"),
				Env:       envFlag(c),
				Network:   lightbox.Network(c.String("network")),
				CACerts:   c.String("ca-certs"),
				Ports:     c.StringSlice("publish"),
				DiskMiB:   c.Int64("disk-mib"),
				Timeout:   c.Duration("timeout"),
				Resources: res,

				StopSignal: stopSig,

				AllowUserNamespaces: c.Bool("allow-userns"),
			}
			// -v my-project:/work where ./my-project exists: said once
			// the volume is made (by this command, not found existing).
			maybe := ambiguousVolumes(c.Context, r, mounts)
			warned := false
			warn := func() {
				if !warned {
					warned = true
					warnCreated(c.Context, r, maybe)
				}
			}
			defer warn()
			argv := c.Args().Tail()
			// --entrypoint, as docker's: the program replaces the
			// snapshot's Entrypoint and its Cmd; CMD are its arguments.
			// "" clears the Entrypoint: CMD, else the snapshot's Cmd.
			useImage := true
			if c.IsSet("entrypoint") {
				useImage = false
				if ep := c.String("entrypoint"); ep != "" {
					argv = append([]string{ep}, argv...)
				} else if len(argv) == 0 {
					snap, err := r.InspectSnapshot(c.Context, opts.Snapshot)
					if err != nil {
						return err
					}
					argv = snap.Config.Cmd
				}
			}
			if c.Bool("detach") {
				// DESIGN.md: CMD defaults to the snapshot's Entrypoint/Cmd;
				// with neither the sandbox idles, serving exec.
				opts.Command, opts.UseImageCommand = argv, useImage
				// -t: the main command runs on a terminal inside the
				// sandbox and its output goes to the logs, as with
				// docker run -dt; sized as this terminal, if any.
				if c.Bool("tty") {
					opts.Tty, opts.TtySize = true, [2]uint16{24, 80}
					if w, h, err := term.GetSize(int(os.Stdout.Fd())); err == nil {
						opts.TtySize = [2]uint16{uint16(h), uint16(w)}
					}
				}
				sb, err := r.LaunchSandbox(c.Context, opts)
				if err != nil {
					// A command that cannot start is 126 or 127 here too,
					// as without -d (and as docker run -d).
					if code := startStatus(err); code != exitFailed {
						fmt.Fprintf(os.Stderr, "lightbox: %v\n", err)
						return exitCode(code)
					}
					return err
				}
				// A main command that already ended leaves an exited
				// sandbox with its logs and status: nothing to detach.
				if err := sb.Detach(); err != nil && !errors.Is(err, lightbox.ErrNotRunning) {
					_ = sb.Destroy(context.WithoutCancel(c.Context)) // the detach already failed: its error is returned; Destroy logs its own
					return err
				}
				fmt.Println(sb.Name())
				return nil
			}
			if len(argv) == 0 && !useImage {
				return fmt.Errorf("--entrypoint \"\" and snapshot %s has no Cmd: give a command", opts.Snapshot)
			}
			if len(argv) == 0 {
				snap, err := r.InspectSnapshot(c.Context, opts.Snapshot)
				if err != nil {
					return err
				}
				if argv = snap.Config.Command(); len(argv) == 0 {
					return fmt.Errorf("snapshot %s has no Entrypoint or Cmd: give a command", opts.Snapshot)
				}
			}
			code := exitFailed
			// The context of the sandbox outlives SIGINT/SIGTERM: those go
			// to the command, and the sandbox is torn down after it exits.
			ctx := context.WithoutCancel(c.Context)
			// The command is the sandbox's main command: its spec goes
			// with the launch, so the init starts it as soon as it
			// serves (no round trip after its ready report), and the
			// init ends the sandbox itself once it exits.
			// Without --keep the command's status is returned as soon
			// as it is known: a detached reaper tears the sandbox down.
			opts.Command, opts.DetachedTeardown = argv, !c.Bool("keep")
			code, err = runMain(ctx, r, opts, c.Bool("tty"), c.Bool("keep"), warn, sigs, sigsReady)
			if err != nil {
				return err
			}
			return exitCode(code)
		},
	}
}

// caCertsFlag is --ca-certs of run and snapshot build.
func caCertsFlag() cli.Flag {
	return &cli.StringFlag{Name: "ca-certs", Usage: "host: bind the host's CA bundle read-only over the snapshot's (for a TLS-intercepting proxy only the host trusts); never part of a snapshot"}
}

// runMain runs opts.Command as the main command of a new sandbox, with
// this process's stdio, forwarding signals as runAttached does. With keep
// it leaves the sandbox behind, exited, once it ends (run --keep); else it
// destroys it.
func runMain(ctx context.Context, r *lightbox.Runtime, opts lightbox.SandboxOptions, tty, keep bool, launched func(), sigs chan os.Signal, sigsReady chan struct{}) (int, error) {
	opts.Stdin, opts.Stdout, opts.Stderr = commandStdin(), os.Stdout, os.Stderr
	if tty {
		opts.Stdin = os.Stdin
		restore, size, err := rawTerminal()
		if err != nil {
			return exitFailed, err
		}
		defer restore()
		opts.Tty, opts.TtySize = true, size
	}
	// sigs and sigsReady are earlysig.Take's. No signal.Stop: run exits
	// once this returns, and Stop costs a round trip to the runtime's
	// signal-mask thread (new OS threads at exit; bench/NOTES.md
	// 2026-11-30, lightbox exec).
	<-sigsReady
	sb, err := r.LaunchSandbox(ctx, opts)
	if err != nil {
		code := startStatus(err)
		if code == exitFailed {
			return code, err
		}
		fmt.Fprintf(os.Stderr, "lightbox: %v\n", err)
		return code, nil
	}
	launched()
	main := sb.MainCommand()
	type waited struct {
		code int
		err  error
	}
	done := make(chan waited, 1)
	go func() {
		if keep {
			// Until the init is gone too, so that ps shows it exited.
			code, err := sb.Wait(ctx)
			done <- waited{code, err}
			return
		}
		code, err := mainStatus(main.Wait())
		if derr := sb.Destroy(ctx); derr != nil && err == nil {
			err = derr
		}
		done <- waited{code, err}
	}()
	for {
		select {
		case w := <-done:
			if w.err != nil {
				return exitFailed, w.err
			}
			return w.code, nil
		case s := <-sigs:
			if s == syscall.SIGWINCH {
				if tty {
					if w, h, err := term.GetSize(int(os.Stdin.Fd())); err == nil {
						_ = main.Resize(uint16(h), uint16(w)) // best effort: the next SIGWINCH tries again
					}
				}
				continue
			}
			_ = main.Signal(s) // best effort: a command that has ended cannot be signalled, and Wait reports it
		}
	}
}

// rawTerminal puts standard input, a terminal, in raw mode and returns
// how to restore it and its size (rows, columns).
func rawTerminal() (func(), [2]uint16, error) {
	var size [2]uint16
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return nil, size, errors.New("-t: standard input is not a terminal")
	}
	if w, h, err := term.GetSize(int(os.Stdin.Fd())); err == nil {
		size = [2]uint16{uint16(h), uint16(w)}
	}
	old, err := term.MakeRaw(int(os.Stdin.Fd()))
	if err != nil {
		return nil, size, fmt.Errorf("-t: %w", err)
	}
	// With a terminal lightbox copies the command's output to stdout
	// itself: a stdout whose reader went away (`run -t … | head`) must
	// fail that write with EPIPE, which ends the command (SIGPIPE, as
	// without -t), not end lightbox with SIGPIPE before it restores the
	// terminal. Registering SIGPIPE is what makes the Go runtime do that.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	// Best effort: a terminal that cannot be restored is the user's to reset.
	return func() { _ = term.Restore(int(os.Stdin.Fd()), old) }, size, nil
}

// runAttached runs cmd with this process's stdio, forwarding
// earlysig.Forwarded to it (SIGWINCH as a window size change), and
// returns its exit status. sigs and ready are earlysig.Take's.
func runAttached(cmd *lightbox.Cmd, tty bool, sigs chan os.Signal, ready chan struct{}) (int, error) {
	cmd.Stdin, cmd.Stdout, cmd.Stderr = commandStdin(), os.Stdout, os.Stderr
	if tty {
		cmd.Stdin = os.Stdin
		restore, size, err := rawTerminal()
		if err != nil {
			return exitFailed, err
		}
		defer restore()
		cmd.Tty, cmd.TtySize = true, size
	}
	// Forwarding is in place before the command starts. There is no
	// signal.Stop: exec exits once this returns, and Stop is another
	// round trip per signal to the runtime's signal-mask thread.
	<-ready
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
			return mainStatus(err)
		case s := <-sigs:
			if s == syscall.SIGWINCH {
				if tty {
					if w, h, err := term.GetSize(int(os.Stdin.Fd())); err == nil {
						_ = cmd.Resize(uint16(h), uint16(w)) // best effort: the next SIGWINCH tries again
					}
				}
				continue
			}
			_ = cmd.Signal(s) // best effort: a command that has ended cannot be signalled, and Wait reports it
		}
	}
}

// mainStatus turns what a command's Wait returned into this process's
// exit status, saying so when the OOM killer or the sandbox's timeout
// ended it.
func mainStatus(err error) (int, error) {
	var ee *lightbox.ExitError
	if errors.As(err, &ee) {
		if ee.OOMKilled {
			fmt.Fprintln(os.Stderr, "lightbox: out of memory: the command was killed at the sandbox's memory limit (--memory)")
		}
		if ee.TimedOut {
			fmt.Fprintln(os.Stderr, "lightbox: the sandbox's timeout (--timeout) passed: the command was stopped")
		}
		return ee.ExitCode, nil
	}
	if err != nil {
		return exitFailed, err
	}
	return 0, nil
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

// mountSyntax is -v's value, for errors.
const mountSyntax = "SRC:DST[:OPT[,OPT]] with OPT ro, rw, O (a host path, copy-on-write) or nocopy (a volume, not filled from the image)"

// parseMounts parses -v SRC:DST[:OPT[,OPT]] values.
func parseMounts(vs []string) (map[string]lightbox.Mount, error) {
	if len(vs) == 0 {
		return nil, nil
	}
	m := map[string]lightbox.Mount{}
	for _, v := range vs {
		parts := strings.Split(v, ":")
		var mt lightbox.Mount
		if len(parts) != 2 && len(parts) != 3 {
			return nil, fmt.Errorf("-v %q: want %s", v, mountSyntax)
		}
		if len(parts) == 3 {
			for _, o := range strings.Split(parts[2], ",") {
				switch o {
				case "ro":
					mt.ReadOnly = true
				case "O":
					mt.Overlay = true
				case "nocopy":
					mt.NoCopy = true
				case "rw":
				default:
					return nil, fmt.Errorf("-v %q: option %q: want %s", v, o, mountSyntax)
				}
			}
		}
		src, dst := parts[0], parts[1]
		if src == "" || dst == "" {
			return nil, fmt.Errorf("-v %q: want %s", v, mountSyntax)
		}
		if isHostPath(src) {
			if src == "~" || strings.HasPrefix(src, "~/") {
				home, err := os.UserHomeDir()
				if err != nil {
					return nil, fmt.Errorf("-v %q: %w", v, err)
				}
				src = filepath.Join(home, strings.TrimPrefix(src, "~"))
			}
			if mt.NoCopy {
				return nil, fmt.Errorf("-v %q: nocopy is for a volume, and %s is a host path", v, src)
			}
			mt.Source = src
		} else {
			if strings.Contains(src, "/") {
				// A relative path without ./ (docker refuses it too):
				// no volume name has a slash, so say what was meant.
				return nil, fmt.Errorf("-v %q: %q is an invalid volume name (no slash) and not a host path (a host path starts with /, ./, ../ or ~: ./%s)", v, src, src)
			}
			mt.Volume = src
		}
		if _, dup := m[dst]; dup {
			return nil, fmt.Errorf("-v %q: %s is mounted twice", v, dst)
		}
		m[dst] = mt
	}
	return m, nil
}

// ambiguousVolumes returns the volumes of mounts that do not exist yet
// and whose names are also entries of the working directory: `-v
// my-project:/work` names a volume, but ./my-project was likely meant.
func ambiguousVolumes(ctx context.Context, r *lightbox.Runtime, mounts map[string]lightbox.Mount) []string {
	var out []string
	for _, m := range mounts {
		if m.Volume == "" {
			continue
		}
		if _, err := os.Lstat(m.Volume); err != nil {
			continue
		}
		if _, err := r.InspectVolume(ctx, m.Volume, lightbox.ListVolumesOptions{}); errors.Is(err, lightbox.ErrNotFound) {
			out = append(out, m.Volume)
		}
	}
	return out
}

// warnCreated says, on stderr, which of names (from ambiguousVolumes) now
// exist: made by this command.
func warnCreated(ctx context.Context, r *lightbox.Runtime, names []string) {
	for _, n := range names {
		if _, err := r.InspectVolume(context.WithoutCancel(ctx), n, lightbox.ListVolumesOptions{}); err == nil {
			fmt.Fprintf(os.Stderr, "lightbox: created volume %s; did you mean ./%s?\n", safe(n), safe(n))
		}
	}
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
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "K=V environment variable, or K for this K's value here (repeatable)"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 2, "NAME CMD [ARG...]"); err != nil {
				return err
			}
			sigs, ready := earlysig.Take()
			return withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
				return execIn(c, r, sigs, ready)
			})(c)
		},
	}
}

// execIn is exec's action once the store is open.
func execIn(c *cli.Context, r *lightbox.Runtime, sigs chan os.Signal, ready chan struct{}) error {
	sb, err := r.AttachSandbox(c.Context, c.Args().First())
	if err != nil {
		return err
	}
	argv := c.Args().Tail()
	cmd := sb.Command(context.WithoutCancel(c.Context), argv[0], argv[1:]...)
	cmd.Env = envFlag(c)
	cmd.Dir = c.String("workdir")
	cmd.User = c.String("user")
	code, err := runAttached(cmd, c.Bool("tty"), sigs, ready)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lightbox: %v\n", err)
	}
	return exitCode(code)
}

func psCommand() *cli.Command {
	return &cli.Command{
		Name:  "ps",
		Usage: "list running sandboxes (-a: every sandbox, exited and dead ones too)",
		Flags: []cli.Flag{formatFlag(), &cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "list exited and dead sandboxes too"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print the names only, one per line (lightbox rm -f $(lightbox ps -aq))"}},
		Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
			asJSON, err := wantJSON(c)
			if err != nil {
				return err
			}
			all, err := r.ListSandboxes(c.Context)
			if err != nil {
				return err
			}
			var list []lightbox.SandboxInfo
			for _, s := range all {
				if c.Bool("all") || s.Status == "running" {
					list = append(list, s)
				}
			}
			if asJSON {
				if list == nil {
					list = []lightbox.SandboxInfo{}
				}
				return printJSON(os.Stdout, list)
			}
			if c.Bool("quiet") {
				for _, s := range list {
					fmt.Println(safe(s.Name))
				}
				return nil
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSNAPSHOT\tSTATUS\tCREATED\tVOLUMES")
			for _, s := range list {
				status := s.Status
				if s.ExitCode != nil {
					status = fmt.Sprintf("%s (%d)", s.Status, *s.ExitCode)
				}
				if s.NetworkLost {
					status += ", no network"
				}
				if s.Pooled {
					status += ", pooled"
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

func killCommand() *cli.Command {
	return &cli.Command{
		Name:      "kill",
		Usage:     "send a signal to sandboxes' main commands (SIGKILL unless -s)",
		ArgsUsage: "NAME...",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "signal", Aliases: []string{"s"}, Usage: "a name or number: KILL, SIGHUP, 15, RTMIN+1", Value: "KILL"},
		},
		Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
			sig, err := lightbox.ParseSignal(c.String("signal"))
			if err != nil {
				return err
			}
			return eachName(c, func(name string) error {
				return r.SignalSandbox(c.Context, name, sig)
			})
		}),
	}
}

func stopCommand() *cli.Command {
	return &cli.Command{
		Name:      "stop",
		Usage:     "stop sandboxes' main commands: the stop signal (run --stop-signal, else the snapshot's STOPSIGNAL, else SIGTERM), then SIGKILL after --time; each sandbox stays, exited, with its status and logs, until rm",
		ArgsUsage: "NAME...",
		Flags: []cli.Flag{
			graceFlag("grace period before SIGKILL: seconds, as docker's and podman's, or a duration such as 1.5s (0: SIGKILL at once)"),
		},
		Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
			return eachName(c, func(name string) error {
				return r.StopSandbox(c.Context, name, graceOf(c))
			})
		}),
	}
}

// grace is --time's value: whole seconds, as docker stop -t and podman
// stop -t take it (a bare "1" was refused as no duration), or a Go
// duration ("1.5s", "500ms").
type grace time.Duration

func (g *grace) Set(v string) error {
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		*g = grace(time.Duration(n) * time.Second)
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return fmt.Errorf("want seconds (10) or a duration (1.5s, 500ms), not %q", v)
	}
	*g = grace(d)
	return nil
}

func (g *grace) String() string { return time.Duration(*g).String() }

// graceFlag is stop's and rm's --time (-t), 10 s unless given.
func graceFlag(usage string) cli.Flag {
	g := grace(10 * time.Second)
	return &cli.GenericFlag{Name: "time", Aliases: []string{"t"}, Usage: usage, Value: &g}
}

func graceOf(c *cli.Context) time.Duration { return time.Duration(*c.Generic("time").(*grace)) }

func rmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "remove sandboxes (a running one only with -f: its stop signal, SIGTERM by default, then SIGKILL after --time)",
		ArgsUsage: "NAME...",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "stop running sandboxes; ignore missing ones"},
			graceFlag("grace period before SIGKILL: seconds, as docker's and podman's, or a duration such as 1.5s (0: SIGKILL at once, as docker stop -t 0)"),
			quietFlag(),
		},
		Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
			grace := graceOf(c)
			if grace <= 0 {
				// RemoveSandboxOptions reads 0 as its default, 10 s: the
				// shortest grace there is asks for SIGKILL at once.
				grace = time.Nanosecond
			}
			return eachName(c, func(name string) error {
				return r.RemoveSandbox(c.Context, name, lightbox.RemoveSandboxOptions{Force: c.Bool("force"), Grace: grace})
			})
		}),
	}
}

func commitCommand() *cli.Command {
	return &cli.Command{
		Name:      "commit",
		Usage:     "make a snapshot from a sandbox's snapshot plus what the sandbox wrote over it",
		ArgsUsage: "NAME SNAPSHOT",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "replace", Usage: "replace an existing snapshot of that name (unless a sandbox uses it)"}},
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
			snap, err := sb.CommitWith(c.Context, c.Args().Get(1), lightbox.CommitOptions{Replace: c.Bool("replace")})
			if err != nil {
				return replaceHint(err)
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
			"(a capped writable layer no sandbox names), \"layer DIGEST\" (an unpacked layer no\n" +
			"snapshot uses) or \"init FILE\" (the sandbox init of another lightbox build that no\n" +
			"running lightbox process holds and nothing used for a week); -q prints nothing.",
		Flags: []cli.Flag{quietFlag()},
		Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
			got, err := r.Collect(c.Context)
			if got != nil && !c.Bool("quiet") {
				for _, x := range []struct {
					kind  string
					names []string
				}{{"sandbox", got.Sandboxes}, {"disk", got.Disks}, {"layer", got.Layers}, {"init", got.Inits}} {
					for _, n := range x.names {
						fmt.Printf("%s %s\n", x.kind, safe(n))
					}
				}
			}
			return err
		}),
	}
}

// envFlag is the -e entries: K=V as given, and a bare K with the value K
// has in this process's environment, left out when it has none (docker run
// -e K).
func envFlag(c *cli.Context) []string {
	var env []string
	for _, kv := range c.StringSlice("env") {
		if kv != "" && !strings.Contains(kv, "=") {
			v, ok := os.LookupEnv(kv)
			if !ok {
				continue
			}
			kv += "=" + v
		}
		env = append(env, kv)
	}
	return env
}
