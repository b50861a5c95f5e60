package apiserver

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/beamhop/lightbox"
)

// An interactive exec ("stdinStream": true on sandbox.exec or
// sandbox.shell) has a stdin the client feeds while it runs, with
// exec.input requests naming the exec's id; exec.resize changes its
// terminal ("tty": true) and exec.signal signals it. Each line is
// answered from its own goroutine, so these would race one another: a
// turn, taken in the order the lines were read, keeps them in order
// (and after the exec that they name, which registers its stdin before
// it passes its turn). Nothing here blocks on the command: input is
// queued (up to MaxStdinQueued bytes a command) and the command's
// stdin copy takes it from the queue as the command reads.

// MaxStdinQueued bounds the input queued for one command that it has
// not read yet: past it exec.input is refused (the client waits for the
// command to read, as exec.input's answer says nothing of that, or sends
// smaller pieces later). A line's worth: what one exec.input can carry.
const MaxStdinQueued = MaxRequestLine

// turn orders the handling of the lines read: a line's turn comes once
// the line before it has passed its own. Every line passes its turn
// exactly once (pass is idempotent, and the goroutine that answers a
// line passes it when it returns).
type turn struct {
	prev <-chan struct{} // closed when the previous line passed
	mine chan struct{}
	once sync.Once
}

// take waits for the line's turn; the caller then does what must be in
// order and passes.
func (t *turn) take(ctx context.Context) error {
	select {
	case <-t.prev:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// pass ends the line's turn: at once when the previous line has passed,
// else as soon as it does (never waiting here).
func (t *turn) pass() {
	if t == nil {
		return
	}
	t.once.Do(func() {
		select {
		case <-t.prev:
			close(t.mine)
		default:
			go func() {
				<-t.prev
				close(t.mine)
			}()
		}
	})
}

// ordered reports whether method's lines are handled in their turn
// (after decoding, before anything else; the exec passes its own once
// its stdin is registered).
func ordered(method string) bool {
	switch method {
	case "exec.input", "exec.resize", "exec.signal", "sandbox.exec", "sandbox.shell":
		return true
	}
	return false
}

// interactive is a running exec with stdinStream, by id as sent.
type interactive struct {
	name    string // the sandbox's, for messages
	tty     bool
	b64     bool // the exec's encoding: exec.input's default
	in      *stdinQueue
	started chan struct{} // closed once cmd is set, or the start failed (cmd nil)
	cmd     *lightbox.Cmd
}

// stdinQueue is an interactive command's Stdin: what exec.input queued,
// read by the command's stdin copy. Safe for concurrent use.
type stdinQueue struct {
	mu     sync.Mutex
	chunks [][]byte
	queued int
	eof    bool          // the client ended the input (eof: true)
	closed bool          // the command ended: reads return EOF, writes fail
	wake   chan struct{} // signalled when there is something new to read
}

func newStdinQueue() *stdinQueue { return &stdinQueue{wake: make(chan struct{}, 1)} }

var (
	errStdinEnded  = errors.New("its stdin was ended by an earlier exec.input with eof")
	errStdinClosed = errors.New("the command has ended")
)

// add queues b and, when eof, ends the input after it.
func (q *stdinQueue) add(b []byte, eof bool) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
		return errStdinClosed
	case q.eof:
		return errStdinEnded
	case q.queued+len(b) > MaxStdinQueued:
		return fmt.Errorf("%d bytes of stdin wait for the command to read them already; the queue holds %d at most", q.queued, MaxStdinQueued)
	}
	if len(b) > 0 {
		q.chunks = append(q.chunks, b)
		q.queued += len(b)
	}
	q.eof = eof
	select {
	case q.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
	return nil
}

// close ends the queue once the command has ended: its copy's Read
// returns, and what was queued and not read is dropped.
func (q *stdinQueue) close() {
	q.mu.Lock()
	q.closed, q.chunks, q.queued = true, nil, 0
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *stdinQueue) Read(p []byte) (int, error) {
	for {
		q.mu.Lock()
		switch {
		case q.closed:
			q.mu.Unlock()
			return 0, io.EOF
		case len(q.chunks) > 0:
			n := copy(p, q.chunks[0])
			if n == len(q.chunks[0]) {
				q.chunks[0] = nil
				q.chunks = q.chunks[1:]
			} else {
				q.chunks[0] = q.chunks[0][n:]
			}
			q.queued -= n
			q.mu.Unlock()
			return n, nil
		case q.eof:
			q.mu.Unlock()
			return 0, io.EOF
		}
		q.mu.Unlock()
		<-q.wake
	}
}

// register makes the interactive exec of id findable by exec.input and
// co. until unregister.
func (s *Server) register(id json.RawMessage, ix *interactive) error {
	key := string(compactID(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.interactive[key] != nil {
		return invalidParams(fmt.Sprintf("stdinStream: a sandbox.exec of id %s with stdinStream is running already: ids must differ", key))
	}
	s.interactive[key] = ix
	return nil
}

func (s *Server) unregister(id json.RawMessage, ix *interactive) {
	key := string(compactID(id))
	s.mu.Lock()
	if s.interactive[key] == ix {
		delete(s.interactive, key)
	}
	s.mu.Unlock()
}

// findInteractive returns the running interactive exec that method's
// params name by id, or a not_found error saying there is none.
func (s *Server) findInteractive(method string, id json.RawMessage) (*interactive, error) {
	if !validID(id) || len(id) == 0 || string(id) == "null" {
		return nil, invalidParams(method + ": want the id of a running sandbox.exec or sandbox.shell request sent with stdinStream, a string or a number")
	}
	key := string(compactID(id))
	s.mu.Lock()
	ix := s.interactive[key]
	s.mu.Unlock()
	if ix == nil {
		return nil, &requestError{KindNotFound, fmt.Sprintf("%s: no sandbox.exec or sandbox.shell of id %s with stdinStream is running (it was answered already, or never sent, or sent without stdinStream)", method, key)}
	}
	return ix, nil
}

// execControl answers exec.input, exec.resize and exec.signal.
func (s *Server) execControl(ctx context.Context, t *turn, method string, params []byte) (any, error) {
	var id json.RawMessage
	var in struct {
		ID       json.RawMessage `json:"id"`
		Data     string          `json:"data"`
		Encoding string          `json:"encoding"`
		EOF      bool            `json:"eof"`
	}
	var rs struct {
		ID   json.RawMessage `json:"id"`
		Rows uint16          `json:"rows"`
		Cols uint16          `json:"cols"`
	}
	var sg struct {
		ID     json.RawMessage `json:"id"`
		Signal string          `json:"signal"`
	}
	var err error
	switch method {
	case "exec.input":
		err, id = decode(params, &in), in.ID
	case "exec.resize":
		err, id = decode(params, &rs), rs.ID
	default:
		err, id = decode(params, &sg), sg.ID
	}
	if err != nil {
		t.pass()
		return nil, err
	}
	if err := t.take(ctx); err != nil {
		return nil, err
	}
	ix, err := s.findInteractive(method, id)
	if method != "exec.input" || err != nil {
		// resize and signal wait for the start outside the turn
		t.pass()
	}
	if err != nil {
		return nil, err
	}
	switch method {
	case "exec.input":
		defer t.pass()
		b64 := ix.b64
		switch in.Encoding {
		case "":
		case "utf8":
			b64 = false
		case "base64":
			b64 = true
		default:
			return nil, invalidParams(fmt.Sprintf("encoding %q: want utf8 or base64", in.Encoding))
		}
		data := []byte(in.Data)
		if b64 {
			if data, err = base64.StdEncoding.DecodeString(in.Data); err != nil {
				return nil, invalidParams("data: " + err.Error())
			}
		}
		if err := ix.in.add(data, in.EOF); err != nil {
			kind := KindError
			if errors.Is(err, errStdinClosed) {
				kind = KindNotFound
			}
			return nil, &requestError{kind, fmt.Sprintf("exec.input to %s: %v", compactID(id), err)}
		}
		return struct{}{}, nil
	case "exec.resize":
		switch {
		case !ix.tty:
			return nil, invalidParams(fmt.Sprintf("exec.resize: the sandbox.exec of id %s has no terminal (tty)", compactID(id)))
		case rs.Rows == 0 || rs.Cols == 0:
			return nil, invalidParams("exec.resize: want rows and cols, each 1 to 65535")
		}
		c, err := ix.wait(ctx, method, id)
		if err != nil {
			return nil, err
		}
		return struct{}{}, c.Resize(rs.Rows, rs.Cols)
	default: // exec.signal
		sig, err := lightbox.ParseSignal(sg.Signal)
		if err != nil {
			return nil, invalidParams(err.Error())
		}
		c, err := ix.wait(ctx, method, id)
		if err != nil {
			return nil, err
		}
		if err := c.Signal(sig); errors.Is(err, os.ErrProcessDone) {
			return nil, &requestError{KindNotFound, fmt.Sprintf("exec.signal: the command of %s has ended", compactID(id))}
		} else if err != nil {
			return nil, err
		}
		return struct{}{}, nil
	}
}

// wait returns the interactive exec's command once it started.
func (ix *interactive) wait(ctx context.Context, method string, id json.RawMessage) (*lightbox.Cmd, error) {
	select {
	case <-ix.started:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	if ix.cmd == nil {
		return nil, &requestError{KindNotFound, fmt.Sprintf("%s: the command of %s did not start", method, compactID(id))}
	}
	return ix.cmd, nil
}
