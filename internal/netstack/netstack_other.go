//go:build !linux

package netstack

import (
	"context"
	"log/slog"
	"os"
)

// Check reports that private networking needs Linux.
func Check() error {
	return &unavailableError{cause: "user-mode networking needs Linux", fix: "run on Linux"}
}

// Attach reports that private networking needs Linux.
func Attach(ctx context.Context, pid int, opts Options) (*Stack, error) {
	return nil, Check()
}

// KeeperRole is the re-exec role of the process that keeps pasta.
const KeeperRole = "netkeeper"

// KeeperMain exits: there is no keeper outside Linux.
func KeeperMain() { os.Exit(125) }

// SweepAPIDirs has nothing to remove outside Linux.
func SweepAPIDirs(log *slog.Logger) []string { return nil }
