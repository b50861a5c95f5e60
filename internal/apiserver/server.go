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
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

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
	// running cancels the requests being answered, by id as sent:
	// request.cancel's way to them.
	running map[string]*running
	// interactive holds the running execs sent with stdinStream, by id
	// as a response spells it: exec.input's way to them (input.go).
	interactive map[string]*interactive

	wmu sync.Mutex // one line at a time: a response, or a notification (stream.go, build.go)
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
	s := &Server{r: r, log: opts.Logger, boxes: map[string]*handle{}, running: map[string]*running{}, interactive: map[string]*interactive{}, out: out}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	reqCtx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	lines := make(chan line)
	readErr := make(chan error, 1)
	// inflight is the size of the request lines being answered; past
	// MaxInFlight the reader waits for answers before it reads on (freed
	// wakes it).
	var inflight atomic.Int64
	freed := make(chan struct{}, 1)
	go func() {
		// The reader may stay blocked after ctx ends (a pipe cannot be
		// interrupted); Serve does not wait for it.
		lr := lineReader{br: bufio.NewReaderSize(in, 64<<10), max: MaxRequestLine}
		for {
			for inflight.Load() > MaxInFlight {
				select {
				case <-freed:
				case <-reqCtx.Done():
					return
				}
			}
			l, err := lr.next()
			if l.tooLong || len(bytes.TrimSpace(l.b)) > 0 {
				// Counted only when it goes to a handler, which
				// releases it: a blank line is never answered.
				inflight.Add(int64(len(l.b)))
				select {
				case lines <- l:
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
	why := errInputEnded
	// last is closed once the last line read passed its turn (input.go).
	last := make(chan struct{})
	close(last)
loop:
	for {
		select {
		case l := <-lines:
			// Tracked before the next line is read, so that a
			// request.cancel sent after it finds it; its id is
			// looked for where a client writes it, before params
			// (else handleLine tracks it once decoded).
			ctx, release, key := reqCtx, func() {}, ""
			if id := idIn(l.b[:min(len(l.b), idPrefix)]); id != nil && !l.tooLong {
				key = string(id)
				ctx, release = s.track(reqCtx, key)
			}
			t := &turn{prev: last, mine: make(chan struct{})}
			last = t.mine
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer t.pass()
				defer release()
				defer func() {
					inflight.Add(-int64(len(l.b)))
					select {
					case freed <- struct{}{}:
					default: // the reader has a wake-up pending already
					}
				}()
				if werr := s.handleLine(ctx, l, key, t); werr != nil {
					cancel(fmt.Errorf("write response: %w", werr))
				}
			}()
		case err = <-readErr:
			if err != nil {
				err = fmt.Errorf("read request: %w", err)
				why = err
			}
			break loop
		case <-reqCtx.Done():
			break loop
		}
	}
	cancel(&shutdownError{why})
	wg.Wait()
	var se *shutdownError
	if c := context.Cause(reqCtx); err == nil && c != nil && ctx.Err() == nil && !errors.As(c, &se) {
		err = c
	}
	return errors.Join(err, s.destroyOwned(context.WithoutCancel(ctx)))
}

// errInputEnded: the client closed the server's input (or exited).
var errInputEnded = errors.New("its input ended")

// errCanceledByClient is the cause of a request's context that
// request.cancel cancelled.
var errCanceledByClient = errors.New("the client cancelled the request (request.cancel)")

// running is a request being answered, for request.cancel.
type running struct{ cancel context.CancelCauseFunc }

// track returns a context for the request of id (as sent) that
// request.cancel cancels until release is called, once it is answered.
func (s *Server) track(ctx context.Context, id string) (_ context.Context, release func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	r := &running{cancel}
	s.mu.Lock()
	s.running[id] = r
	s.mu.Unlock()
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		if s.running[id] == r {
			delete(s.running, id)
		}
		s.mu.Unlock()
	})
	return ctx, func() { cancel(nil) }
}

// cancelRequest cancels the request being answered whose id is id, as
// sent; false when none is (it was answered already, or never sent).
func (s *Server) cancelRequest(id json.RawMessage) bool {
	s.mu.Lock()
	r := s.running[string(id)]
	s.mu.Unlock()
	if r != nil {
		r.cancel(errCanceledByClient)
	}
	return r != nil
}

// shutdownError is the cause Serve cancels requests with at its end;
// when its own context ended first (SIGTERM), that context's cause is
// theirs instead.
type shutdownError struct{ why error }

func (e *shutdownError) Error() string { return "the api server is shutting down: " + e.why.Error() }

// shutdownCause says why ctx, a request's, was cancelled, for its error
// message: the server is shutting down, because its input ended, a
// signal came (the cause of Serve's context) or an answer could not be
// written. Nil when ctx was not cancelled.
func shutdownCause(ctx context.Context) error {
	c := context.Cause(ctx)
	if c == nil || !errors.Is(ctx.Err(), context.Canceled) {
		return nil
	}
	var se *shutdownError
	if errors.As(c, &se) {
		return se
	}
	if errors.Is(c, errCanceledByClient) {
		return nil // not a shutdown: the client asked
	}
	if c == context.Canceled {
		return &shutdownError{errors.New("its context was cancelled")}
	}
	return &shutdownError{c}
}

// MaxRequestLine is the longest request line the server reads, its
// newline aside: 16 MiB, the size of the output a command's result keeps
// (lightbox.OutputLimit), so that a command's stdin can be as large as
// what is kept of another's stdout. Stdin travels inside the request (a
// JSON string), so a line must be able to hold it; larger inputs go
// through a mount or a volume. A longer line is read to its end and
// dropped as it comes, never held (a 300 MiB line once grew the server
// to 640 MB), and answered with an invalid_request error.
const MaxRequestLine = lightbox.OutputLimit

// MaxInFlight bounds the request lines being answered at once, in bytes:
// past it the server reads no further request until answers bring it
// back under (the client's writes wait, as on any full pipe). A request
// holds its line and what decodes from it (a large stdin, twice) until
// it is answered: sixteen 12 MiB requests to slow commands once held
// them all. Four lines of the longest kind; many small requests never
// come near it.
const MaxInFlight = 4 * MaxRequestLine

// idPrefix is how much of a line too long to read is kept: enough to find
// its id, which a client writes before its params (the TypeScript client
// does), so that the error goes to the request that waits for it.
const idPrefix = 4 << 10

// line is one line read: b, or when tooLong the first idPrefix bytes of
// a line longer than MaxRequestLine.
type line struct {
	b       []byte
	tooLong bool
}

// lineReader reads lines of at most max bytes, dropping the rest of a
// longer one. Not safe for concurrent use.
type lineReader struct {
	br  *bufio.Reader
	max int
}

// next returns the next line without its newline; at the end of the
// input, a last line without one and io.EOF.
func (r *lineReader) next() (line, error) {
	var l line
	for {
		chunk, err := r.br.ReadSlice('\n')
		n := len(chunk)
		if err == nil {
			n-- // the newline
		}
		switch {
		case l.tooLong:
			// dropped
		case len(l.b)+n > r.max:
			l.tooLong = true
			if len(l.b) > idPrefix {
				l.b = append([]byte(nil), l.b[:idPrefix]...) // let go of the rest
			} else {
				l.b = append(l.b, chunk[:min(n, idPrefix-len(l.b))]...)
			}
		default:
			l.b = append(l.b, chunk[:n]...)
		}
		if err != bufio.ErrBufferFull {
			return l, err
		}
	}
}

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
	JSONRPC string
	ID      json.RawMessage
	Method  string
	Params  json.RawMessage
}

// envelope is the member names of a request, spelt as JSON-RPC 2.0 does:
// member names are case-sensitive there, and encoding/json's own
// matching of a struct's fields is not ("METHOD" would be the method).
var envelope = [...]string{"jsonrpc", "id", "method", "params"}

// decodeRequest splits a request line into its members, in one pass over
// the line (params, which may carry megabytes of stdin, is kept as it
// is). Members of other names are ignored, as JSON-RPC servers do; a
// member that is one of the envelope's names but for case is an error.
// The id is returned with any error when it was read, so that the
// answer reaches the client waiting on it.
func decodeRequest(line []byte) (request, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return request{}, err
	}
	req := request{ID: m["id"], Params: m["params"]}
	for _, k := range slices.Sorted(maps.Keys(m)) { // the first wrong name in order, whatever the map's
		for _, name := range envelope {
			if k != name && strings.EqualFold(k, name) {
				return req, fmt.Errorf("unknown member %q (did you mean %q?)", k, name)
			}
		}
	}
	if v, ok := m["jsonrpc"]; ok {
		if err := json.Unmarshal(v, &req.JSONRPC); err != nil {
			return req, fmt.Errorf("jsonrpc: %w", err)
		}
	}
	if v, ok := m["method"]; ok {
		if err := json.Unmarshal(v, &req.Method); err != nil {
			return req, fmt.Errorf("method: %w", err)
		}
	}
	return req, nil
}

// handleLine answers one line; it returns only errors writing the answer.
// t is the line's turn (input.go): passed as soon as the request is
// decoded, but by the methods that are ordered().
func (s *Server) handleLine(ctx context.Context, l line, key string, t *turn) error {
	if l.tooLong {
		return s.reply(idIn(l.b), nil, &requestError{KindInvalidRequest, fmt.Sprintf(
			"request line longer than %d bytes, the protocol's limit: pass a larger stdin through a mount or a volume", MaxRequestLine)})
	}
	line := bytes.TrimSpace(l.b)
	if line[0] == '[' {
		return s.reply(nil, nil, &requestError{KindInvalidRequest, "batch requests are not supported: send one request per line"})
	}
	req, err := decodeRequest(line)
	if err != nil {
		if !json.Valid(line) {
			return s.reply(nil, nil, &requestError{KindParseError, "parse request: " + err.Error()})
		}
		// JSON, but no request (a number; a method that is no string;
		// "METHOD"): invalid, answered to its id when it has one, which
		// the client waits on.
		id := req.ID
		if !validID(id) {
			id = nil
		}
		return s.reply(id, nil, &requestError{KindInvalidRequest, "invalid request: " + err.Error()})
	}
	if !ordered(req.Method) {
		t.pass()
	}
	notification := req.ID == nil
	if !validID(req.ID) {
		return s.reply(nil, nil, &requestError{KindInvalidRequest, "invalid request: id " + string(req.ID) + ": want a string, a number or null"})
	}
	if req.JSONRPC != "2.0" || req.Method == "" {
		return s.reply(req.ID, nil, &requestError{KindInvalidRequest, `invalid request: want "jsonrpc": "2.0" and a method`})
	}
	if !notification && key == "" {
		// Its id came after its params: tracked from here on.
		var release func()
		ctx, release = s.track(ctx, string(req.ID))
		defer release()
	}
	res, err := s.call(ctx, t, req.ID, req.Method, req.Params)
	if errors.Is(context.Cause(ctx), errCanceledByClient) && errors.Is(err, context.Canceled) && !errors.Is(err, errCanceledByClient) {
		err = fmt.Errorf("%w: %w", errCanceledByClient, err)
	}
	var se *shutdownError
	if why := shutdownCause(ctx); why != nil && errors.Is(err, context.Canceled) && !errors.As(err, &se) {
		err = fmt.Errorf("%w: %w", why, err) // not a bare "context canceled"
	}
	if notification {
		if err != nil {
			s.log.Debug("api: notification failed", "method", req.Method, "err", err)
		}
		return nil
	}
	return s.reply(req.ID, res, err)
}

// idIn returns the id of the request that starts with prefix, a line
// cut short, when the prefix holds it (before params, or after short
// ones) and it is valid; else nil.
func idIn(prefix []byte) json.RawMessage {
	d := json.NewDecoder(bytes.NewReader(prefix))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	for d.More() {
		key, err := d.Token()
		if err != nil {
			return nil
		}
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return nil
		}
		if key == "id" {
			if rest := bytes.TrimLeft(prefix[d.InputOffset():], " \t\r\n"); len(rest) == 0 || !validID(v) {
				return nil // a number the cut may have shortened, or no id
			}
			return v
		}
	}
	return nil
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

// resultWriter is a result written into its response line from its
// buffers (a command's, or a sandbox's logs), never marshalled whole.
type resultWriter interface{ writeJSON(w *bufio.Writer) }

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
	res, streamed := result.(resultWriter)
	var rpcErr *rpcError
	switch {
	case err != nil:
		rpcErr = toRPCError(err)
	case !streamed:
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
	case streamed:
		_, _ = w.WriteString(`,"result":`)
		res.writeJSON(w)
		_, _ = w.WriteString("}\n")
	default:
		_, _ = w.Write(body)
	}
	return w.Flush()
}

// decode reads params into v, refusing unknown fields (a misspelt option
// is an error, not a silent default) and names that are not spelt as
// documented: encoding/json matches names case-insensitively, so
// "Timeoutms" would set timeoutMs, and a client's typo in the case of a
// name would pass unseen, or (with both spellings) override the other.
func decode(params json.RawMessage, v any) error {
	if len(params) == 0 || string(params) == "null" {
		params = json.RawMessage("{}")
	}
	d := json.NewDecoder(bytes.NewReader(params))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return invalidParams("params: " + err.Error())
	}
	if err := exactNames(params, reflect.TypeOf(v)); err != nil {
		return invalidParams("params: " + err.Error())
	}
	return nil
}

// exactNames checks that each member name in data, JSON that decoded
// into a t, is one of the json names of t's structs as spelt there,
// through the maps, slices and pointers that lead to a struct. It walks
// data itself (valid, as it decoded): a second json.Unmarshal of an
// exec's params would scan its stdin twice more, and did take the time
// of the first decode again.
func exactNames(data []byte, t reflect.Type) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if !hasStruct(t) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		fields := jsonFields(t)
		return eachValue(data, func(name []byte, value []byte) error {
			for _, f := range fields {
				if f.name == string(name) {
					err := exactNames(value, f.typ)
					if e, ok := err.(*nameError); ok {
						e.at = f.name + e.at
					}
					return err
				}
			}
			e := &nameError{name: string(name)}
			for _, f := range fields {
				if strings.EqualFold(f.name, e.name) {
					e.want = f.name
				}
			}
			return e
		})
	case reflect.Map, reflect.Slice, reflect.Array:
		return eachValue(data, func(key []byte, value []byte) error {
			err := exactNames(value, t.Elem())
			if e, ok := err.(*nameError); ok {
				k := string(key)
				if t.Kind() == reflect.Map {
					k = strconv.Quote(k)
				}
				e.at = "[" + k + "]" + e.at
			}
			return err
		})
	}
	return nil
}

// jsonField is a struct field as encoding/json names it.
type jsonField struct {
	name string
	typ  reflect.Type
}

// fieldCache holds each params struct's jsonFields.
var fieldCache sync.Map // reflect.Type → []jsonField

// jsonFields returns the exported fields of t, a struct, with their
// json names (params structs have no embedded fields).
func jsonFields(t reflect.Type) []jsonField {
	if f, ok := fieldCache.Load(t); ok {
		return f.([]jsonField)
	}
	var fields []jsonField
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" {
			name = f.Name
		}
		fields = append(fields, jsonField{name, f.Type})
	}
	fieldCache.Store(t, fields)
	return fields
}

// nameError is a member name that is none of its struct's json names: at
// is where (mounts["/a"]); want, a name it matches but for case.
type nameError struct{ name, at, want string }

func (e *nameError) Error() string {
	msg := fmt.Sprintf("unknown field %q", e.name)
	if e.at != "" {
		msg += " in " + e.at
	}
	if e.want != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", e.want)
	}
	return msg
}

// eachValue calls f with each member of the JSON object data (its name
// and value) or each element of the array data (its index and value);
// null, or a value of another kind, has none. encoding/json splits it
// (data decoded already, so it is valid JSON).
func eachValue(data []byte, f func(key, value []byte) error) error {
	switch v := bytes.TrimLeft(data, " \t\r\n"); {
	case len(v) > 0 && v[0] == '{':
		var m map[string]json.RawMessage
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("malformed params: %w", err)
		}
		for _, k := range slices.Sorted(maps.Keys(m)) { // the first wrong name in order, whatever the map's
			if err := f([]byte(k), m[k]); err != nil {
				return err
			}
		}
	case len(v) > 0 && v[0] == '[':
		var a []json.RawMessage
		if err := json.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("malformed params: %w", err)
		}
		for i, v := range a {
			if err := f(strconv.AppendInt(nil, int64(i), 10), v); err != nil {
				return err
			}
		}
	}
	return nil
}

// hasStruct reports whether t is, or leads through pointers, maps,
// slices and arrays to, a struct with json names to check.
func hasStruct(t reflect.Type) bool {
	for {
		switch t.Kind() {
		case reflect.Struct:
			return t.NumField() > 0
		case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Array:
			t = t.Elem()
		default:
			return false
		}
	}
}
