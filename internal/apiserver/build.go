package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/beamhop/lightbox"
)

// A streaming build ("stream": true) sends two kinds of notification
// before its response: build.step as each step starts and ends
//
//	{"jsonrpc":"2.0","method":"build.step","params":{"id":ID,"step":2,"total":3,"instruction":"RUN make","done":false}}
//	{"jsonrpc":"2.0","method":"build.step","params":{"id":ID,"step":2,"total":3,"instruction":"RUN make","done":true,"cached":false,"durationMs":1200,"layerSize":4096}}
//
// and build.output, what a RUN writes, as exec.output carries a
// command's (UTF-8 text), between its step's two build.step.

// buildParams are lightbox.BuildOptions as the protocol spells them.
// Paths (context, dockerfile, a mount's source) are the server's, a
// relative one taken from its working directory.
type buildParams struct {
	Name       string                 `json:"name"`
	Context    string                 `json:"context"`
	Dockerfile string                 `json:"dockerfile"` // BuildOptions.RecipeFile
	Recipe     string                 `json:"recipe"`     // BuildOptions.Recipe: the Dockerfile's text
	BuildArgs  map[string]string      `json:"buildArgs"`
	Target     string                 `json:"target"`
	NoCache    bool                   `json:"noCache"`
	Replace    bool                   `json:"replace"`
	Network    string                 `json:"network"`
	Mounts     map[string]mountParams `json:"mounts"`
	CACerts    string                 `json:"caCerts"`
	TimeoutMs  int64                  `json:"timeoutMs"`
	Stream     bool                   `json:"stream"`
}

// buildStep is a build.step notification's params.
type buildStep struct {
	ID          json.RawMessage `json:"id"`
	Step        int             `json:"step"`
	Total       int             `json:"total"`
	Instruction string          `json:"instruction"`
	Done        bool            `json:"done"`
	Cached      *bool           `json:"cached,omitempty"`     // done only
	DurationMs  *int64          `json:"durationMs,omitempty"` // done only
	LayerSize   *int64          `json:"layerSize,omitempty"`  // done only
}

// build runs snapshot.build: lightbox.Runtime.BuildSnapshot. A RUN that
// fails is an exit error whose data is that step's result (its exit
// status and what it wrote, the step's output alone); cancelled (its
// timeoutMs, request.cancel, the server's end) the build stops, its RUN
// sandbox destroyed and no snapshot made, as any failed build.
func (s *Server) build(ctx context.Context, id json.RawMessage, params []byte) (ret any, err error) {
	var p buildParams
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	switch {
	case p.Name == "":
		return nil, invalidParams("snapshot.build: no name (the snapshot to make)")
	case p.Context == "":
		return nil, invalidParams("snapshot.build: no context (the build context directory)")
	case p.Dockerfile != "" && p.Recipe != "":
		return nil, invalidParams("snapshot.build: dockerfile and recipe both given: one names the Dockerfile, the other is its text")
	case p.TimeoutMs < 0:
		return nil, invalidParams("timeoutMs is negative")
	case p.Stream && id == nil:
		return nil, invalidParams("stream: a notification (a request without id) has no id to send the output under")
	}
	opts := lightbox.BuildOptions{
		Name: p.Name, Context: p.Context, RecipeFile: p.Dockerfile, Recipe: p.Recipe, Args: p.BuildArgs,
		Target: p.Target, NoCache: p.NoCache, Replace: p.Replace, Network: lightbox.Network(p.Network), CACerts: p.CACerts,
	}
	opts.Mounts = toMounts(p.Mounts)
	if p.TimeoutMs > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(p.TimeoutMs)*time.Millisecond)
		defer cancel()
	}
	// The output of the step running, for the error of a RUN that fails:
	// each step starts them again. Written only while a step's command
	// runs, read once it has ended.
	var stdout, stderr capBuffer
	opts.Stdout, opts.Stderr = &stdout, &stderr
	var so, se *outputStream
	if p.Stream {
		so, se = newOutputStream(s, "build.output", id, "stdout", false, &stdout), newOutputStream(s, "build.output", id, "stderr", false, &stderr)
		opts.Stdout, opts.Stderr = so, se
		defer func() {
			// BuildSnapshot has returned: its commands' copies are done.
			if ferr := errors.Join(so.finish(), se.finish()); ferr != nil && err == nil {
				ret, err = nil, fmt.Errorf("write build.output: %w", ferr)
			}
		}()
	}
	var notifyErr error // the first notification that could not be written
	opts.Progress = func(e lightbox.BuildProgress) {
		if !e.Done {
			stdout, stderr = capBuffer{}, capBuffer{}
		}
		if !p.Stream || notifyErr != nil {
			return
		}
		if e.Done {
			// The step's command has ended: a character it left
			// unfinished is not finished by the next step's.
			if notifyErr = errors.Join(so.flush(), se.flush()); notifyErr != nil {
				return
			}
		}
		n := buildStep{ID: id, Step: e.Step, Total: e.Total, Instruction: e.Instruction, Done: e.Done}
		if e.Done {
			ms := e.Duration.Milliseconds()
			n.Cached, n.DurationMs, n.LayerSize = &e.Cached, &ms, &e.LayerSize
		}
		notifyErr = s.notify("build.step", n)
	}
	sn, err := s.r.BuildSnapshot(ctx, opts)
	var ee *lightbox.ExitError
	switch {
	case err != nil && ctx.Err() != nil:
		// Stopped as its request ended (the RUN's command is killed:
		// that is no exit error of the build's).
		why := whyEnded(ctx, p.TimeoutMs)
		return nil, fmt.Errorf("build %s: stopped as %w: %w (%v)", p.Name, why, ctx.Err(), err)
	case errors.As(err, &ee):
		res := &ExecResult{ExitCode: ee.ExitCode, Signal: ee.Signal, stdout: stdout.buf, stderr: stderr.buf}
		return nil, &resultError{err: err, res: res}
	case err != nil:
		return nil, err
	case notifyErr != nil:
		return nil, fmt.Errorf("write build.step: %w", notifyErr)
	}
	return sn, nil
}

// notify writes one notification of method with params v, a line whole.
func (s *Server) notify(method string, v any) error {
	params, err := json.Marshal(v)
	if err != nil {
		return err
	}
	line := append([]byte(`{"jsonrpc":"2.0","method":"`+method+`","params":`), params...)
	line = append(line, "}\n"...)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err = s.out.Write(line)
	return err
}

// exportFormats are the formats snapshot.export writes
// (lightbox.ExportOptions.Format).
var exportFormats = []string{"oci", "oci-archive"}
