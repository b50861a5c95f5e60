package snapshot

import (
	"context"
	"log/slog"
	"sync"

	"github.com/apex/log"
	"github.com/opencontainers/umoci/oci/cas"
)

// umoci logs through apex/log's process-wide logger (by default to stderr,
// from Info up: a line per blob walked in a GC). One handler, installed
// the first time a store opens its OCI layout, sends each record to the
// Loggers of the stores that have their layout open at that moment (from
// Store.engine until the engine's Close) — the store doing the work, or
// the few doing work at once, never a store opened earlier that is idle —
// umoci's info and debug records at Debug level, so they never reach a
// user's terminal unasked; with no store at work they are dropped. apex's
// level follows: debug only while a store at work wants debug records.
// (apex/log entries carry no context, hence context.Background below.)
var umociLog struct {
	once   sync.Once
	mu     sync.Mutex
	active map[*slog.Logger]int // open engines per Logger
}

// useUmociLog routes umoci's records to l until the returned func runs.
func useUmociLog(l *slog.Logger) (release func()) {
	umociLog.once.Do(func() { log.SetHandler(log.HandlerFunc(umociRecord)) })
	umociLog.mu.Lock()
	if umociLog.active == nil {
		umociLog.active = map[*slog.Logger]int{}
	}
	umociLog.active[l]++
	setUmociLevel()
	umociLog.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			umociLog.mu.Lock()
			if umociLog.active[l]--; umociLog.active[l] <= 0 {
				delete(umociLog.active, l)
			}
			setUmociLevel()
			umociLog.mu.Unlock()
		})
	}
}

// setUmociLevel asks umoci for debug records (one per tar entry) only when
// a Logger at work wants them. Called with umociLog.mu held.
func setUmociLevel() {
	lvl := log.WarnLevel
	for l := range umociLog.active {
		if l.Enabled(context.Background(), slog.LevelDebug) {
			lvl = log.DebugLevel
			break
		}
	}
	log.SetLevel(lvl)
}

func umociRecord(e *log.Entry) error {
	lvl := slog.LevelDebug
	switch {
	case e.Level >= log.ErrorLevel:
		lvl = slog.LevelError
	case e.Level == log.WarnLevel:
		lvl = slog.LevelWarn
	}
	umociLog.mu.Lock()
	var to []*slog.Logger
	for l := range umociLog.active {
		if l.Enabled(context.Background(), lvl) {
			to = append(to, l)
		}
	}
	umociLog.mu.Unlock()
	if len(to) == 0 {
		return nil
	}
	attrs := []any{"source", "umoci"}
	for k, v := range e.Fields {
		attrs = append(attrs, k, v)
	}
	for _, l := range to {
		l.Log(context.Background(), lvl, e.Message, attrs...)
	}
	return nil
}

// loggedEngine is a CAS engine whose Close stops routing umoci's records
// to its store's Logger.
type loggedEngine struct {
	cas.Engine
	release func()
}

func (e loggedEngine) Close() error {
	defer e.release()
	return e.Engine.Close()
}
