package build

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// ErrUnsupported is wrapped by the error for an instruction, flag or
// source the builder does not support.
var ErrUnsupported = errors.New("not supported")

// Recipe is a parsed recipe.
type Recipe struct {
	name     string
	stages   []instructions.Stage
	metaArgs []instructions.ArgCommand
	escape   rune
}

// Steps is how many steps the recipe has (FROM lines included).
func (r *Recipe) Steps() int {
	n := 0
	for _, s := range r.stages {
		n += 1 + len(s.Commands)
	}
	return n
}

// Parse parses recipe text. name names it in messages ("Dockerfile").
// An instruction, flag or source the builder does not support is an
// error naming it and its line.
func Parse(name string, text []byte) (*Recipe, error) {
	if name == "" {
		name = "Dockerfile"
	}
	res, err := parser.Parse(bytes.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, plainError(err))
	}
	stages, meta, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, plainError(err))
	}
	if len(stages) == 0 {
		return nil, fmt.Errorf("%s: no FROM instruction", name)
	}
	r := &Recipe{name: name, stages: stages, metaArgs: meta, escape: res.EscapeToken}
	seen := map[string]bool{}
	for _, st := range stages {
		if st.Platform != "" {
			return nil, r.unsupported(st.Location, "FROM --platform")
		}
		if st.Name != "" {
			if seen[st.Name] {
				return nil, fmt.Errorf("%s line %d: stage name %q is used twice", name, line(st.Location), st.Name)
			}
			seen[st.Name] = true
		}
		for _, c := range st.Commands {
			if err := r.check(c); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// plainError drops the stack that buildkit's errors carry in %+v and
// keeps the message, with the line the error is located at when the
// message does not name it (instructions.Parse's: "ENV must have two
// arguments"), as docker says it.
func plainError(err error) error {
	msg := err.Error()
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 && !strings.Contains(msg, "line ") {
		if n := line(le.Locations[0]); n > 0 {
			msg = fmt.Sprintf("line %d: %s", n, msg)
		}
	}
	return errors.New(msg)
}

func line(loc []parser.Range) int {
	if len(loc) == 0 {
		return 0
	}
	return loc[0].Start.Line
}

func (r *Recipe) unsupported(loc []parser.Range, what string) error {
	return fmt.Errorf("%s line %d: %s is %w", r.name, line(loc), what, ErrUnsupported)
}

// check refuses what the builder does not do.
func (r *Recipe) check(c instructions.Command) error {
	loc := c.Location()
	switch c := c.(type) {
	case *instructions.EnvCommand, *instructions.ArgCommand, *instructions.WorkdirCommand,
		*instructions.UserCommand, *instructions.LabelCommand, *instructions.ExposeCommand,
		*instructions.EntrypointCommand, *instructions.CmdCommand, *instructions.ShellCommand,
		*instructions.StopSignalCommand:
		return nil
	case *instructions.RunCommand:
		for _, f := range c.FlagsUsed {
			if f != "mount" {
				return r.unsupported(loc, "RUN --"+f)
			}
		}
		// The mounts as written (variables are expanded when the step
		// runs, from the flag values, again).
		if err := c.Expand(func(w string) (string, error) { return w, nil }); err != nil {
			return fmt.Errorf("%s line %d: %w", r.name, line(loc), plainError(err))
		}
		for _, m := range instructions.GetMounts(c) {
			switch {
			case m.Type == instructions.MountTypeSecret || m.Type == instructions.MountTypeSSH:
				return r.unsupported(loc, fmt.Sprintf("RUN --mount=type=%s (secrets and ssh agents are not passed into builds)", m.Type))
			case m.From != "":
				return r.unsupported(loc, fmt.Sprintf("RUN --mount=type=%s,from=%s", m.Type, m.From))
			}
		}
		return nil
	case *instructions.CopyCommand:
		switch {
		case c.From != "" && len(c.ExcludePatterns) > 0:
			return r.unsupported(loc, "COPY --from with --exclude")
		case c.From != "":
			if len(c.SourceContents) > 0 {
				return r.unsupported(loc, "a heredoc in COPY --from")
			}
			return nil
		case c.Link:
			return r.unsupported(loc, "COPY --link")
		case c.Parents:
			return r.unsupported(loc, "COPY --parents")
		}
		return r.checkSources(loc, "COPY", c.SourcePaths)
	case *instructions.AddCommand:
		switch {
		case c.Link:
			return r.unsupported(loc, "ADD --link")
		case c.Checksum != "":
			return r.unsupported(loc, "ADD --checksum")
		case c.KeepGitDir != nil:
			return r.unsupported(loc, "ADD --keep-git-dir")
		}
		return r.checkSources(loc, "ADD", c.SourcePaths)
	default:
		return r.unsupported(loc, strings.ToUpper(c.Name()))
	}
}

func (r *Recipe) checkSources(loc []parser.Range, ins string, srcs []string) error {
	for _, s := range srcs {
		if isURL(s) {
			return r.unsupported(loc, fmt.Sprintf("%s of a URL (%s)", ins, s))
		}
	}
	return nil
}

func isURL(s string) bool {
	for _, p := range []string{"http://", "https://", "git@", "git://", "ssh://"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
