package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/beamhop/lightbox"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// Exit statuses of lightbox itself, as docker uses them.
const (
	exitFailed        = 125 // lightbox failed
	exitNotExecutable = 126
	exitNotFound      = 127
)

// exitCode carries a status for Main to return without printing.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// Main runs the CLI with args (args[0] is the program name) and returns
// the process's exit status.
func Main(args []string) int {
	if emptyRoot(args[1:]) {
		// `lightbox --root "$STORE" …` with STORE unset would act on the
		// default store (/var/lib/lightbox as root): a script's typo
		// must not. An empty LIGHTBOX_ROOT still means unset.
		fmt.Fprintln(os.Stderr, "lightbox: --root is empty: give a store directory, or leave --root out for the default store")
		return exitFailed
	}
	app := newApp()
	stop := func() {}
	defer func() { stop() }()
	var ctx context.Context
	app.Before = func(c *cli.Context) error {
		stop = cancelOnSignals(c)
		ctx = c.Context
		return nil
	}
	err := app.RunContext(context.Background(), args)
	if err == nil {
		return 0
	}
	var ec exitCode
	if errors.As(err, &ec) {
		return int(ec)
	}
	// Ctrl-C (or SIGTERM) ended the command: what it was making is
	// cleaned up, and it exits as a process that signal ended would to
	// a shell (130, 143), without "context canceled" as if it failed.
	var in interrupted
	if ctx != nil && errors.Is(err, context.Canceled) && errors.As(context.Cause(ctx), &in) {
		return 128 + int(in.sig)
	}
	fmt.Fprintf(os.Stderr, "lightbox: %s\n", errText(err))
	var ce cli.ExitCoder
	if errors.As(err, &ce) {
		return ce.ExitCode()
	}
	return exitFailed
}

// emptyRoot says whether the global flags at the start of args (before
// the command) give --root an empty value.
func emptyRoot(args []string) bool {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") {
			return false
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name != "root" && name != "log-level" {
			continue
		}
		if !hasValue {
			if i+1 >= len(args) {
				return false // urfave/cli says the value is missing
			}
			i++
			value = args[i]
		}
		if name == "root" && value == "" {
			return true
		}
	}
	return false
}

// cancelOnSignals makes SIGINT and SIGTERM cancel the context of the
// command c names, so that what it was making is cleaned up, unless the
// command is one of ownSignals: a first signal.Notify starts the Go
// runtime's signal-mask thread and takes a round trip to it per signal
// (~0.1-0.2 ms at every start; bench/NOTES.md). It returns how to stop.
func cancelOnSignals(c *cli.Context) (stop func()) {
	if ownSignals[c.Args().First()] {
		return func() {}
	}
	// signal.NotifyContext, with the signal as the context's cause.
	ctx, cancel := context.WithCancelCause(c.Context)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			cancel(interrupted{s.(syscall.Signal)})
		case <-done:
		}
	}()
	c.Context = ctx
	return func() {
		signal.Stop(sigs)
		close(done)
		cancel(nil)
	}
}

// interrupted is the cause of a command's context that a signal ended.
type interrupted struct{ sig syscall.Signal }

func (i interrupted) Error() string {
	switch i.sig { // the two cancelOnSignals catches, by the names people send them
	case syscall.SIGTERM:
		return "SIGTERM received"
	case syscall.SIGINT:
		return "SIGINT received"
	}
	return i.sig.String() + " received"
}

// ownSignals are the commands whose context SIGINT and SIGTERM do not
// cancel here: exec and an attached run forward them to their command
// (earlysig, from the process's start), run -d makes its own context
// they cancel, and the others only read, so the signal's default action,
// ending the process, leaves nothing half done.
var ownSignals = map[string]bool{"exec": true, "run": true, "version": true, "ps": true, "inspect": true}

func newApp() *cli.App {
	app := &cli.App{
		Name:                   "lightbox",
		Usage:                  "daemonless, rootless sandboxes over immutable snapshots and named volumes",
		HideHelpCommand:        true,
		UseShortOptionHandling: true,
		// -e NO_PROXY=localhost,127.0.0.1 is one value, as in docker:
		// urfave/cli would split a repeatable flag's value at commas.
		DisableSliceFlagSeparator: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "root", Usage: "store directory", EnvVars: []string{"LIGHTBOX_ROOT"}},
			&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error", Value: "warn"},
			&cli.BoolFlag{Name: "identity-mapping", Usage: "as root, make a new store whose sandboxes' root is the host's root " +
				"instead of a private id range: trades isolation for convenience (=false insists on a private range)"},
		},
		ExitErrHandler: func(*cli.Context, error) {}, // Main prints and picks the status
		Commands: []*cli.Command{
			snapshotCommand(),
			runCommand(),
			execCommand(),
			psCommand(),
			inspectCommand(),
			statsCommand(),
			logsCommand(),
			waitCommand(),
			stopCommand(),
			killCommand(),
			rmCommand(),
			commitCommand(),
			gcCommand(),
			volumeCommand(),
			versionCommand(),
			apiCommand(),
		},
		Action:       unknownCommand,
		OnUsageError: usageError,
	}
	for _, c := range app.Commands {
		strictUsage(c)
	}
	return app
}

// strictUsage makes a bad flag of c, or of any of its subcommands, a
// one-line error on stderr (usageError), and an unknown subcommand an
// error (unknownCommand) rather than urfave/cli's "No help topic" and
// exit status 3.
func strictUsage(c *cli.Command) {
	c.OnUsageError = usageError
	if len(c.Subcommands) > 0 && c.Action == nil {
		c.Action = unknownCommand
	}
	for _, sub := range c.Subcommands {
		strictUsage(sub)
	}
}

// usageError is a bad flag's error, said on stderr as every other error
// (status 125, as docker): urfave/cli's default prints "Incorrect Usage"
// and the command's whole help on stdout, where a script reading the
// command's output takes it for output.
func usageError(c *cli.Context, err error, _ bool) error {
	return fmt.Errorf("%w (%s --help lists the flags)", err, commandPath(c))
}

// commandPath is the command line that names c's command: "lightbox",
// "lightbox run", "lightbox volume create".
func commandPath(c *cli.Context) string {
	var names []string
	for _, x := range c.Lineage() {
		if x.Command != nil && x.Command.Name != "" && x.Command.Name != "lightbox" {
			names = append([]string{x.Command.Name}, names...)
		}
	}
	return strings.Join(append([]string{"lightbox"}, names...), " ")
}

// unknownCommand is the action of the app and of a command with
// subcommands: with no argument it shows the help; with one, that
// argument named no command.
func unknownCommand(c *cli.Context) error {
	if c.NArg() == 0 {
		return cli.ShowSubcommandHelp(c)
	}
	where := commandPath(c)
	return fmt.Errorf("%q is not a %s command (%s --help lists them)", c.Args().First(), where, where)
}

// open opens the store named by --root (or the default).
func open(c *cli.Context) (*lightbox.Runtime, error) { return openWith(c, nil) }

// openWith is open with progress, when not nil, receiving the store's
// transfer reports on a terminal instead of the default bars: a build's
// step bar shows them, so that one renderer owns the terminal.
func openWith(c *cli.Context, progress func(lightbox.TransferProgress)) (*lightbox.Runtime, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := lightbox.Options{
		Root:   c.String("root"),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		opts.Progress = progress
		if progress == nil {
			opts.Progress = newProgressBars(os.Stderr)
		}
	}
	if c.IsSet("identity-mapping") {
		opts.IDMapping = lightbox.IDMappingRange
		if c.Bool("identity-mapping") {
			opts.IDMapping = lightbox.IDMappingIdentity
		}
	}
	return lightbox.Open(opts)
}

// withRuntime wraps an action that needs the store.
func withRuntime(fn func(c *cli.Context, r *lightbox.Runtime) error) cli.ActionFunc {
	return func(c *cli.Context) (err error) {
		r, err := open(c)
		if err != nil {
			return err
		}
		defer func() {
			// Close destroys warm-pool sandboxes (api): one that will not
			// go is reported with the command's result.
			if cerr := r.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}()
		return fn(c, r)
	}
}

func formatFlag() cli.Flag {
	return &cli.StringFlag{Name: "format", Usage: "output format: table or json", Value: "table"}
}

func wantJSON(c *cli.Context) (bool, error) {
	switch f := c.String("format"); f {
	case "", "table":
		return false, nil
	case "json":
		return true, nil
	default:
		return false, fmt.Errorf("--format %q: want table or json", f)
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func needArgs(c *cli.Context, min int, usage string) error {
	if c.NArg() < min {
		return fmt.Errorf("usage: lightbox %s %s", c.Command.FullName(), usage)
	}
	return nil
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version",
		Action: func(c *cli.Context) error {
			fmt.Println("lightbox", lightbox.Version)
			return nil
		},
	}
}

// quietFlag is -q of the commands that print what they removed.
func quietFlag() cli.Flag {
	return &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "do not print what was removed"}
}

// eachName runs do on every NAME argument and prints each name it
// succeeded on (as docker's rm, stop and kill do), unless -q; with --force
// a name that does not exist is not an error (and is not printed).
func eachName(c *cli.Context, do func(name string) error) error {
	if err := needArgs(c, 1, "NAME..."); err != nil {
		return err
	}
	var errs []error
	for _, n := range c.Args().Slice() {
		err := do(n)
		switch {
		case err == nil:
			if !c.Bool("quiet") {
				fmt.Println(n)
			}
		case c.Bool("force") && errors.Is(err, lightbox.ErrNotFound):
		default:
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
