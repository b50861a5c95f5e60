package apiserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"

	"github.com/beamhop/lightbox"
)

// ProtocolVersion is the version of docs/api-protocol.md this server
// speaks; server.version reports it.
const ProtocolVersion = 1

// Options tune Serve.
type Options struct {
	// Logger receives what the server cannot answer to anyone (a
	// sandbox that would not be destroyed at exit); nil discards.
	Logger *slog.Logger
}

// Server answers requests on one Runtime. It is safe for concurrent use:
// Serve answers each request from its own goroutine.
type Server struct {
	r   *lightbox.Runtime
	log *slog.Logger

	mu    sync.Mutex
	boxes map[string]*handle

	wmu sync.Mutex // one response line at a time
	out io.Writer
}

// handle is a sandbox the server holds by name.
type handle struct {
	sb    *lightbox.Sandbox
	owned bool // launched here and not detached: destroyed when Serve ends
}

// Serve answers the newline-delimited JSON-RPC 2.0 requests read from in,
// one response line each on out, until in ends or ctx does. Then it
// waits for the requests being answered (their contexts are cancelled,
// which kills the commands they run), destroys the sandboxes it launched
// and did not detach, and returns the first read or write error (nil at
// a clean end of in).
func Serve(ctx context.Context, r *lightbox.Runtime, in io.Reader, out io.Writer, opts Options) error {
	s := &Server{r: r, log: opts.Logger, boxes: map[string]*handle{}, out: out}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	reqCtx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	lines := make(chan []byte)
	readErr := make(chan error, 1)
	go func() {
		// The reader may stay blocked after ctx ends (a pipe cannot be
		// interrupted); Serve does not wait for it.
		br := bufio.NewReader(in)
		for {
			line, err := br.ReadBytes('\n')
			if len(bytes.TrimSpace(line)) > 0 {
				select {
				case lines <- line:
				case <-reqCtx.Done():
					return
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				readErr <- err
				return
			}
		}
	}()
	var err error
loop:
	for {
		select {
		case line := <-lines:
			wg.Add(1)
			go func() {
				defer wg.Done()
				if werr := s.handleLine(reqCtx, line); werr != nil {
					cancel(fmt.Errorf("write response: %w", werr))
				}
			}()
		case err = <-readErr:
			if err != nil {
				err = fmt.Errorf("read request: %w", err)
			}
			break loop
		case <-reqCtx.Done():
			break loop
		}
	}
	cancel(errShutdown)
	wg.Wait()
	if c := context.Cause(reqCtx); err == nil && c != nil && ctx.Err() == nil && !errors.Is(c, errShutdown) {
		err = c
	}
	return errors.Join(err, s.destroyOwned(context.WithoutCancel(ctx)))
}

// errShutdown is the cause Serve cancels requests with at its end.
var errShutdown = errors.New("api server: shutting down")

// destroyOwned destroys, in parallel, what the server launched and did
// not detach.
func (s *Server) destroyOwned(ctx context.Context) error {
	s.mu.Lock()
	var owned []*handle
	for name, h := range s.boxes {
		if h.owned {
			owned = append(owned, h)
		}
		delete(s.boxes, name)
	}
	s.mu.Unlock()
	errs := make([]error, len(owned))
	var wg sync.WaitGroup
	for i, h := range owned {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.sb.Destroy(ctx); err != nil && !errors.Is(err, lightbox.ErrNotFound) {
				s.log.Warn("api: destroy at exit", "sandbox", h.sb.Name(), "err", err)
				errs[i] = fmt.Errorf("destroy sandbox %s at exit: %w", h.sb.Name(), err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// request is a JSON-RPC 2.0 request or notification.
type request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

// handleLine answers one line; it returns only errors writing the answer.
func (s *Server) handleLine(ctx context.Context, line []byte) error {
	line = bytes.TrimSpace(line)
	if line[0] == '[' {
		return s.reply(nil, nil, &requestError{KindInvalidRequest, "batch requests are not supported: send one request per line"})
	}
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		if !json.Valid(line) {
			return s.reply(nil, nil, &requestError{KindParseError, "parse request: " + err.Error()})
		}
		// JSON, but no request (a number; a method that is no string):
		// invalid, answered to its id when it has one, which the client
		// waits on.
		var idOnly struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal(line, &idOnly) != nil || !validID(idOnly.ID) {
			idOnly.ID = nil
		}
		return s.reply(idOnly.ID, nil, &requestError{KindInvalidRequest, "invalid request: " + err.Error()})
	}
	notification := req.ID == nil
	if !validID(req.ID) {
		return s.reply(nil, nil, &requestError{KindInvalidRequest, "invalid request: id " + string(req.ID) + ": want a string, a number or null"})
	}
	if req.JSONRPC != "2.0" || req.Method == "" {
		return s.reply(req.ID, nil, &requestError{KindInvalidRequest, `invalid request: want "jsonrpc": "2.0" and a method`})
	}
	res, err := s.call(ctx, req.Method, req.Params)
	if notification {
		if err != nil {
			s.log.Debug("api: notification failed", "method", req.Method, "err", err)
		}
		return nil
	}
	return s.reply(req.ID, res, err)
}

// validID reports whether id, as sent, is what JSON-RPC 2.0 allows: left
// out (a notification), a string, a number or null. An object or array
// would come back in the response as sent, and a client matching answers
// by id could not.
func validID(id json.RawMessage) bool {
	if id == nil {
		return true
	}
	switch c := id[0]; {
	case c == '"', c == '-', c >= '0' && c <= '9':
		return true
	default:
		return string(id) == "null"
	}
}

// reply writes one response line. A command's result, the large one,
// is written from its buffers as it is encoded (encode.go); the rest is
// marshalled first.
func (s *Server) reply(id json.RawMessage, result any, err error) error {
	if id == nil {
		id = json.RawMessage("null")
	}
	idJSON, merr := json.Marshal(id) // validated as JSON, compacted
	if merr != nil {
		idJSON = []byte("null")
	}
	var body []byte // the result or error member, when marshalled here
	res, isExec := result.(*ExecResult)
	var rpcErr *rpcError
	switch {
	case err != nil:
		rpcErr = toRPCError(err)
	case !isExec:
		data, merr := json.Marshal(result)
		if merr != nil {
			rpcErr = toRPCError(fmt.Errorf("encode response: %w", merr))
		} else {
			body = append(append([]byte(`,"result":`), data...), '}', '\n')
		}
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	w := bufio.NewWriterSize(s.out, 64<<10)
	_, _ = w.WriteString(`{"jsonrpc":"2.0","id":`) // a bufio.Writer's error sticks: Flush returns it
	_, _ = w.Write(idJSON)
	switch {
	case rpcErr != nil:
		msg, _ := json.Marshal(rpcErr.Message) // a string always marshals
		_, _ = w.WriteString(`,"error":{"code":` + strconv.Itoa(rpcErr.Code) + `,"message":`)
		_, _ = w.Write(msg)
		_, _ = w.WriteString(`,"data":`)
		rpcErr.Data.writeJSON(w)
		_, _ = w.WriteString("}}\n")
	case isExec:
		_, _ = w.WriteString(`,"result":`)
		res.writeJSON(w)
		_, _ = w.WriteString("}\n")
	default:
		_, _ = w.Write(body)
	}
	return w.Flush()
}

// decode reads params into v, refusing unknown fields (a misspelt option
// is an error, not a silent default).
func decode(params json.RawMessage, v any) error {
	if len(params) == 0 || string(params) == "null" {
		params = json.RawMessage("{}")
	}
	d := json.NewDecoder(bytes.NewReader(params))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return invalidParams("params: " + err.Error())
	}
	return nil
}
