package snapshot

import (
	"context"
	"log/slog"
	"sync"

	"github.com/apex/log"
)

// umoci logs through apex/log's process-wide logger (by default to stderr,
// from Info up: a line per blob walked in a GC). The first Store opened in
// a process routes those records to its Logger, umoci's info and debug
// records at Debug level, so they never reach a user's terminal unasked.
// (apex/log entries carry no context, hence context.Background below.)
var umociLogOnce sync.Once

func routeUmociLog(l *slog.Logger) {
	umociLogOnce.Do(func() {
		// umoci logs a debug record per tar entry: only ask for them when
		// they are wanted.
		if l.Enabled(context.Background(), slog.LevelDebug) {
			log.SetLevel(log.DebugLevel)
		} else {
			log.SetLevel(log.WarnLevel)
		}
		log.SetHandler(log.HandlerFunc(func(e *log.Entry) error {
			lvl := slog.LevelDebug
			switch {
			case e.Level >= log.ErrorLevel:
				lvl = slog.LevelError
			case e.Level == log.WarnLevel:
				lvl = slog.LevelWarn
			}
			if !l.Enabled(context.Background(), lvl) {
				return nil
			}
			attrs := []any{"source", "umoci"}
			for k, v := range e.Fields {
				attrs = append(attrs, k, v)
			}
			l.Log(context.Background(), lvl, e.Message, attrs...)
			return nil
		}))
	})
}
