package runtime

import (
	"context"
	"fmt"

	"github.com/beamhop/lightbox/nsinit"
)

// resizeMain sets the size of the main command's terminal when the init
// holds it (a main command with Tty whose output goes to the logs), from
// any handle: the launcher's, whose connection may be gone (`run -d -t`),
// or an attached one. A handle that launched the command can also use
// MainCommand().Resize, but while its connection is open the init never
// hands over (nsinit/handover_linux.go).
func (s *Sandbox) resizeMain(ctx context.Context, rows, cols uint16) error {
	if _, err := s.call(ctx, nsinit.Request{Op: nsinit.OpResize, Rows: rows, Cols: cols}); err != nil {
		return fmt.Errorf("resize the main command's terminal in sandbox %s: %w", s.name, err)
	}
	return nil
}
