package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/beamhop/lightbox/internal/environ"
	"github.com/beamhop/lightbox/internal/sys"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// Config is the image configuration a build writes.
type Config struct {
	Env          []string
	WorkingDir   string
	User         string
	Entrypoint   []string
	Cmd          []string
	Labels       map[string]string
	ExposedPorts []string // "80/tcp"
	StopSignal   string   // as written, checked: "SIGINT", "2"
}

func (c Config) clone() Config {
	c.Env, c.Entrypoint, c.Cmd = slices.Clone(c.Env), slices.Clone(c.Entrypoint), slices.Clone(c.Cmd)
	c.ExposedPorts = slices.Clone(c.ExposedPorts)
	c.Labels = maps.Clone(c.Labels)
	return c
}

// Image is a build state as the backend knows it: its ID ("" = scratch)
// and its configuration.
type Image struct {
	ID     string
	Config Config
}

// CommitStep is a step that makes an image from Parent: with Layer (an
// uncompressed layer tar) for COPY, ADD and a WORKDIR that makes its
// directory; without for configuration steps.
type CommitStep struct {
	Parent    string // "" = scratch
	Key       string
	Config    Config // the new image's configuration
	CreatedBy string
	Layer     io.Reader // nil = configuration only
}

// Mount is a RUN --mount.
type Mount struct {
	Type     string // "cache", "bind" or "tmpfs"
	Target   string // absolute, in the sandbox
	ID       string // cache: the cache's id ("" = derived from Target)
	Source   string // bind: absolute host path inside the context
	ReadOnly bool
	Size     int64 // tmpfs: size= in bytes (0 = none)
	// UID, GID and Mode: cache: the owner and mode the cache's
	// directory is made with (uid=, gid=, mode=); nil = not given.
	UID, GID, Mode *uint32
	// Locked: cache: sharing=locked (or private): the step has the cache
	// to itself, steps of other builds that mount it so wait their turn.
	Locked bool
}

// RunStep is a RUN: Argv run in a sandbox of Parent, whose changes become
// one layer of an image with Config.
type RunStep struct {
	CommitStep
	Argv    []string
	Env     []string // build arguments in scope, "K=V", under the image's own Env
	Workdir string
	User    string
	Mounts  []Mount
	Stdout  io.Writer
	Stderr  io.Writer
}

// StepOutput is what a step made.
type StepOutput struct {
	ID        string
	LayerSize int64 // compressed bytes of the layer it added; 0 for none
}

// Backend carries out the steps. The root package's launches sandboxes
// and writes the store.
type Backend interface {
	// From resolves a FROM reference: a snapshot's name.
	From(ctx context.Context, ref string) (Image, error)
	// Lookup returns the ID of the image cached under key.
	Lookup(ctx context.Context, key string) (id string, ok bool, err error)
	// Run runs a RUN step and commits what it changed as one layer. The
	// mount points made for the step's mounts where the image lacks
	// them (a target and its missing parents) are no change: in no
	// layer where still empty, as buildkit removes its mount stubs.
	Run(ctx context.Context, st RunStep) (StepOutput, error)
	// Commit makes an image from a layer tar (or none).
	Commit(ctx context.Context, st CommitStep) (StepOutput, error)
	// Resolve returns path (absolute) with the symlinks on its way in
	// image id resolved inside the image, as a sandbox of it sees them
	// (a merged-/usr image's /bin/x is /usr/bin/x); components past the
	// first one the image lacks are kept.
	Resolve(ctx context.Context, id, path string) (string, error)
	// Stat reports whether path (absolute) exists in image id and is a
	// directory.
	Stat(ctx context.Context, id, path string) (exists, isDir bool, err error)
	// ReadFile reads a (small) file of image id: /etc/passwd and
	// /etc/group for --chown names. A missing file is os.ErrNotExist.
	ReadFile(ctx context.Context, id, path string) ([]byte, error)
	// CopyFrom streams an uncompressed layer tar of paths srcs of image
	// id (relative to its root) placed under dest, owners as the image
	// has them: a directory's contents go into dest, a file to dest or,
	// when destDir, into it. A source that leaves the image's root
	// through ".." or a symlink is an error. makeDest: dest itself is
	// written too, once, as the first directory source is (the image being
	// built lacks it). The stream's last read (or Close) returns the error
	// of a copy that failed.
	CopyFrom(ctx context.Context, id string, srcs []string, dest string, destDir, makeDest bool) (io.ReadCloser, error)
	// Chain names the files of image id for a cache key: its layers,
	// bottom first.
	Chain(ctx context.Context, id string) (string, error)
}

// Event reports progress: a step starting (Done false) or finished.
type Event struct {
	Step, Total int
	Text        string // the instruction, as written
	Done        bool
	Cached      bool
	Duration    time.Duration
	LayerSize   int64
}

// Options tune Build.
type Options struct {
	// Context is the build context directory (absolute).
	Context string
	// Args are --build-arg values.
	Args map[string]string
	// Predefined are arguments every RUN sees without an ARG
	// (HTTP_PROXY & co.), as docker's predefined build arguments: never
	// part of a cache key or of the image.
	Predefined map[string]string
	// NoCache runs every step again (the results are still cached).
	NoCache bool
	// Target, when set, names the stage whose image the build returns;
	// the stages after it are not built. "" = the last.
	Target string
	// Progress, when non-nil, receives an event as each step starts and
	// ends.
	Progress func(Event)
	// Stdout and Stderr receive RUN output; nil discards it.
	Stdout, Stderr io.Writer
}

// PredefinedArgs are the build arguments docker predefines.
var PredefinedArgs = []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
	"FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"}

// StepError is a step that failed: its line and instruction.
type StepError struct {
	Recipe string
	Line   int
	Text   string
	Err    error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("%s line %d: %s: %v", e.Recipe, e.Line, e.Text, e.Err)
}
func (e *StepError) Unwrap() error { return e.Err }

// defaultShell runs shell-form RUN, CMD and ENTRYPOINT until a SHELL.
var defaultShell = []string{"/bin/sh", "-c"}

// stage is a build state.
type stage struct {
	img   Image
	shell []string
	args  map[string]string // declared and valued, in scope
	// cmdSet: a CMD of this stage ran; a later ENTRYPOINT keeps it (as
	// docker: only a CMD the stage inherited is reset).
	cmdSet bool
	// defaultPath: the stage's base set no PATH; the stage's
	// configuration has the default one.
	defaultPath bool
}

// Build runs recipe r with backend b and returns the ID of the last
// stage's image. Every step's image stays cached in the backend.
func Build(ctx context.Context, r *Recipe, b Backend, opts Options) (string, error) {
	bd := &builder{r: r, b: b, opts: opts, lex: shell.NewLex(r.escape), stages: map[string]Image{}, shells: map[string][]string{}}
	if opts.Context != "" {
		c, err := openContext(opts.Context)
		if err != nil {
			return "", err
		}
		defer c.close()
		bd.ctxDir = c
	}
	return bd.run(ctx)
}

type builder struct {
	r      *Recipe
	b      Backend
	opts   Options
	lex    *shell.Lex
	ctxDir *buildContext
	stages map[string]Image // the stages built, by name
	// shells are the SHELLs the named stages ended with: a stage FROM
	// one starts with it, as docker keeps SHELL in the image.
	shells map[string][]string
	// byIndex are the stages built, in order.
	byIndex []Image
	step    int
	total   int
	// declared are the names ARG instructions declared (before FROM or
	// in a stage built): a --build-arg none declares is never used.
	declared map[string]bool
}

func (bd *builder) run(ctx context.Context) (string, error) {
	// ARGs before the first FROM: for FROM lines, and as defaults of
	// an ARG of the same name in a stage.
	meta := map[string]string{}
	for _, a := range bd.r.metaArgs {
		if err := a.Expand(bd.expander(envMap(meta))); err != nil {
			return "", bd.fail(a.Location(), a.String(), err)
		}
		for _, kv := range a.Args {
			bd.declare(kv.Key)
			if v, ok := bd.opts.Args[kv.Key]; ok {
				meta[kv.Key] = v
			} else if kv.Value != nil {
				meta[kv.Key] = *kv.Value
			}
		}
	}
	stages := bd.r.stages
	if t := bd.opts.Target; t != "" {
		i := slices.IndexFunc(stages, func(st instructions.Stage) bool { return strings.EqualFold(st.Name, t) })
		if i < 0 {
			return "", fmt.Errorf("%s: no stage called %q (the target)", bd.r.name, t)
		}
		stages = stages[:i+1]
	}
	for _, st := range stages {
		bd.total += 1 + len(st.Commands)
	}
	var last Image
	for i := range stages {
		st := &stages[i]
		img, shell, err := bd.runStage(ctx, st, meta)
		if err != nil {
			return "", err
		}
		if st.Name != "" {
			bd.stages[st.Name], bd.shells[st.Name] = img, shell
		}
		bd.byIndex = append(bd.byIndex, img)
		last = img
	}
	// A --build-arg no ARG declares (a misspelt name, say) changed
	// nothing: said, as docker says it.
	var unused []string
	for k := range bd.opts.Args {
		if !bd.declared[k] && !slices.Contains(PredefinedArgs, k) {
			unused = append(unused, k)
		}
	}
	if len(unused) > 0 && bd.opts.Stderr != nil {
		slices.Sort(unused)
		fmt.Fprintf(bd.opts.Stderr, "warning: build arguments no ARG declares, unused: %s\n", strings.Join(unused, ", "))
	}
	return last.ID, nil
}

func (bd *builder) declare(k string) {
	if bd.declared == nil {
		bd.declared = map[string]bool{}
	}
	bd.declared[k] = true
}

func (bd *builder) runStage(ctx context.Context, st *instructions.Stage, meta map[string]string) (Image, []string, error) {
	bd.step++
	start := time.Now()
	bd.progress(Event{Text: st.SourceCode})
	base, _, err := bd.lex.ProcessWord(st.BaseName, envMap(meta))
	if err != nil {
		return Image{}, nil, bd.fail(st.Location, st.SourceCode, err)
	}
	s := stage{shell: slices.Clone(defaultShell)}
	switch img, ok := bd.stages[base]; {
	case ok:
		s.img = Image{ID: img.ID, Config: img.Config.clone()}
		s.shell = slices.Clone(bd.shells[base])
	case base == "scratch":
		s.img = Image{}
	default:
		img, err := bd.b.From(ctx, base)
		if err != nil {
			return Image{}, nil, bd.fail(st.Location, st.SourceCode, err)
		}
		s.img = img
	}
	// As buildkit (and podman) make sure of: a stage's configuration
	// has a PATH, the default one where its base sets none (scratch, or
	// an image without): what ENV $PATH expands to, and what the image
	// records. Keyed: the cache entries of before it lack it.
	if _, ok := environ.Lookup(s.img.Config.Env, "PATH"); !ok {
		s.img.Config.Env = append(slices.Clone(s.img.Config.Env), "PATH="+environ.DefaultPath)
		s.defaultPath = true
	}
	s.args = map[string]string{}
	bd.progress(Event{Text: st.SourceCode, Done: true, Cached: true, Duration: time.Since(start)})
	for _, c := range st.Commands {
		if err := bd.runCommand(ctx, &s, c, meta); err != nil {
			return Image{}, nil, err
		}
	}
	return s.img, s.shell, nil
}

func (bd *builder) progress(ev Event) {
	if bd.opts.Progress != nil {
		ev.Step, ev.Total = bd.step, bd.total
		bd.opts.Progress(ev)
	}
}

func (bd *builder) fail(loc []parser.Range, text string, err error) error {
	return &StepError{Recipe: bd.r.name, Line: line(loc), Text: text, Err: err}
}

// env is the environment variables expand in: the image's Env over the
// arguments in scope (ENV wins, as in docker).
func (s *stage) env() map[string]string {
	m := maps.Clone(s.args)
	for _, kv := range s.img.Config.Env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func (bd *builder) expander(env shell.EnvGetter) instructions.SingleWordExpander {
	return func(word string) (string, error) {
		w, _, err := bd.lex.ProcessWord(word, env)
		return w, err
	}
}

// key is a step's cache key.
func (s *stage) key(text string, extra ...string) string {
	h := sha256.New()
	fmt.Fprintf(h, "lightbox build v1\nparent %s\ntext %q\n", s.img.ID, text)
	if s.defaultPath || s.img.ID == "" { // (a stage of a stage of scratch with no steps: its image is "")
		fmt.Fprintf(h, "default PATH %q\n", environ.DefaultPath)
	}
	for _, k := range slices.Sorted(maps.Keys(s.args)) {
		fmt.Fprintf(h, "arg %q=%q\n", k, s.args[k])
	}
	for _, e := range extra {
		fmt.Fprintf(h, "extra %q\n", e)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (bd *builder) runCommand(ctx context.Context, s *stage, c instructions.Command, meta map[string]string) error {
	bd.step++
	text := c.(fmt.Stringer).String()
	loc := c.Location()
	start := time.Now()
	bd.progress(Event{Text: text})
	if ex, ok := c.(instructions.SupportsSingleWordExpansion); ok {
		if _, isRun := c.(*instructions.RunCommand); !isRun {
			if err := ex.Expand(bd.expander(envMap(s.env()))); err != nil {
				return bd.fail(loc, text, err)
			}
		}
	}
	if ex, ok := c.(instructions.SupportsSingleWordExpansionRaw); ok {
		// COPY <<EOF's contents (unless its word is quoted): variables
		// only, quotes and backslashes kept, as buildkit expands them.
		raw := shell.NewLex('\\')
		raw.SkipProcessQuotes = true
		env := envMap(s.env())
		if err := ex.ExpandRaw(func(word string) (string, error) {
			w, _, err := raw.ProcessWord(word, env)
			return w, err
		}); err != nil {
			return bd.fail(loc, text, err)
		}
	}
	cfg := s.img.Config.clone()
	var (
		out    StepOutput
		cached bool
		err    error
	)
	switch c := c.(type) {
	case *instructions.ArgCommand:
		for _, kv := range c.Args {
			bd.declare(kv.Key)
			switch v, ok := bd.opts.Args[kv.Key]; {
			case ok:
				s.args[kv.Key] = v
			case kv.Value != nil:
				s.args[kv.Key] = *kv.Value
			default:
				if v, ok := meta[kv.Key]; ok {
					s.args[kv.Key] = v
				}
			}
		}
		bd.progress(Event{Text: text, Done: true, Cached: true, Duration: time.Since(start)})
		return nil // changes the scope only; later keys include it
	case *instructions.ShellCommand:
		s.shell = slices.Clone(c.Shell)
		bd.progress(Event{Text: text, Done: true, Cached: true, Duration: time.Since(start)})
		return nil // later RUN texts are keyed with the shell they use
	case *instructions.EnvCommand:
		for _, kv := range c.Env {
			cfg.Env = setEnv(cfg.Env, kv.Key, kv.Value)
		}
		out, cached, err = bd.commit(ctx, s, text, cfg, nil)
	case *instructions.LabelCommand:
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		for _, kv := range c.Labels {
			cfg.Labels[kv.Key] = kv.Value
		}
		out, cached, err = bd.commit(ctx, s, text, cfg, nil)
	case *instructions.ExposeCommand:
		for _, p := range c.Ports {
			p, _, err := bd.lex.ProcessWord(p, envMap(s.env()))
			if err != nil {
				return bd.fail(loc, text, err)
			}
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			if !slices.Contains(cfg.ExposedPorts, p) {
				cfg.ExposedPorts = append(cfg.ExposedPorts, p)
			}
		}
		slices.Sort(cfg.ExposedPorts)
		out, cached, err = bd.commit(ctx, s, text, cfg, nil)
	case *instructions.StopSignalCommand:
		sig, _, err := bd.lex.ProcessWord(c.Signal, envMap(s.env()))
		if err == nil {
			_, err = sys.ParseSignal(sig)
		}
		if err != nil {
			return bd.fail(loc, text, err)
		}
		cfg.StopSignal = sig
		out, cached, err = bd.commit(ctx, s, text, cfg, nil)
	case *instructions.UserCommand:
		cfg.User = c.User
		out, cached, err = bd.commit(ctx, s, text, cfg, nil)
	case *instructions.EntrypointCommand:
		cfg.Entrypoint = s.cmdline(c.ShellDependantCmdLine)
		// As docker: a new ENTRYPOINT resets the CMD the stage inherited,
		// not one of its own. Which it was is in the key: a stage FROM
		// another whose last step was CMD has the same parent.
		extra := s.shellKey(c.ShellDependantCmdLine)
		if s.cmdSet {
			extra = append(extra, "cmd kept")
		} else {
			cfg.Cmd = nil
		}
		out, cached, err = bd.commit(ctx, s, text, cfg, nil, extra...)
	case *instructions.CmdCommand:
		cfg.Cmd = s.cmdline(c.ShellDependantCmdLine)
		s.cmdSet = true
		out, cached, err = bd.commit(ctx, s, text, cfg, nil, s.shellKey(c.ShellDependantCmdLine)...)
	case *instructions.WorkdirCommand:
		cfg.WorkingDir = workdirPath(s.img.Config.WorkingDir, c.Path)
		out, cached, err = bd.workdir(ctx, s, text, cfg)
	case *instructions.RunCommand:
		out, cached, err = bd.runStep(ctx, s, text, cfg, c)
	case *instructions.CopyCommand:
		if c.From != "" {
			out, cached, err = bd.copyFrom(ctx, s, text, cfg, c)
			break
		}
		out, cached, err = bd.copy(ctx, s, text, cfg, copyArgs{sd: c.SourcesAndDest, chown: c.Chown, chmod: c.Chmod, exclude: c.ExcludePatterns})
	case *instructions.AddCommand:
		unpack := c.Unpack == nil || *c.Unpack
		out, cached, err = bd.copy(ctx, s, text, cfg, copyArgs{sd: c.SourcesAndDest, chown: c.Chown, chmod: c.Chmod, exclude: c.ExcludePatterns, unpack: unpack, add: true})
	default:
		err = fmt.Errorf("%s is %w", strings.ToUpper(c.Name()), ErrUnsupported) // Parse refused it already
	}
	if err != nil {
		return bd.fail(loc, text, err)
	}
	s.img = Image{ID: out.ID, Config: cfg}
	bd.progress(Event{Text: text, Done: true, Cached: cached, Duration: time.Since(start), LayerSize: out.LayerSize})
	return nil
}

// shellKey is what a shell-form CMD or ENTRYPOINT adds to its key: the
// SHELL it is written with, which no image records (nothing for the
// default: the keys of before SHELL counted).
func (s *stage) shellKey(c instructions.ShellDependantCmdLine) []string {
	if !c.PrependShell || slices.Equal(s.shell, defaultShell) {
		return nil
	}
	return []string{"shell " + strings.Join(s.shell, "\x00")}
}

func (s *stage) cmdline(c instructions.ShellDependantCmdLine) []string {
	if c.PrependShell {
		return append(slices.Clone(s.shell), strings.Join(c.CmdLine, " "))
	}
	return slices.Clone(c.CmdLine)
}

// cached looks key up unless the build runs without the cache.
func (bd *builder) cached(ctx context.Context, key string) (string, bool, error) {
	if bd.opts.NoCache {
		return "", false, nil
	}
	return bd.b.Lookup(ctx, key)
}

// commit makes a configuration step's (or a layer's) image, or finds it
// cached.
func (bd *builder) commit(ctx context.Context, s *stage, text string, cfg Config, layer func() (io.Reader, func(), error), extra ...string) (StepOutput, bool, error) {
	key := s.key(text, extra...)
	if id, ok, err := bd.cached(ctx, key); err != nil || ok {
		return StepOutput{ID: id}, ok, err
	}
	st := CommitStep{Parent: s.img.ID, Key: key, Config: cfg, CreatedBy: text}
	if layer != nil {
		r, done, err := layer()
		if err != nil {
			return StepOutput{}, false, err
		}
		defer done()
		st.Layer = r
	}
	out, err := bd.b.Commit(ctx, st)
	return out, false, err
}

func workdirPath(cur, p string) string {
	if !path.IsAbs(p) {
		p = path.Join("/", cur, p)
	}
	return path.Clean(p)
}

// workdir is WORKDIR: the directory is made (a layer of it) when the
// image lacks it, with the parents it lacks, owned by the USER in force
// (0755), as docker's buildkit makes them: a USER's WORKDIR is the
// user's to write in.
func (bd *builder) workdir(ctx context.Context, s *stage, text string, cfg Config) (StepOutput, bool, error) {
	p := cfg.WorkingDir
	if s.img.ID != "" {
		// Made through the image's symlinks (mkdir -p follows them):
		// see copyTarget.
		var err error
		if p, err = bd.b.Resolve(ctx, s.img.ID, p); err != nil {
			return StepOutput{}, false, err
		}
	}
	if p == "/" {
		return bd.commit(ctx, s, text, cfg, nil)
	}
	var missing []string // top first
	for d := p; d != "/"; d = path.Dir(d) {
		if s.img.ID != "" {
			exists, _, err := bd.b.Stat(ctx, s.img.ID, d)
			if err != nil {
				return StepOutput{}, false, err
			}
			if exists {
				break
			}
		}
		missing = append([]string{d}, missing...)
	}
	if len(missing) == 0 {
		return bd.commit(ctx, s, text, cfg, nil)
	}
	own := owner{}
	if cfg.User != "" {
		o, err := bd.chown(ctx, s, cfg.User)
		switch {
		case errors.Is(err, errNoSuchID) || errors.Is(err, fs.ErrNotExist) || err != nil && s.img.ID == "":
			// A user the image does not name (or no /etc/passwd):
			// root's, as buildkit leaves it (a RUN as that user is
			// what fails).
		case err != nil:
			return StepOutput{}, false, fmt.Errorf("USER %s: %w", cfg.User, err)
		default:
			own = *o
		}
	}
	return bd.commit(ctx, s, text, cfg, func() (io.Reader, func(), error) {
		return dirLayer(missing, own), func() {}, nil
	}, "mkdir "+p, fmt.Sprintf("owner %d:%d", own.uid, own.gid))
}

func (bd *builder) runStep(ctx context.Context, s *stage, text string, cfg Config, c *instructions.RunCommand) (StepOutput, bool, error) {
	env := envMap(s.env())
	if err := c.Expand(bd.expander(env)); err != nil { // the --mount flags
		return StepOutput{}, false, err
	}
	var argv []string
	extra := []string{"shell " + strings.Join(s.shell, "\x00")}
	if c.PrependShell {
		script := strings.Join(c.CmdLine, " ")
		if len(c.Files) > 0 {
			script = heredocScript(c.CmdLine, c.Files)
		}
		argv = append(slices.Clone(s.shell), script)
	} else {
		argv = slices.Clone(c.CmdLine)
	}
	for _, f := range c.Files {
		extra = append(extra, "heredoc "+f.Name+"\x00"+f.Data)
	}
	var mounts []Mount
	for _, m := range instructions.GetMounts(c) {
		rm, err := bd.mount(m, s)
		if err != nil {
			return StepOutput{}, false, err
		}
		mounts = append(mounts, rm)
		if rm.Type == "bind" {
			// What a bind shows is an input of the step.
			d, err := bd.ctxDir.digest([]string{strings.TrimPrefix(rm.Source, bd.ctxDir.dir+"/")}, nil)
			if err != nil {
				return StepOutput{}, false, err
			}
			extra = append(extra, "bind "+rm.Target+" "+d)
		}
	}
	if len(mounts) > 0 {
		// The step's layer leaves its mount stubs out (Backend.Run):
		// the cache entries of before hold them.
		extra = append(extra, "mount stubs left out")
	}
	key := s.key(text, extra...)
	if id, ok, err := bd.cached(ctx, key); err != nil || ok {
		return StepOutput{ID: id}, ok, err
	}
	var renv []string
	for _, k := range slices.Sorted(maps.Keys(s.args)) {
		renv = append(renv, k+"="+s.args[k])
	}
	for _, k := range PredefinedArgs {
		if _, declared := s.args[k]; declared {
			continue
		}
		if v, ok := bd.opts.Predefined[k]; ok {
			renv = append(renv, k+"="+v)
		}
	}
	// The image's Env wins over arguments of the same name.
	renv = slices.DeleteFunc(renv, func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.ContainsFunc(s.img.Config.Env, func(e string) bool { return strings.HasPrefix(e, k+"=") })
	})
	return bd.runBackend(ctx, RunStep{
		CommitStep: CommitStep{Parent: s.img.ID, Key: key, Config: cfg, CreatedBy: text},
		Argv:       argv, Env: renv, Workdir: firstNonEmpty(s.img.Config.WorkingDir, "/"), User: s.img.Config.User,
		Mounts: mounts, Stdout: bd.opts.Stdout, Stderr: bd.opts.Stderr,
	})
}

func (bd *builder) runBackend(ctx context.Context, st RunStep) (StepOutput, bool, error) {
	if st.Parent == "" {
		return StepOutput{}, false, errors.New("RUN needs a base: FROM scratch has no shell or programs")
	}
	out, err := bd.b.Run(ctx, st)
	return out, false, err
}

// heredocScript is the shell script of a shell-form RUN with heredocs,
// as docker's buildkit makes it: RUN <<EOF alone runs the heredoc (its
// leading tabs gone for <<-EOF); a command with heredocs (RUN cat <<EOF
// > file, RUN <<A cat > f, RUN python3 <<EOF) is given to the shell with
// its heredocs after it, for the shell to feed them in.
func heredocScript(cmdLine []string, files []instructions.ShellInlineFile) string {
	line := strings.Join(cmdLine, " ")
	if parser.MustParseHeredoc(line) != nil {
		data := files[0].Data
		if files[0].Chomp {
			data = parser.ChompHeredocContent(data)
		}
		if strings.HasPrefix(data, "#!") {
			return shebangScript(data)
		}
		return data
	}
	for _, f := range files {
		line += "\n" + f.Data + f.Name
	}
	return line
}

// shebangScript runs a RUN <<EOF whose heredoc starts with "#!" with
// the interpreter that line names, as docker does (it writes the heredoc
// to a file and executes it): a python or bash script is not run by
// /bin/sh. The interpreter (and its one argument, as the kernel reads the
// line) reads the script from a heredoc on the shell's descriptor 3, which
// leaves no file in the image and needs no writable directory. The
// heredoc's delimiter is the script's digest: the script cannot hold it.
func shebangScript(data string) string {
	first, _, _ := strings.Cut(data, "\n")
	first = strings.Trim(strings.TrimPrefix(first, "#!"), " \t\r")
	interp, arg := first, ""
	if i := strings.IndexAny(first, " \t"); i >= 0 {
		interp, arg = first[:i], strings.Trim(first[i:], " \t")
	}
	if interp == "" {
		return data
	}
	sum := sha256.Sum256([]byte(data))
	mark := "LIGHTBOX_SCRIPT_" + hex.EncodeToString(sum[:8])
	if !strings.HasSuffix(data, "\n") {
		data += "\n"
	}
	cmd := "exec " + shellQuote(interp)
	if arg != "" {
		cmd += " " + shellQuote(arg)
	}
	return cmd + " /dev/fd/3 3<<'" + mark + "'\n" + data + mark + "\n"
}

// shellQuote is s as one word of a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// mount checks and resolves a RUN --mount.
func (bd *builder) mount(m *instructions.Mount, s *stage) (Mount, error) {
	target := m.Target
	if target == "" {
		return Mount{}, fmt.Errorf("--mount=type=%s: no target", m.Type)
	}
	if !path.IsAbs(target) {
		target = path.Join("/", s.img.Config.WorkingDir, target)
	}
	target = path.Clean(target)
	switch m.Type {
	case instructions.MountTypeCache:
		if m.From != "" {
			return Mount{}, fmt.Errorf("--mount=type=cache,from=%s is %w", m.From, ErrUnsupported)
		}
		// sharing=private (docker: a fresh cache for each concurrent
		// writer) is taken as locked: each writer still has the cache
		// to itself, in turn.
		locked := m.CacheSharing == instructions.MountSharingLocked || m.CacheSharing == instructions.MountSharingPrivate
		return Mount{Type: "cache", Target: target, ID: m.CacheID, ReadOnly: m.ReadOnly, UID: u32(m.UID), GID: u32(m.GID), Mode: u32(m.Mode), Locked: locked}, nil
	case instructions.MountTypeTmpfs:
		return Mount{Type: "tmpfs", Target: target, Size: m.SizeLimit}, nil
	case instructions.MountTypeBind:
		if m.From != "" {
			return Mount{}, fmt.Errorf("--mount=type=bind,from=%s is %w: binds come from the context", m.From, ErrUnsupported)
		}
		if bd.ctxDir == nil {
			return Mount{}, errors.New("--mount=type=bind: the build has no context")
		}
		src, err := bd.ctxDir.resolve(firstNonEmpty(m.Source, "."))
		if err != nil {
			return Mount{}, fmt.Errorf("--mount=type=bind: %w", err)
		}
		return Mount{Type: "bind", Target: target, Source: src, ReadOnly: m.ReadOnly}, nil
	default:
		return Mount{}, fmt.Errorf("--mount=type=%s is %w (secrets and ssh agents are not passed into builds)", m.Type, ErrUnsupported)
	}
}

// u32 narrows a --mount option (parsed as 64 bits) to an id or mode.
func u32(p *uint64) *uint32 {
	if p == nil {
		return nil
	}
	v := uint32(*p)
	return &v
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func setEnv(env []string, k, v string) []string {
	env = slices.DeleteFunc(slices.Clone(env), func(e string) bool { return strings.HasPrefix(e, k+"=") })
	return append(env, k+"="+v)
}

// envMap is a shell.EnvGetter over a map.
type envMap map[string]string

func (m envMap) Get(k string) (string, bool) { v, ok := m[k]; return v, ok }
func (m envMap) Keys() []string              { return slices.Sorted(maps.Keys(m)) }
