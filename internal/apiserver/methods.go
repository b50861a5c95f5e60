package apiserver

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/beamhop/lightbox"
	"github.com/beamhop/lightbox/snapshot"
)

// call runs one method for the request of id (as sent; nil for a
// notification). The methods that are ordered() pass t, the line's turn.
func (s *Server) call(ctx context.Context, t *turn, id json.RawMessage, method string, params []byte) (any, error) {
	switch method {
	case "exec.input", "exec.resize", "exec.signal":
		return s.execControl(ctx, t, method, params)
	case "server.version":
		if err := decode(params, &struct{}{}); err != nil {
			return nil, err
		}
		return map[string]any{"version": lightbox.Version, "protocol": ProtocolVersion, "root": s.r.Root()}, nil
	case "request.cancel":
		var p struct {
			ID json.RawMessage `json:"id"`
		}
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		if !validID(p.ID) || len(p.ID) == 0 || string(p.ID) == "null" {
			return nil, invalidParams("request.cancel: want the id of a request, a string or a number")
		}
		return map[string]bool{"canceled": s.cancelRequest(p.ID)}, nil
	case "sandbox.launch":
		return s.launch(ctx, params)
	case "sandbox.prewarm":
		return s.prewarm(ctx, params)
	case "sandbox.attach":
		var p nameParams
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		h, err := s.handle(ctx, p.Name)
		if err != nil {
			return nil, err
		}
		return sandboxRef{Name: h.sb.Name()}, nil
	case "sandbox.exec", "sandbox.shell":
		return s.exec(ctx, t, id, method == "sandbox.shell", params)
	case "sandbox.detach":
		return s.detach(ctx, params)
	case "sandbox.destroy":
		return s.destroy(ctx, params)
	case "sandbox.signal":
		var p struct {
			Name   string `json:"name"`
			Signal string `json:"signal"`
		}
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		sig, err := lightbox.ParseSignal(p.Signal)
		if err != nil {
			return nil, invalidParams(err.Error())
		}
		h, err := s.handle(ctx, p.Name)
		if err != nil {
			return nil, err
		}
		return struct{}{}, h.sb.Signal(ctx, sig)
	case "sandbox.commit":
		var p struct {
			Name     string `json:"name"`
			Snapshot string `json:"snapshot"`
			Replace  bool   `json:"replace"`
		}
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		if p.Snapshot == "" {
			return nil, invalidParams("sandbox.commit: no snapshot name")
		}
		h, err := s.handle(ctx, p.Name)
		if err != nil {
			return nil, err
		}
		return h.sb.CommitWith(ctx, p.Snapshot, lightbox.CommitOptions{Replace: p.Replace})
	case "sandbox.stop":
		var p struct {
			Name      string `json:"name"`
			TimeoutMs *int64 `json:"timeoutMs"`
		}
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		grace := 10 * time.Second
		if p.TimeoutMs != nil {
			if *p.TimeoutMs < 0 {
				return nil, invalidParams("timeoutMs is negative")
			}
			grace = time.Duration(*p.TimeoutMs) * time.Millisecond
		}
		h, err := s.handle(ctx, p.Name)
		if err != nil {
			return nil, err
		}
		return struct{}{}, h.sb.Stop(ctx, grace)
	case "sandbox.wait":
		return s.wait(ctx, params)
	case "sandbox.logs":
		return s.logs(ctx, id, params)
	case "sandbox.inspect":
		return s.inspect(ctx, params)
	case "sandbox.remove":
		return s.remove(ctx, params)
	case "server.gc":
		return s.gc(ctx, params)
	case "sandbox.list":
		if err := decode(params, &struct{}{}); err != nil {
			return nil, err
		}
		list, err := s.r.ListSandboxes(ctx)
		if list == nil && err == nil {
			list = []lightbox.SandboxInfo{}
		}
		return list, err
	case "volume.ensure":
		var p struct {
			Name     string            `json:"name"`
			QuotaMiB int64             `json:"quotaMiB"`
			Labels   map[string]string `json:"labels"`
		}
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		return s.r.EnsureVolume(ctx, p.Name, lightbox.VolumeOptions{QuotaMiB: p.QuotaMiB, Labels: p.Labels})
	case "volume.list":
		if err := decode(params, &struct{}{}); err != nil {
			return nil, err
		}
		list, err := s.r.ListVolumesWith(ctx, lightbox.ListVolumesOptions{Size: true})
		if list == nil && err == nil {
			list = []lightbox.Volume{}
		}
		return list, err
	case "volume.remove":
		var p nameParams
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		return struct{}{}, s.r.RemoveVolume(ctx, p.Name)
	case "snapshot.list":
		if err := decode(params, &struct{}{}); err != nil {
			return nil, err
		}
		list, err := s.r.ListSnapshots(ctx)
		if list == nil && err == nil {
			list = []lightbox.Snapshot{}
		}
		return list, err
	case "snapshot.import":
		var p struct {
			Name    string `json:"name"`
			Source  string `json:"source"`
			Format  string `json:"format"`
			Replace bool   `json:"replace"`
		}
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		if p.Source == "" {
			return nil, invalidParams("snapshot.import: no source")
		}
		if p.Format != "" && !slices.Contains(snapshot.Formats, p.Format) {
			return nil, invalidParams(fmt.Sprintf("format %q: want one of %s", p.Format, strings.Join(snapshot.Formats, ", ")))
		}
		return s.r.ImportSnapshot(ctx, p.Name, p.Source, lightbox.ImportOptions{Format: p.Format, Replace: p.Replace})
	case "snapshot.build":
		return s.build(ctx, id, params)
	case "snapshot.inspect":
		var p nameParams
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		return s.r.InspectSnapshot(ctx, p.Name)
	case "snapshot.export":
		var p struct {
			Name        string `json:"name"`
			Destination string `json:"destination"`
			Format      string `json:"format"`
			Tag         string `json:"tag"`
		}
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		if p.Destination == "" {
			return nil, invalidParams("snapshot.export: no destination")
		}
		if p.Format != "" && !slices.Contains(exportFormats, p.Format) {
			return nil, invalidParams(fmt.Sprintf("format %q: want one of %s", p.Format, strings.Join(exportFormats, ", ")))
		}
		return struct{}{}, s.r.ExportSnapshot(ctx, p.Name, p.Destination, lightbox.ExportOptions{Format: p.Format, Tag: p.Tag})
	case "snapshot.remove":
		var p nameParams
		if err := decode(params, &p); err != nil {
			return nil, err
		}
		return struct{}{}, s.r.RemoveSnapshot(ctx, p.Name)
	}
	return nil, &requestError{KindMethodNotFound, fmt.Sprintf("method %q not found", method)}
}

type nameParams struct {
	Name string `json:"name"`
}

// sandboxRef is what launch and attach return.
type sandboxRef struct {
	Name string `json:"name"`
}

// mountParams is one entry of launch's mounts: exactly one of source
// (an absolute host path; a relative one is taken from the server's
// working directory) and volume; noCopy keeps a new volume empty
// (lightbox.Mount.NoCopy).
type mountParams struct {
	Source   string `json:"source,omitempty"`
	Volume   string `json:"volume,omitempty"`
	ReadOnly bool   `json:"readOnly,omitempty"`
	Overlay  bool   `json:"overlay,omitempty"`
	NoCopy   bool   `json:"noCopy,omitempty"`
}

// toMounts is mounts as SandboxOptions and BuildOptions have them (nil
// for none).
func toMounts(mounts map[string]mountParams) map[string]lightbox.Mount {
	if len(mounts) == 0 {
		return nil
	}
	out := make(map[string]lightbox.Mount, len(mounts))
	for target, m := range mounts {
		out[target] = lightbox.Mount{Source: m.Source, Volume: m.Volume, ReadOnly: m.ReadOnly, Overlay: m.Overlay, NoCopy: m.NoCopy}
	}
	return out
}

// resourcesParams are lightbox.Resources, its fields' JSON names.
type resourcesParams struct {
	MemoryMiB     int64   `json:"memoryMiB"`
	MemorySwapMiB int64   `json:"memorySwapMiB"`
	CPUs          float64 `json:"cpus"`
	PidsLimit     int64   `json:"pidsLimit"`
	ShmMiB        int64   `json:"shmMiB"`
	LogMiB        int64   `json:"logMiB"`
}

type launchParams struct {
	Snapshot            string                 `json:"snapshot"`
	Name                string                 `json:"name"`
	Mounts              map[string]mountParams `json:"mounts"`
	Workdir             string                 `json:"workdir"`
	Env                 []string               `json:"env"`
	User                string                 `json:"user"`
	Command             []string               `json:"command"`
	Network             string                 `json:"network"`
	Ports               []string               `json:"ports"`
	TimeoutMs           int64                  `json:"timeoutMs"`
	DiskMiB             int64                  `json:"diskMiB"`
	AllowUserNamespaces bool                   `json:"allowUserNamespaces"`
	StopSignal          string                 `json:"stopSignal"`
	Resources           resourcesParams        `json:"resources"`
}

func (s *Server) launch(ctx context.Context, params []byte) (any, error) {
	var p launchParams
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	if p.TimeoutMs < 0 {
		return nil, invalidParams("timeoutMs is negative")
	}
	opts := lightbox.SandboxOptions{
		Snapshot: p.Snapshot, Name: p.Name, Workdir: p.Workdir, Env: p.Env, User: p.User,
		Command: p.Command, Network: lightbox.Network(p.Network), Ports: p.Ports,
		Timeout: time.Duration(p.TimeoutMs) * time.Millisecond, DiskMiB: p.DiskMiB,
		AllowUserNamespaces: p.AllowUserNamespaces, Resources: p.Resources.resources(),
	}
	if err := setStopSignal(&opts, p.StopSignal); err != nil {
		return nil, err
	}
	opts.Mounts = toMounts(p.Mounts)
	sb, err := s.r.LaunchSandbox(ctx, opts)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.boxes[sb.Name()] = &handle{sb: sb, owned: true}
	s.mu.Unlock()
	return sandboxRef{Name: sb.Name()}, nil
}

// prewarmParams are the options lightbox.PrewarmSandboxes takes, as
// sandbox.launch spells them; n is required.
type prewarmParams struct {
	Snapshot            string          `json:"snapshot"`
	N                   *int            `json:"n"`
	Network             string          `json:"network"`
	DiskMiB             int64           `json:"diskMiB"`
	AllowUserNamespaces bool            `json:"allowUserNamespaces"`
	StopSignal          string          `json:"stopSignal"`
	Resources           resourcesParams `json:"resources"`
}

// takeOnly are sandbox.launch's params that a take applies (or that make
// a launch cold): a pool is not made with them, so sandbox.prewarm
// refuses them by name rather than as unknown.
var takeOnly = []string{"command", "env", "mounts", "name", "ports", "timeoutMs", "user", "workdir"}

// prewarm keeps n sandboxes ready for the sandbox.launch requests whose
// snapshot, network, resources, diskMiB, allowUserNamespaces and
// stopSignal are these (Runtime.PrewarmSandboxes): n is the pool's size,
// not a number to add, so a second call with a smaller n destroys the
// surplus and n = 0 empties it. It answers once n are ready. The pool is
// the Runtime's: it ends when the Runtime is closed (cmd/lightbox closes
// it after Serve returns), and its sandboxes die with the process.
func (s *Server) prewarm(ctx context.Context, params []byte) (any, error) {
	var raw map[string]json.RawMessage
	if json.Unmarshal(params, &raw) == nil {
		for _, k := range takeOnly {
			if _, ok := raw[k]; ok {
				return nil, invalidParams(fmt.Sprintf("sandbox.prewarm: %s belongs to the sandbox.launch that takes a pooled sandbox, not to the pool", k))
			}
		}
	}
	var p prewarmParams
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	switch {
	case p.N == nil:
		return nil, invalidParams("sandbox.prewarm: no n (how many sandboxes to keep ready; 0 empties the pool)")
	case *p.N < 0:
		return nil, invalidParams(fmt.Sprintf("sandbox.prewarm: n is %d, want 0 or more", *p.N))
	case p.Snapshot == "":
		return nil, invalidParams("sandbox.prewarm: no snapshot")
	}
	opts := lightbox.SandboxOptions{
		Snapshot: p.Snapshot, Network: lightbox.Network(p.Network), DiskMiB: p.DiskMiB,
		AllowUserNamespaces: p.AllowUserNamespaces, Resources: p.Resources.resources(),
	}
	if err := setStopSignal(&opts, p.StopSignal); err != nil {
		return nil, err
	}
	return struct{}{}, s.r.PrewarmSandboxes(ctx, opts, *p.N)
}

// setStopSignal sets opts.StopSignal from its protocol spelling ("SIGINT",
// "15"; "" leaves the default).
func setStopSignal(opts *lightbox.SandboxOptions, name string) error {
	if name == "" {
		return nil
	}
	sig, err := lightbox.ParseSignal(name)
	if err != nil {
		return invalidParams("stopSignal: " + err.Error())
	}
	opts.StopSignal = sig
	return nil
}

func (p resourcesParams) resources() lightbox.Resources {
	return lightbox.Resources{
		MemoryMiB: p.MemoryMiB, MemorySwapMiB: p.MemorySwapMiB, CPUs: p.CPUs,
		PidsLimit: p.PidsLimit, ShmMiB: p.ShmMiB, LogMiB: p.LogMiB,
	}
}

// handle returns the server's handle on name, attaching when it has none.
func (s *Server) handle(ctx context.Context, name string) (*handle, error) {
	if name == "" {
		return nil, invalidParams("params: no sandbox name")
	}
	s.mu.Lock()
	h := s.boxes[name]
	s.mu.Unlock()
	if h != nil {
		return h, nil
	}
	sb, err := s.r.AttachSandbox(ctx, name)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.boxes[name]; h != nil {
		return h, nil // another request attached (or launched) meanwhile
	}
	h = &handle{sb: sb}
	s.boxes[name] = h
	return h, nil
}

func (s *Server) detach(ctx context.Context, params []byte) (any, error) {
	var p nameParams
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	h, err := s.handle(ctx, p.Name)
	if err != nil {
		return nil, err
	}
	if err := h.sb.Detach(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	h.owned = false
	s.mu.Unlock()
	return struct{}{}, nil
}

func (s *Server) destroy(ctx context.Context, params []byte) (any, error) {
	var p nameParams
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	h, err := s.handle(ctx, p.Name)
	if err != nil {
		return nil, err
	}
	// A destroy outlives its request: once begun it finishes even when
	// the server is shutting down.
	if err := h.sb.Destroy(context.WithoutCancel(ctx)); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.boxes[p.Name] == h {
		delete(s.boxes, p.Name)
	}
	s.mu.Unlock()
	return struct{}{}, nil
}

type execParams struct {
	Name      string   `json:"name"`
	Path      string   `json:"path"`   // sandbox.exec
	Args      []string `json:"args"`   // sandbox.exec
	Script    string   `json:"script"` // sandbox.shell
	Env       []string `json:"env"`
	Workdir   string   `json:"workdir"`
	User      string   `json:"user"`
	Stdin     *string  `json:"stdin"`
	Encoding  string   `json:"encoding"` // "utf8" (default) or "base64": of stdin, stdout and stderr
	TimeoutMs int64    `json:"timeoutMs"`
	Stream    bool     `json:"stream"` // exec.output notifications as the command writes (stream.go)
	// StdinStream: stdin is fed by exec.input requests naming this
	// request's id while the command runs (input.go).
	StdinStream bool      `json:"stdinStream"`
	Tty         bool      `json:"tty"`     // a terminal inside the sandbox; output comes as stdout only
	TtySize     *[2]int64 `json:"ttySize"` // [rows, cols], with tty
}

// ExecResult is what sandbox.exec and sandbox.shell return, and what the
// data of an exit or output_truncated error carries: {exitCode, signal?,
// stdout, stderr, encoding?}. Its streams are written into the response
// line from the output buffers (writeJSON), never copied whole.
type ExecResult struct {
	ExitCode int
	Signal   int
	stdout   []byte
	stderr   []byte
	b64      bool // the streams are base64 ("encoding":"base64"), else UTF-8
}

func (s *Server) exec(ctx context.Context, t *turn, id json.RawMessage, shell bool, params []byte) (ret any, err error) {
	defer t.pass() // registered (stdinStream) or failed
	var p execParams
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	path, args := p.Path, p.Args
	switch {
	case shell && (p.Path != "" || p.Args != nil):
		return nil, invalidParams("sandbox.shell takes a script, not a path and args")
	case shell:
		path, args = "/bin/sh", []string{"-c", p.Script}
	case p.Script != "":
		return nil, invalidParams("sandbox.exec takes a path and args, not a script")
	case path == "":
		return nil, invalidParams("sandbox.exec: no path")
	}
	b64 := false
	switch p.Encoding {
	case "", "utf8":
	case "base64":
		b64 = true
	default:
		return nil, invalidParams(fmt.Sprintf("encoding %q: want utf8 or base64", p.Encoding))
	}
	var stdin io.Reader
	var startHook func(*lightbox.Cmd) // stdinStream: the command has started
	if p.Stdin != nil {
		if b64 {
			data, err := base64.StdEncoding.DecodeString(*p.Stdin)
			if err != nil {
				return nil, invalidParams("stdin: " + err.Error())
			}
			stdin = strings.NewReader(string(data))
		} else {
			stdin = strings.NewReader(*p.Stdin)
		}
	}
	if p.TimeoutMs < 0 {
		return nil, invalidParams("timeoutMs is negative")
	}
	if p.Stream && id == nil {
		return nil, invalidParams("stream: a notification (a request without id) has no id to send the output under")
	}
	var ttySize [2]uint16
	switch {
	case p.TtySize != nil && !p.Tty:
		return nil, invalidParams("ttySize: only with tty")
	case p.TtySize != nil:
		for i, v := range p.TtySize {
			if v < 1 || v > 65535 {
				return nil, invalidParams(fmt.Sprintf("ttySize: want [rows, cols], each 1 to 65535, not %v", *p.TtySize))
			}
			ttySize[i] = uint16(v)
		}
	}
	if p.StdinStream {
		switch {
		case id == nil:
			return nil, invalidParams("stdinStream: a notification (a request without id) has no id for exec.input to name")
		case p.Stdin != nil:
			return nil, invalidParams("stdinStream: stdin is fed by exec.input; leave stdin out")
		}
		ix := &interactive{tty: p.Tty, b64: b64, in: newStdinQueue(), started: make(chan struct{})}
		if err := s.register(id, ix); err != nil {
			return nil, err
		}
		defer s.unregister(id, ix) // before the response: exec.input is not_found once it is read
		defer ix.in.close()
		started := false
		defer func() {
			if !started {
				close(ix.started) // the start failed: ix.cmd is nil
			}
		}()
		t.pass()
		stdin = ix.in
		startHook = func(c *lightbox.Cmd) { ix.cmd, started = c, true; close(ix.started) }
	} else {
		t.pass() // nothing for a later line to find here
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
	var stdout, stderr capBuffer
	c := h.sb.Command(ctx, path, args...)
	c.Env, c.Dir, c.User, c.Stdin = p.Env, p.Workdir, p.User, stdin
	c.Tty, c.TtySize = p.Tty, ttySize
	c.Stdout, c.Stderr = &stdout, &stderr
	if p.Stream {
		so, se := newOutputStream(s, "exec.output", id, "stdout", b64, &stdout), newOutputStream(s, "exec.output", id, "stderr", b64, &stderr)
		c.Stdout, c.Stderr = so, se
		defer func() {
			// Run has returned: every copy is done, and what the
			// streams held back goes before the response.
			if ferr := errors.Join(so.finish(), se.finish()); ferr != nil && err == nil {
				ret, err = nil, fmt.Errorf("write exec.output: %w", ferr)
			}
		}()
	}
	if startHook != nil {
		// Started first, so that exec.resize and exec.signal have
		// the command to act on.
		if err = c.Start(); err == nil {
			startHook(c)
			err = c.Wait()
		}
	} else {
		err = c.Run()
	}
	res := &ExecResult{stdout: stdout.buf, stderr: stderr.buf, b64: b64}
	var ee *lightbox.ExitError
	switch {
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		// Killed as its request ended: the error says why, and carries
		// what it wrote until then (as Sandbox.Exec's Result does).
		res.ExitCode = -1
		why := shutdownCause(ctx)
		if p.TimeoutMs > 0 && errors.Is(err, context.DeadlineExceeded) {
			why = fmt.Errorf("timeoutMs (%d) passed", p.TimeoutMs)
		}
		if errors.Is(context.Cause(ctx), errCanceledByClient) {
			why = errCanceledByClient
		}
		if why == nil {
			why = errors.New("its request ended")
		}
		if stdout.dropped > 0 || stderr.dropped > 0 {
			err = fmt.Errorf("%w (output truncated: kept the first %d bytes per stream)", err, lightbox.OutputLimit)
		}
		return nil, &resultError{res: res, err: fmt.Errorf("sandbox %s: %s: killed as %w: %w", h.sb.Name(), path, why, err)}
	case errors.As(err, &ee):
		res.ExitCode, res.Signal = ee.ExitCode, ee.Signal
		ee.OutputTruncated = stdout.dropped > 0 || stderr.dropped > 0 // the message says so
		return nil, &resultError{err: fmt.Errorf("sandbox %s: %s: %w", h.sb.Name(), path, err), res: res}
	case err != nil:
		return nil, err
	case stdout.dropped > 0 || stderr.dropped > 0:
		return nil, &resultError{res: res, err: fmt.Errorf("sandbox %s: %s: %w: kept %d bytes per stream, dropped %d of stdout and %d of stderr",
			h.sb.Name(), path, errTruncated, lightbox.OutputLimit, stdout.dropped, stderr.dropped)}
	}
	return res, nil
}

// capBuffer keeps the first lightbox.OutputLimit bytes written to it and
// counts the rest, as Sandbox.Exec does.
type capBuffer struct {
	buf     []byte
	dropped int64
}

func (b *capBuffer) Write(p []byte) (int, error) {
	room := lightbox.OutputLimit - len(b.buf)
	if room >= len(p) {
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	if room > 0 {
		b.buf = append(b.buf, p[:room]...)
	}
	b.dropped += int64(len(p) - max(room, 0))
	return len(p), nil
}
