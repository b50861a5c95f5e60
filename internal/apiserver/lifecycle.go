package apiserver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/beamhop/lightbox"
)

// A sandbox's main command and life after launch, by name: sandbox.wait
// (its exit status), sandbox.logs (its output, kept on disk, followed as
// logs.output notifications), sandbox.inspect, sandbox.remove (as
// `lightbox rm [-f]`, for any sandbox of the store, a detached one too)
// and server.gc (`lightbox gc` on the server's store).

type waitParams struct {
	Name      string `json:"name"`
	TimeoutMs int64  `json:"timeoutMs"` // 0 = no limit
}

// waitResult is sandbox.wait's answer.
type waitResult struct {
	// ExitCode is the main command's status, 128+N when signal N killed
	// it (Sandbox.Wait).
	ExitCode int `json:"exitCode"`
}

// wait waits for the main command of the sandbox (Sandbox.Wait), at most
// timeoutMs. A wait that ends first (its timeoutMs, request.cancel, the
// server's end) is a canceled error and leaves the sandbox as it is.
func (s *Server) wait(ctx context.Context, params []byte) (any, error) {
	var p waitParams
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	if p.TimeoutMs < 0 {
		return nil, invalidParams("timeoutMs is negative")
	}
	h, err := s.handle(ctx, p.Name)
	if err != nil {
		return nil, err
	}
	if p.TimeoutMs > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(p.TimeoutMs)*time.Millisecond)
		defer cancel()
	}
	code, err := h.sb.Wait(ctx)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil, fmt.Errorf("wait for sandbox %s: stopped waiting as %w (the sandbox runs on): %w", h.sb.Name(), whyEnded(ctx, p.TimeoutMs), err)
		}
		return nil, err
	}
	return waitResult{ExitCode: code}, nil
}

// whyEnded says why ctx, a request's, ended: its timeoutMs passed, the
// client cancelled it, or the server is shutting down.
func whyEnded(ctx context.Context, timeoutMs int64) error {
	switch {
	case timeoutMs > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("timeoutMs (%d) passed", timeoutMs)
	case errors.Is(context.Cause(ctx), errCanceledByClient):
		return errCanceledByClient
	}
	if why := shutdownCause(ctx); why != nil {
		return why
	}
	return errors.New("its request ended")
}

type logsParams struct {
	Name     string `json:"name"`
	Follow   bool   `json:"follow"`
	Encoding string `json:"encoding"` // "utf8" (default) or "base64"
}

// logs answers with the output of the sandbox's main command kept on disk
// (Sandbox.Logs): the newest lightbox.OutputLimit bytes of each stream.
// With follow it sends the output as logs.output notifications, what is
// there first and then as the command writes it, until the sandbox stops
// running (its main command ended, or it was removed), and then answers
// as without follow. A follow that ends first (request.cancel, the
// server's end) is a canceled error; its notifications carried the
// output until then.
func (s *Server) logs(ctx context.Context, id json.RawMessage, params []byte) (ret any, err error) {
	var p logsParams
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	b64 := false
	switch p.Encoding {
	case "", "utf8":
	case "base64":
		b64 = true
	default:
		return nil, invalidParams(fmt.Sprintf("encoding %q: want utf8 or base64", p.Encoding))
	}
	if p.Follow && id == nil {
		return nil, invalidParams("follow: a notification (a request without id) has no id to send the output under")
	}
	h, err := s.handle(ctx, p.Name)
	if err != nil {
		return nil, err
	}
	res := &logsResult{b64: b64}
	stdout, stderr := &res.stdout, &res.stderr
	if !p.Follow {
		if err := h.sb.Logs(ctx, stdout, stderr, false); err != nil {
			return nil, err
		}
		return res, nil
	}
	so, se := newLogsStream(s, id, "stdout", b64, stdout), newLogsStream(s, id, "stderr", b64, stderr)
	defer func() {
		// Logs has returned: nothing writes any more, and what the
		// streams held back goes before the response.
		if ferr := errors.Join(so.finish(), se.finish()); ferr != nil && err == nil {
			ret, err = nil, fmt.Errorf("write logs.output: %w", ferr)
		}
	}()
	if err := h.sb.Logs(ctx, so, se, true); err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil, fmt.Errorf("follow the logs of sandbox %s: stopped as %w (the sandbox runs on): %w", h.sb.Name(), whyEnded(ctx, 0), err)
		}
		return nil, err
	}
	return res, nil
}

// newLogsStream is a Writer for Sandbox.Logs that keeps what it is given
// in keep and sends it as logs.output notifications of the request id,
// spelt as exec.output's (stream.go):
//
//	{"jsonrpc":"2.0","method":"logs.output","params":{"id":ID,"stream":"stdout","data":"…"}}
func newLogsStream(s *Server, id json.RawMessage, stream string, b64 bool, keep *tailBuffer) *outputStream {
	idJSON, err := json.Marshal(id) // compacted, as the response spells it
	if err != nil {
		idJSON = []byte("null")
	}
	prefix := append([]byte(`{"jsonrpc":"2.0","method":"logs.output","params":{"id":`), idJSON...)
	prefix = append(prefix, `,"stream":"`+stream+`","data":"`...)
	return &outputStream{s: s, prefix: prefix, b64: b64, keep: keep}
}

// logsResult is sandbox.logs' answer: {stdout, stderr, encoding?,
// stdoutDropped?, stderrDropped?}, written from its buffers (writeJSON).
type logsResult struct {
	stdout, stderr tailBuffer
	b64            bool
}

func (r *logsResult) writeJSON(w *bufio.Writer) {
	out, outDropped := r.stdout.tail(r.b64)
	errs, errDropped := r.stderr.tail(r.b64)
	_, _ = w.WriteString(`{"stdout":`) // a bufio.Writer's error sticks: Flush returns it
	writeStream(w, out, r.b64)
	_, _ = w.WriteString(`,"stderr":`)
	writeStream(w, errs, r.b64)
	if r.b64 {
		_, _ = w.WriteString(`,"encoding":"base64"`)
	}
	if outDropped > 0 {
		_, _ = w.WriteString(`,"stdoutDropped":` + strconv.FormatInt(outDropped, 10))
	}
	if errDropped > 0 {
		_, _ = w.WriteString(`,"stderrDropped":` + strconv.FormatInt(errDropped, 10))
	}
	_ = w.WriteByte('}')
}

// tailBuffer keeps the newest lightbox.OutputLimit bytes written to it
// (logs keep the newest output, as the sandbox's log files do when
// capped). It holds up to twice that between moves, so that a long log
// copied in small writes is not moved at each.
type tailBuffer struct {
	buf   []byte
	total int64
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	const limit = lightbox.OutputLimit
	b.total += int64(len(p))
	switch {
	case len(p) >= limit:
		b.buf = append(b.buf[:0], p[len(p)-limit:]...)
	case len(b.buf)+len(p) > 2*limit:
		n := copy(b.buf, b.buf[len(b.buf)-(limit-len(p)):])
		b.buf = append(b.buf[:n], p...)
	default:
		b.buf = append(b.buf, p...)
	}
	return len(p), nil
}

// tail returns the newest OutputLimit bytes and how many older ones were
// left out. As text (not b64) it starts at a character's start: the
// bytes of one the cut went through are left out too, rather than shown
// as U+FFFD.
func (b *tailBuffer) tail(b64 bool) ([]byte, int64) {
	t := b.buf
	if len(t) > lightbox.OutputLimit {
		t = t[len(t)-lightbox.OutputLimit:]
	}
	if !b64 && int64(len(t)) < b.total {
		for i := 0; i < utf8.UTFMax-1 && len(t) > 0 && !utf8.RuneStart(t[0]); i++ {
			t = t[1:]
		}
	}
	return t, b.total - int64(len(t))
}

// inspect describes the sandbox (Runtime.InspectSandbox) without
// attaching to it.
func (s *Server) inspect(ctx context.Context, params []byte) (any, error) {
	var p nameParams
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	if p.Name == "" {
		return nil, invalidParams("params: no sandbox name")
	}
	return s.r.InspectSandbox(ctx, p.Name)
}

type removeParams struct {
	Name  string `json:"name"`
	Force bool   `json:"force"`
	// TimeoutMs is the grace after the stop signal before SIGKILL,
	// as sandbox.stop's: default 10000, 0 = SIGKILL at once.
	TimeoutMs *int64 `json:"timeoutMs"`
}

// remove removes the sandbox of that name, any in the store (one this
// server launched, one it attached to, a detached one): as `lightbox rm`,
// a running one is in_use unless force, which stops it first
// (Runtime.RemoveSandbox). Once begun it finishes, as sandbox.destroy
// does, even when the server is shutting down.
func (s *Server) remove(ctx context.Context, params []byte) (any, error) {
	var p removeParams
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	if p.Name == "" {
		return nil, invalidParams("params: no sandbox name")
	}
	grace := 10 * time.Second
	if p.TimeoutMs != nil {
		if *p.TimeoutMs < 0 {
			return nil, invalidParams("timeoutMs is negative")
		}
		// RemoveSandboxOptions reads 0 as its default: the shortest
		// grace there is asks for SIGKILL at once (as `lightbox rm -t 0`).
		grace = max(time.Duration(*p.TimeoutMs)*time.Millisecond, time.Nanosecond)
	}
	ctx = context.WithoutCancel(ctx)
	if err := s.r.RemoveSandbox(ctx, p.Name, lightbox.RemoveSandboxOptions{Force: p.Force, Grace: grace}); err != nil {
		return nil, err
	}
	s.mu.Lock()
	h := s.boxes[p.Name]
	delete(s.boxes, p.Name) // its handle, if held, names a sandbox that is gone
	s.mu.Unlock()
	if h != nil && h.owned {
		// What the launching handle holds (the liveness pipe) goes with
		// its Destroy, which finds the sandbox gone: at once, not when
		// the collector finalizes the dropped handle. Best effort: the
		// sandbox is removed either way.
		_ = h.sb.Destroy(ctx)
	}
	return struct{}{}, nil
}

// gc runs the garbage collector on the server's store (Runtime.Collect,
// `lightbox gc`) and answers with what it removed: {sandboxes, disks,
// layers, inits}, each a list, empty when nothing.
func (s *Server) gc(ctx context.Context, params []byte) (any, error) {
	if err := decode(params, &struct{}{}); err != nil {
		return nil, err
	}
	c, err := s.r.Collect(ctx)
	if err != nil {
		return nil, err
	}
	for _, l := range []*[]string{&c.Sandboxes, &c.Disks, &c.Layers, &c.Inits} {
		if *l == nil {
			*l = []string{}
		}
	}
	return c, nil
}
