//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/beamhop/lightbox"
	"github.com/beamhop/lightbox/ociruntime"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// runcLog is where errors go besides stderr (--log, --log-format).
type runcLog struct {
	w    io.Writer
	json bool
}

func (l *runcLog) error(err error) {
	msg := err.Error()
	fmt.Fprintf(os.Stderr, "%s: %s\n", runcName, msg)
	if l.w == nil {
		return
	}
	if l.json {
		// The lines containerd's shim and podman read back on failure.
		b, _ := json.Marshal(map[string]string{"level": "error", "msg": msg, "time": time.Now().UTC().Format(time.RFC3339Nano)})
		fmt.Fprintf(l.w, "%s\n", b)
		return
	}
	fmt.Fprintf(l.w, "time=%q level=error msg=%q\n", time.Now().UTC().Format(time.RFC3339Nano), msg)
}

// logger is the runtime's warnings: to --log in its format, else to
// stderr as text.
func (l *runcLog) logger() *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelWarn}
	switch {
	case l.w == nil:
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	case l.json:
		return slog.New(slog.NewJSONHandler(l.w, opts))
	}
	return slog.New(slog.NewTextHandler(l.w, opts))
}

// RuncMain runs the OCI runtime command line and returns the exit status.
func RuncMain(args []string) int {
	if len(args) > 1 && args[1] == ociruntime.RelayArg {
		return ociruntime.RelayMain()
	}
	lg := &runcLog{}
	rt := &ociruntime.Runtime{}
	app := newRuncApp(rt, lg)
	err := app.RunContext(context.Background(), args)
	if err == nil {
		return 0
	}
	var ec exitCode
	if errors.As(err, &ec) {
		return int(ec)
	}
	lg.error(err)
	return 1
}

func oneID(c *cli.Context) (string, error) {
	if c.NArg() < 1 {
		return "", fmt.Errorf("%s: a container id is required", c.Command.Name)
	}
	return c.Args().First(), nil
}

func newRuncApp(rt *ociruntime.Runtime, lg *runcLog) *cli.App {
	createFlags := []cli.Flag{
		&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Value: ".", Usage: "the bundle directory (holding config.json)"},
		&cli.StringFlag{Name: "pid-file", Usage: "write the container's pid here"},
		&cli.StringFlag{Name: "console-socket", Usage: "unix socket the pty master is sent over (process.terminal)"},
		&cli.IntFlag{Name: "preserve-fds", Usage: "pass this many fds from 3 on to the process"},
		&cli.BoolFlag{Name: "no-pivot", Usage: "refused: lightbox always pivots"},
		&cli.BoolFlag{Name: "no-new-keyring", Usage: "accepted: no session keyring is made anyway"},
	}
	createOpts := func(c *cli.Context) (string, ociruntime.CreateOptions, error) {
		id, err := oneID(c)
		if err != nil {
			return "", ociruntime.CreateOptions{}, err
		}
		if c.Bool("no-pivot") {
			return "", ociruntime.CreateOptions{}, errors.New("--no-pivot: not supported by lightbox-runc")
		}
		return id, ociruntime.CreateOptions{PidFile: c.String("pid-file"), ConsoleSocket: c.String("console-socket"), PreserveFDs: c.Int("preserve-fds")}, nil
	}
	return &cli.App{
		Name:                   runcName,
		Usage:                  "lightbox's OCI runtime: runc's command line over lightbox's init",
		Version:                "1.1.0-lightbox (runtime-spec " + specs.Version + ")",
		HideHelpCommand:        true,
		UseShortOptionHandling: true,
		// --env A=b,c is one value, as in runc (urfave/cli v1).
		DisableSliceFlagSeparator: true,
		ExitErrHandler:            func(*cli.Context, error) {},
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "root", Usage: "state directory (default /run/lightbox-runc)"},
			&cli.StringFlag{Name: "log", Usage: "log file (errors are also on stderr)"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json"},
			&cli.BoolFlag{Name: "debug"},
			&cli.BoolFlag{Name: "systemd-cgroup", Usage: "refused: lightbox-runc manages cgroupfs paths only"},
			&cli.StringFlag{Name: "rootless", Value: "auto", Usage: "auto or false (true is refused)"},
			&cli.StringFlag{Name: "criu", Hidden: true},
		},
		Before: func(c *cli.Context) error {
			rt.Root = c.String("root")
			switch f := c.String("log-format"); f {
			case "text", "json":
				lg.json = f == "json"
			default:
				return fmt.Errorf("--log-format %q: want text or json", f)
			}
			if p := c.String("log"); p != "" {
				f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_CLOEXEC, 0o644)
				if err != nil {
					return fmt.Errorf("--log: %w", err)
				}
				lg.w = f
			}
			rt.Logger = lg.logger()
			if c.Bool("systemd-cgroup") {
				return errors.New("--systemd-cgroup: not supported by lightbox-runc: use the cgroupfs driver (containerd: SystemdCgroup = false; podman: --cgroup-manager cgroupfs)")
			}
			if c.String("rootless") == "true" {
				return errors.New("--rootless=true: not supported by lightbox-runc: rootless mode is detected (auto)")
			}
			return nil
		},
		Commands: []*cli.Command{
			{Name: "create", Usage: "create a container from a bundle", ArgsUsage: "ID", Flags: createFlags, Action: func(c *cli.Context) error {
				id, o, err := createOpts(c)
				if err != nil {
					return err
				}
				_, err = rt.Create(c.Context, id, c.String("bundle"), o)
				return err
			}},
			{Name: "run", Usage: "create and start a container, wait for it and delete it", ArgsUsage: "ID", Flags: append(createFlags,
				&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}},
				&cli.BoolFlag{Name: "keep", Usage: "refused"}),
				Action: func(c *cli.Context) error {
					id, o, err := createOpts(c)
					if err != nil {
						return err
					}
					if c.Bool("keep") {
						return errors.New("--keep: not supported by lightbox-runc")
					}
					code, err := rt.Run(c.Context, id, c.String("bundle"), o, c.Bool("detach"))
					if err != nil {
						return err
					}
					if code != 0 {
						return exitCode(code)
					}
					return nil
				}},
			{Name: "start", Usage: "start the process of a created container", ArgsUsage: "ID", Action: func(c *cli.Context) error {
				id, err := oneID(c)
				if err != nil {
					return err
				}
				return rt.Start(c.Context, id)
			}},
			{Name: "state", Usage: "print a container's OCI state", ArgsUsage: "ID", Action: func(c *cli.Context) error {
				id, err := oneID(c)
				if err != nil {
					return err
				}
				st, err := rt.State(id)
				if err != nil {
					return err
				}
				return printJSON(os.Stdout, st)
			}},
			{Name: "kill", Usage: "signal a container's process", ArgsUsage: "ID [SIGNAL]", Flags: []cli.Flag{&cli.BoolFlag{Name: "all", Aliases: []string{"a"}}}, Action: func(c *cli.Context) error {
				id, err := oneID(c)
				if err != nil {
					return err
				}
				sig := unix.SIGTERM
				if c.NArg() > 1 {
					if sig, err = lightbox.ParseSignal(c.Args().Get(1)); err != nil {
						return err
					}
				}
				return rt.Kill(id, sig, c.Bool("all"))
			}},
			{Name: "delete", Usage: "delete a container", ArgsUsage: "ID", Flags: []cli.Flag{&cli.BoolFlag{Name: "force", Aliases: []string{"f"}}}, Action: func(c *cli.Context) error {
				id, err := oneID(c)
				if err != nil {
					return err
				}
				return rt.Delete(c.Context, id, c.Bool("force"))
			}},
			{Name: "list", Usage: "list containers", Flags: []cli.Flag{&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table"}, &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}}}, Action: func(c *cli.Context) error {
				sts, err := rt.List()
				if err != nil {
					return err
				}
				switch {
				case c.String("format") == "json":
					if sts == nil {
						sts = []*specs.State{}
					}
					return printJSON(os.Stdout, sts)
				case c.Bool("quiet"):
					for _, s := range sts {
						fmt.Println(s.ID)
					}
				default:
					fmt.Printf("%-20s %-8s %-10s %s\n", "ID", "PID", "STATUS", "BUNDLE")
					for _, s := range sts {
						fmt.Printf("%-20s %-8d %-10s %s\n", s.ID, s.Pid, s.Status, s.Bundle)
					}
				}
				return nil
			}},
			{Name: "exec", Usage: "run a process in a running container", ArgsUsage: "ID [COMMAND [ARG...]]", Flags: []cli.Flag{
				&cli.StringFlag{Name: "process", Aliases: []string{"p"}, Usage: "process.json (runtime-spec Process)"},
				&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}},
				&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}},
				&cli.StringFlag{Name: "console-socket"},
				&cli.StringFlag{Name: "pid-file"},
				&cli.StringFlag{Name: "cwd"},
				&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}},
				&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "UID[:GID]"},
				&cli.StringSliceFlag{Name: "additional-gids", Aliases: []string{"g"}},
				&cli.StringSliceFlag{Name: "cap", Aliases: []string{"c"}},
				&cli.BoolFlag{Name: "no-new-privs"},
				&cli.IntFlag{Name: "preserve-fds"},
				&cli.StringFlag{Name: "apparmor"},
				&cli.StringFlag{Name: "process-label"},
			}, Action: func(c *cli.Context) error {
				id, err := oneID(c)
				if err != nil {
					return err
				}
				p, err := execProcess(rt, c, id)
				if err != nil {
					return err
				}
				if c.Int("preserve-fds") > 0 {
					return errors.New("exec --preserve-fds: not supported by lightbox-runc")
				}
				code, err := rt.Exec(c.Context, id, p, ociruntime.ExecOptions{Detach: c.Bool("detach"), PidFile: c.String("pid-file"), ConsoleSocket: c.String("console-socket")})
				if err != nil {
					return err
				}
				if code != 0 {
					return exitCode(code)
				}
				return nil
			}},
			{Name: "ps", Usage: "list a container's processes", ArgsUsage: "ID [PS OPTIONS]", Flags: []cli.Flag{&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table"}}, Action: func(c *cli.Context) error {
				id, err := oneID(c)
				if err != nil {
					return err
				}
				pids, err := rt.Pids(id)
				if err != nil {
					return err
				}
				if c.String("format") == "json" {
					if pids == nil {
						pids = []int{}
					}
					return printJSON(os.Stdout, pids)
				}
				return psTable(pids, c.Args().Slice()[1:])
			}},
			{Name: "pause", Usage: "freeze a container's processes", ArgsUsage: "ID", Action: func(c *cli.Context) error {
				id, err := oneID(c)
				if err != nil {
					return err
				}
				return rt.Pause(id)
			}},
			{Name: "resume", Usage: "thaw a paused container", ArgsUsage: "ID", Action: func(c *cli.Context) error {
				id, err := oneID(c)
				if err != nil {
					return err
				}
				return rt.Resume(id)
			}},
			{Name: "update", Usage: "update a container's resource limits", ArgsUsage: "ID", Flags: []cli.Flag{
				&cli.StringFlag{Name: "resources", Aliases: []string{"r"}, Usage: "LinuxResources JSON file, - for stdin"},
				&cli.Int64Flag{Name: "memory"}, &cli.Int64Flag{Name: "memory-swap"}, &cli.Int64Flag{Name: "memory-reservation"},
				&cli.Int64Flag{Name: "cpu-quota"}, &cli.Uint64Flag{Name: "cpu-period"}, &cli.Uint64Flag{Name: "cpu-share"},
				&cli.StringFlag{Name: "cpuset-cpus"}, &cli.StringFlag{Name: "cpuset-mems"}, &cli.Int64Flag{Name: "pids-limit"},
			}, Action: func(c *cli.Context) error {
				id, err := oneID(c)
				if err != nil {
					return err
				}
				res, err := updateResources(c)
				if err != nil {
					return err
				}
				return rt.Update(id, res)
			}},
			{Name: "events", Usage: "print a container's stats (JSON lines)", ArgsUsage: "ID", Flags: []cli.Flag{
				&cli.BoolFlag{Name: "stats", Usage: "print the stats once and exit"},
				&cli.DurationFlag{Name: "interval", Value: 5 * time.Second},
			}, Action: func(c *cli.Context) error {
				id, err := oneID(c)
				if err != nil {
					return err
				}
				emit := func(ev *ociruntime.Event) error {
					b, err := json.Marshal(ev)
					if err != nil {
						return err
					}
					_, err = fmt.Printf("%s\n", b)
					return err
				}
				if c.Bool("stats") {
					ev, err := rt.Stats(id)
					if err != nil {
						return err
					}
					return emit(ev)
				}
				ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
				defer stop()
				return rt.Events(ctx, id, c.Duration("interval"), emit)
			}},
			{Name: "features", Usage: "print what lightbox-runc supports (JSON)", Action: func(c *cli.Context) error {
				return printJSON(os.Stdout, ociruntime.Features())
			}},
			{Name: "spec", Usage: "write an example config.json", Flags: []cli.Flag{
				&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Value: "."},
				&cli.BoolFlag{Name: "rootless"},
			}, Action: func(c *cli.Context) error {
				return ociruntime.WriteSpec(c.String("bundle"), c.Bool("rootless"))
			}},
			{Name: "checkpoint", Usage: "refused", Action: refuse}, {Name: "restore", Usage: "refused", Action: refuse},
		},
	}
}

func refuse(c *cli.Context) error {
	return fmt.Errorf("%s: not supported by lightbox-runc", c.Command.Name)
}

// execProcess is exec's process: --process, else the container's own
// process with the command line's args and flags.
func execProcess(rt *ociruntime.Runtime, c *cli.Context, id string) (*specs.Process, error) {
	var p specs.Process
	if f := c.String("process"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--process: %w", err)
		}
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("--process %s: %w", f, err)
		}
	} else {
		if c.NArg() < 2 {
			return nil, errors.New("exec: a command (or --process) is required")
		}
		st, err := rt.State(id)
		if err != nil {
			return nil, err
		}
		b, err := os.ReadFile(filepath.Join(st.Bundle, "config.json"))
		if err != nil {
			return nil, err
		}
		var spec specs.Spec
		if err := json.Unmarshal(b, &spec); err != nil {
			return nil, err
		}
		if spec.Process != nil {
			p = *spec.Process
		}
		p.Args = c.Args().Slice()[1:]
		p.Terminal = c.Bool("tty")
		p.ConsoleSize = nil
	}
	if v := c.String("cwd"); v != "" {
		p.Cwd = v
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	p.Env = append(p.Env, c.StringSlice("env")...)
	if v := c.String("user"); v != "" {
		u, g, hasG := strings.Cut(v, ":")
		uid, err := strconv.ParseUint(u, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--user %q: want UID[:GID]", v)
		}
		p.User.UID = uint32(uid)
		if hasG {
			gid, err := strconv.ParseUint(g, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("--user %q: want UID[:GID]", v)
			}
			p.User.GID = uint32(gid)
		}
	}
	for _, g := range c.StringSlice("additional-gids") {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--additional-gids %q: %w", g, err)
		}
		p.User.AdditionalGids = append(p.User.AdditionalGids, uint32(n))
	}
	if caps := c.StringSlice("cap"); len(caps) > 0 {
		if p.Capabilities == nil {
			p.Capabilities = &specs.LinuxCapabilities{}
		}
		pc := p.Capabilities
		pc.Bounding, pc.Effective, pc.Permitted = append(pc.Bounding, caps...), append(pc.Effective, caps...), append(pc.Permitted, caps...)
	}
	if c.Bool("no-new-privs") {
		p.NoNewPrivileges = true
	}
	if v := c.String("apparmor"); v != "" {
		p.ApparmorProfile = v
	}
	if v := c.String("process-label"); v != "" {
		p.SelinuxLabel = v
	}
	if c.Bool("tty") {
		p.Terminal = true
	}
	return &p, nil
}

// psTable prints ps(1)'s table for the container's pids.
func psTable(pids []int, psArgs []string) error {
	if len(psArgs) == 0 {
		psArgs = []string{"-ef"}
	}
	out, err := exec.Command("ps", psArgs...).Output()
	if err != nil {
		return fmt.Errorf("ps: %w", err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) == 0 {
		return nil
	}
	col := -1
	for i, h := range strings.Fields(lines[0]) {
		if h == "PID" {
			col = i
		}
	}
	if col < 0 {
		return errors.New("ps: no PID column in its output")
	}
	in := map[string]bool{}
	for _, p := range pids {
		in[strconv.Itoa(p)] = true
	}
	fmt.Println(lines[0])
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) > col && in[f[col]] {
			fmt.Println(l)
		}
	}
	return nil
}

func updateResources(c *cli.Context) (*specs.LinuxResources, error) {
	res := &specs.LinuxResources{}
	if f := c.String("resources"); f != "" {
		var b []byte
		var err error
		if f == "-" {
			b, err = io.ReadAll(os.Stdin)
		} else {
			b, err = os.ReadFile(f)
		}
		if err != nil {
			return nil, fmt.Errorf("--resources: %w", err)
		}
		if err := json.Unmarshal(b, res); err != nil {
			return nil, fmt.Errorf("--resources: %w", err)
		}
	}
	mem := func() *specs.LinuxMemory {
		if res.Memory == nil {
			res.Memory = &specs.LinuxMemory{}
		}
		return res.Memory
	}
	cpu := func() *specs.LinuxCPU {
		if res.CPU == nil {
			res.CPU = &specs.LinuxCPU{}
		}
		return res.CPU
	}
	if c.IsSet("memory") {
		v := c.Int64("memory")
		mem().Limit = &v
	}
	if c.IsSet("memory-swap") {
		v := c.Int64("memory-swap")
		mem().Swap = &v
	}
	if c.IsSet("memory-reservation") {
		v := c.Int64("memory-reservation")
		mem().Reservation = &v
	}
	if c.IsSet("cpu-quota") {
		v := c.Int64("cpu-quota")
		cpu().Quota = &v
	}
	if c.IsSet("cpu-period") {
		v := c.Uint64("cpu-period")
		cpu().Period = &v
	}
	if c.IsSet("cpu-share") {
		v := c.Uint64("cpu-share")
		cpu().Shares = &v
	}
	if c.IsSet("cpuset-cpus") {
		cpu().Cpus = c.String("cpuset-cpus")
	}
	if c.IsSet("cpuset-mems") {
		cpu().Mems = c.String("cpuset-mems")
	}
	if c.IsSet("pids-limit") {
		v := c.Int64("pids-limit")
		res.Pids = &specs.LinuxPids{Limit: &v}
	}
	return res, nil
}
