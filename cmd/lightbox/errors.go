package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/beamhop/lightbox"
)

// errText is err's message as the CLI shows it: where the library names
// something only root can do (a *lightbox.NeedsRootError), the command
// line root runs for it.
func errText(err error) string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var lines []string
		for _, e := range j.Unwrap() {
			lines = append(lines, errText(e))
		}
		return strings.Join(lines, "\n")
	}
	msg := err.Error()
	var nr *lightbox.NeedsRootError
	if errors.As(err, &nr) && strings.HasSuffix(msg, nr.Error()) {
		msg = strings.TrimSuffix(msg, nr.Error()) + nr.Format(rootCommand(nr.Action))
	}
	return msg
}

// rootCommand is the lightbox command line that does a.
func rootCommand(a lightbox.RootAction) string {
	cmd := "lightbox"
	if a.AdminRoot != "" {
		cmd += " --root " + a.AdminRoot
	}
	if a.Op == lightbox.RootRemove {
		return fmt.Sprintf("%s volume rm --owner %s %s", cmd, a.Owner, a.Volume)
	}
	return fmt.Sprintf("%s volume create --quota-mib %d --owner %s --owner-root %s %s", cmd, a.QuotaMiB, a.Owner, a.OwnerRoot, a.Volume)
}

// replaceHint says, for a snapshot name taken, the flag that replaces
// it (import, build and commit have it).
func replaceHint(err error) error {
	if errors.Is(err, lightbox.ErrExists) {
		return fmt.Errorf("%w (--replace replaces it)", err)
	}
	return err
}
