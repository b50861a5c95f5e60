package main

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/beamhop/lightbox"
	"github.com/beamhop/lightbox/internal/apiserver"
	"github.com/urfave/cli/v2"
)

func apiCommand() *cli.Command {
	return &cli.Command{
		Name:  "api",
		Usage: "serve the API as JSON-RPC 2.0 on stdin and stdout, one message a line (docs/api-protocol.md); at the end of stdin destroy the sandboxes launched here and not detached, and exit",
		Action: withRuntime(func(c *cli.Context, r *lightbox.Runtime) error {
			var level slog.Level
			_ = level.UnmarshalText([]byte(c.String("log-level"))) // open checked it
			// The client may be gone before the last answers are written
			// (killed Node.js): with SIGPIPE notified, a write to its pipe
			// fails with EPIPE instead of killing this process on fd 1 or
			// 2 before it destroys its sandboxes. Notify, not Ignore: an
			// ignored SIGPIPE would be inherited by the sandboxes'
			// processes.
			signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			return apiserver.Serve(c.Context, r, os.Stdin, os.Stdout, apiserver.Options{Logger: log})
		}),
	}
}
