package build

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeImage is an image of the fake backend: its parent, config and the
// tar entries of its layer.
type fakeImage struct {
	parent string
	cfg    Config
	files  map[string]*tar.Header
	data   map[string]string
}

// fake is a Backend in memory that records what it ran.
type fake struct {
	images map[string]*fakeImage
	cache  map[string]string
	runs   []RunStep
	n      int
	failOn string // a RUN whose script contains it fails
}

func newFake() *fake {
	f := &fake{images: map[string]*fakeImage{}, cache: map[string]string{}}
	f.images["base"] = &fakeImage{
		cfg:   Config{Env: []string{"PATH=/bin"}, WorkingDir: "/"},
		files: map[string]*tar.Header{"etc/passwd": {Typeflag: tar.TypeReg}, "tmp": {Typeflag: tar.TypeDir}, "etc": {Typeflag: tar.TypeDir}},
		data:  map[string]string{"etc/passwd": "root:x:0:0::/root:/bin/sh\nnode:x:1000:1001::/home/node:/bin/sh\n"},
	}
	f.images["base"].files["etc/group"] = &tar.Header{Typeflag: tar.TypeReg}
	f.images["base"].data["etc/group"] = "root:x:0:\nstaff:x:50:\n"
	return f
}

func (f *fake) From(_ context.Context, ref string) (Image, error) {
	switch ref {
	case "base":
	case "bare": // an image whose configuration sets no PATH
		if f.images["bare"] == nil {
			f.images["bare"] = &fakeImage{files: map[string]*tar.Header{"bin": {Typeflag: tar.TypeDir}}}
		}
	default:
		return Image{}, fmt.Errorf("snapshot %s: not found", ref)
	}
	return Image{ID: ref, Config: f.images[ref].cfg}, nil
}

func (f *fake) Lookup(_ context.Context, key string) (string, bool, error) {
	id, ok := f.cache[key]
	return id, ok, nil
}

func (f *fake) add(st CommitStep, files map[string]*tar.Header, data map[string]string) StepOutput {
	f.n++
	id := fmt.Sprintf("img%d", f.n)
	f.images[id] = &fakeImage{parent: st.Parent, cfg: st.Config, files: files, data: data}
	f.cache[st.Key] = id
	return StepOutput{ID: id, LayerSize: int64(len(files))}
}

func (f *fake) Run(_ context.Context, st RunStep) (StepOutput, error) {
	f.runs = append(f.runs, st)
	if f.failOn != "" && strings.Contains(strings.Join(st.Argv, " "), f.failOn) {
		return StepOutput{}, errors.New("exit status 3")
	}
	return f.add(st.CommitStep, map[string]*tar.Header{"ran": {Typeflag: tar.TypeReg}}, nil), nil
}

func (f *fake) Commit(_ context.Context, st CommitStep) (StepOutput, error) {
	files, data := map[string]*tar.Header{}, map[string]string{}
	if st.Layer != nil {
		tr := tar.NewReader(st.Layer)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return StepOutput{}, err
			}
			b, _ := io.ReadAll(tr)
			name := strings.TrimSuffix(h.Name, "/")
			files[name], data[name] = h, string(b)
		}
	}
	return f.add(st, files, data), nil
}

// find returns the header of p as image id shows it.
func (f *fake) find(id, p string) (*tar.Header, string) {
	p = strings.TrimPrefix(path.Clean(p), "/")
	for id != "" {
		img := f.images[id]
		if h, ok := img.files[p]; ok {
			return h, img.data[p]
		}
		id = img.parent
	}
	return nil, ""
}

func (f *fake) Resolve(_ context.Context, id, p string) (string, error) {
	// A symlink of the fake's images is an entry with a Linkname to an
	// absolute directory, at any of p's components.
	parts := strings.Split(strings.TrimPrefix(path.Clean(p), "/"), "/")
	for i := range parts {
		if h, _ := f.find(id, strings.Join(parts[:i+1], "/")); h != nil && h.Typeflag == tar.TypeSymlink {
			return f.Resolve(context.Background(), id, path.Join(append([]string{h.Linkname}, parts[i+1:]...)...))
		}
	}
	return path.Clean(p), nil
}

func (f *fake) Stat(_ context.Context, id, p string) (bool, bool, error) {
	if path.Clean(p) == "/" {
		return true, true, nil
	}
	h, _ := f.find(id, p)
	return h != nil, h != nil && h.Typeflag == tar.TypeDir, nil
}

func (f *fake) ReadFile(_ context.Context, id, p string) ([]byte, error) {
	h, d := f.find(id, p)
	if h == nil {
		return nil, os.ErrNotExist
	}
	return []byte(d), nil
}

// CopyFrom copies files (not symlinks) of image id; a source that is a
// directory copies what is under it.
func (f *fake) CopyFrom(_ context.Context, id string, srcs []string, dest string, destDir, makeDest bool) (io.ReadCloser, error) {
	seen := map[string]bool{}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	emit := func(name, dst string) error {
		h, d := f.find(id, name)
		if h == nil || seen[dst] {
			return nil
		}
		seen[dst] = true
		hh := *h
		hh.Name, hh.Size = strings.TrimPrefix(dst, "/"), int64(len(d))
		if err := tw.WriteHeader(&hh); err != nil {
			return err
		}
		_, err := tw.Write([]byte(d))
		return err
	}
	for _, src := range srcs {
		p := strings.TrimPrefix(path.Clean("/"+src), "/")
		h, _ := f.find(id, p)
		if h == nil && !f.hasUnder(id, p) {
			return nil, fmt.Errorf("%s: not in the image", src)
		}
		if h != nil && h.Typeflag != tar.TypeDir {
			dst := dest
			if destDir {
				dst = path.Join(dest, path.Base(p))
			}
			if err := emit(p, dst); err != nil {
				return nil, err
			}
			continue
		}
		for cur := id; cur != ""; cur = f.images[cur].parent {
			for _, name := range slices.Sorted(maps.Keys(f.images[cur].files)) {
				if rest, ok := strings.CutPrefix(name, p+"/"); ok {
					if err := emit(name, path.Join(dest, rest)); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return io.NopCloser(&b), nil
}

// hasUnder reports whether image id has a file under directory p.
func (f *fake) hasUnder(id, p string) bool {
	for ; id != ""; id = f.images[id].parent {
		for name := range f.images[id].files {
			if strings.HasPrefix(name, p+"/") {
				return true
			}
		}
	}
	return false
}

func (f *fake) Chain(_ context.Context, id string) (string, error) {
	var chain []string
	for ; id != ""; id = f.images[id].parent {
		if len(f.images[id].files) > 0 {
			chain = append([]string{id}, chain...)
		}
	}
	return strings.Join(chain, " "), nil
}

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func build(t *testing.T, f *fake, dir, recipe string, opts Options) (string, []Event, error) {
	t.Helper()
	r, err := Parse("Dockerfile", []byte(recipe))
	if err != nil {
		return "", nil, err
	}
	var evs []Event
	opts.Context = dir
	opts.Progress = func(e Event) {
		if e.Done {
			evs = append(evs, e)
		}
	}
	id, err := Build(t.Context(), r, f, opts)
	return id, evs, err
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ recipe, want string }{
		{"FROM base\nRUN true\nHEALTHCHECK CMD true\n", "line 3: HEALTHCHECK is not supported"},
		{"FROM base\nONBUILD RUN true\n", "line 2: ONBUILD is not supported"},
		{"FROM base\nVOLUME /data\n", "line 2: VOLUME is not supported"},
		{"FROM base\nFROBNICATE x\n", "line 2: unknown instruction: FROBNICATE"},
		{"FROM base\nCOPY --from=other --exclude=x /a /b\n", "line 2: COPY --from with --exclude is not supported"},
		{"FROM base\nADD https://example.com/x /x\n", "line 2: ADD of a URL (https://example.com/x) is not supported"},
		{"FROM base\nRUN --network=none true\n", "line 2: RUN --network is not supported"},
		{"FROM base\n\nRUN --mount=type=secret,id=x cat /run/secrets/x\n", "line 3: RUN --mount=type=secret (secrets and ssh agents are not passed into builds) is not supported"},
		{"FROM base\nRUN --mount=type=ssh true\n", "RUN --mount=type=ssh"},
		{"FROM --platform=linux/arm64 base\n", "line 1: FROM --platform is not supported"},
		{"FROM base\nENV ONLYKEY\n", "Dockerfile: line 2: ENV must have two arguments"},
		{"FROM base\n\nCOPY --bogus=1 a b\n", "line 3: unknown flag: --bogus"},
		{"RUN true\n", "no build stage"},
		{"# nothing\n", "no instructions"},
	} {
		_, err := Parse("Dockerfile", []byte(tc.recipe))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.recipe, err, tc.want)
		}
	}
}

func TestBuildConfigAndCache(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"app/main.sh": "echo hi\n", "app/lib/x": "x", "README": "r"})
	recipe := `# a comment
ARG BASE=base
FROM $BASE
ARG VERSION=1
ENV APP=/opt/app \
    MODE=prod
WORKDIR $APP
COPY app/ ./
RUN echo building $VERSION
RUN ["/bin/echo", "exec", "form"]
SHELL ["/bin/bash", "-c"]
RUN echo in bash
USER node
LABEL org.example.v=$VERSION
EXPOSE 8080 53/udp
STOPSIGNAL SIGINT
ENTRYPOINT ["/opt/app/main.sh"]
CMD serve
`
	f := newFake()
	id, evs, err := build(t, f, dir, recipe, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Env: []string{"PATH=/bin", "APP=/opt/app", "MODE=prod"}, WorkingDir: "/opt/app", User: "node",
		Labels: map[string]string{"org.example.v": "1"}, ExposedPorts: []string{"53/udp", "8080/tcp"},
		Entrypoint: []string{"/opt/app/main.sh"}, Cmd: []string{"/bin/bash", "-c", "serve"},
		StopSignal: "SIGINT",
	}
	if diff := cmp.Diff(want, f.images[id].cfg); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if len(f.runs) != 3 {
		t.Fatalf("ran %d RUN steps, want 3", len(f.runs))
	}
	if got, want := f.runs[0].Argv, []string{"/bin/sh", "-c", "echo building $VERSION"}; !slices.Equal(got, want) {
		t.Errorf("RUN argv = %q, want %q", got, want)
	}
	if !slices.Contains(f.runs[0].Env, "VERSION=1") || f.runs[0].Workdir != "/opt/app" {
		t.Errorf("RUN env %q workdir %q, want VERSION=1 in /opt/app", f.runs[0].Env, f.runs[0].Workdir)
	}
	if got, want := f.runs[1].Argv, []string{"/bin/echo", "exec", "form"}; !slices.Equal(got, want) {
		t.Errorf("exec-form argv = %q, want %q", got, want)
	}
	if got := f.runs[2].Argv; got[0] != "/bin/bash" {
		t.Errorf("argv after SHELL = %q, want bash", got)
	}
	if h, d := f.find(id, "/opt/app/main.sh"); h == nil || d != "echo hi\n" || h.Uid != 0 {
		t.Errorf("/opt/app/main.sh = %+v %q, want root's file", h, d)
	}
	if h, _ := f.find(id, "/opt/app/lib/x"); h == nil {
		t.Errorf("/opt/app/lib/x was not copied")
	}
	if h, _ := f.find(id, "/opt/app/README"); h != nil {
		t.Errorf("README was copied though COPY named app/ only")
	}
	for _, e := range evs {
		if e.Cached && e.LayerSize > 0 {
			t.Errorf("step %d cached with a layer size", e.Step)
		}
	}

	// The same recipe again: every step from the cache, the same image.
	runs := len(f.runs)
	id2, evs, err := build(t, f, dir, recipe, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if id2 != id || len(f.runs) != runs {
		t.Errorf("rebuild = %s with %d new runs, want %s from the cache", id2, len(f.runs)-runs, id)
	}
	for _, e := range evs {
		if !e.Cached {
			t.Errorf("rebuild: step %d %q not cached", e.Step, e.Text)
		}
	}

	// A changed file: COPY and every later step run again, earlier ones not.
	writeTree(t, dir, map[string]string{"app/lib/x": "y"})
	id3, evs, err := build(t, f, dir, recipe, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if id3 == id || len(f.runs) != runs+3 {
		t.Errorf("after a change: %s with %d new runs, want a new image and 3 runs", id3, len(f.runs)-runs)
	}
	for _, e := range evs {
		// FROM, ARG, ENV, WORKDIR come before COPY (step 5); SHELL
		// changes no image.
		if cached := e.Step < 5 || strings.HasPrefix(e.Text, "SHELL"); e.Cached != cached {
			t.Errorf("after a change: step %d %q cached %v, want %v", e.Step, e.Text, e.Cached, cached)
		}
	}

	// Another build argument: the steps after the ARG run again.
	runs = len(f.runs)
	if _, _, err := build(t, f, dir, recipe, Options{Args: map[string]string{"VERSION": "2"}}); err != nil {
		t.Fatal(err)
	}
	if len(f.runs) != runs+3 {
		t.Errorf("--build-arg VERSION=2 ran %d steps, want 3", len(f.runs)-runs)
	}
	// NoCache runs everything again.
	runs = len(f.runs)
	if _, _, err := build(t, f, dir, recipe, Options{NoCache: true}); err != nil {
		t.Fatal(err)
	}
	if len(f.runs) != runs+3 {
		t.Errorf("NoCache ran %d RUN steps, want 3", len(f.runs)-runs)
	}
}

// STOPSIGNAL is checked when its step runs: one no kernel knows is an
// error naming the line, before any later step.
func TestStopSignalRefused(t *testing.T) {
	f := newFake()
	_, _, err := build(t, f, t.TempDir(), "FROM base\nARG SIG=SIGFOO\nSTOPSIGNAL $SIG\nRUN true\n", Options{})
	if err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), `"SIGFOO": unknown`) {
		t.Errorf("STOPSIGNAL SIGFOO: %v, want an error naming line 3 and the signal", err)
	}
	if len(f.runs) != 0 {
		t.Errorf("%d RUN steps ran after the bad STOPSIGNAL", len(f.runs))
	}
}

func TestPredefinedArgs(t *testing.T) {
	f := newFake()
	recipe := "FROM base\nRUN apt-get update\n"
	pre := map[string]string{"HTTP_PROXY": "http://proxy:3128", "https_proxy": "http://p2"}
	if _, _, err := build(t, f, t.TempDir(), recipe, Options{Predefined: pre}); err != nil {
		t.Fatal(err)
	}
	if got := f.runs[0].Env; !slices.Contains(got, "HTTP_PROXY=http://proxy:3128") || !slices.Contains(got, "https_proxy=http://p2") {
		t.Errorf("RUN env = %q, want the proxy variables", got)
	}
	// Another proxy is not another step.
	pre["HTTP_PROXY"] = "http://other"
	if _, evs, err := build(t, f, t.TempDir(), recipe, Options{Predefined: pre}); err != nil || !evs[len(evs)-1].Cached {
		t.Errorf("rebuild with another proxy: %v, cached %v; want cached", err, evs)
	}
}

func TestCopy(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"a.json": "{}", "b.json": "[]", "c.txt": "c", "src/x.go": "package x", "src/vendor/y": "y",
		"node_modules/big": "big", ".dockerignore": "node_modules\nsrc/vendor\n*.txt\n!keep.txt\n", "keep.txt": "k",
	})
	if err := os.Symlink("x.go", filepath.Join(dir, "src/link")); err != nil {
		t.Fatal(err)
	}
	f := newFake()
	id, _, err := build(t, f, dir, `FROM base
COPY *.json /cfg/
COPY --chown=node:staff --chmod=0600 src /srv/
COPY --chown=1234 keep.txt /k
COPY . /all/
COPY <<EOF /etc/motd
hello
EOF
`, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path     string
		want     string
		uid, gid int
		mode     int64
	}{
		{"/cfg/a.json", "{}", 0, 0, 0o644},
		{"/cfg/b.json", "[]", 0, 0, 0o644},
		{"/srv/x.go", "package x", 1000, 50, 0o600},
		{"/k", "k", 1234, 1234, 0o644},
		{"/all/keep.txt", "k", 0, 0, 0o644},
		{"/etc/motd", "hello\n", 0, 0, 0o644},
	} {
		h, d := f.find(id, tc.path)
		if h == nil {
			t.Errorf("%s: missing", tc.path)
			continue
		}
		if d != tc.want || h.Uid != tc.uid || h.Gid != tc.gid || h.Mode&0o7777 != tc.mode {
			t.Errorf("%s = %q %d:%d %o, want %q %d:%d %o", tc.path, d, h.Uid, h.Gid, h.Mode&0o7777, tc.want, tc.uid, tc.gid, tc.mode)
		}
	}
	if h, _ := f.find(id, "/srv/link"); h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "x.go" {
		t.Errorf("/srv/link = %+v, want a symlink to x.go", h)
	}
	for _, p := range []string{"/cfg/c.txt", "/srv/vendor/y", "/all/node_modules/big", "/all/c.txt", "/all/src/vendor/y"} {
		if h, _ := f.find(id, p); h != nil {
			t.Errorf("%s was copied, want it ignored", p)
		}
	}
}

// COPY of a directory makes its destination when the image lacks it (an
// empty one too, as docker does): as the source directory is, or plain
// (0755, --chown's) when written with a trailing "/"; and leaves a
// destination the image has as it is.
func TestCopyMakesDestDir(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"conf/app.conf": "x"})
	if err := os.Mkdir(filepath.Join(dir, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "conf"), 0o750); err != nil {
		t.Fatal(err)
	}
	f := newFake()
	id, _, err := build(t, f, dir, `FROM base
COPY empty /new/empty
COPY --chown=node --chmod=600 conf /opt/conf/
COPY conf /srv/conf
COPY conf empty /etc/
`, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path     string
		uid, gid int
		mode     int64
	}{
		{"/new/empty", 0, 0, 0o755},
		{"/opt/conf", 1000, 1001, 0o755},
		{"/opt/conf/app.conf", 1000, 1001, 0o600},
		{"/srv/conf", 0, 0, 0o750},
	} {
		h, _ := f.find(id, tc.path)
		if h == nil {
			t.Errorf("%s: missing", tc.path)
			continue
		}
		if h.Uid != tc.uid || h.Gid != tc.gid || h.Mode&0o7777 != tc.mode {
			t.Errorf("%s = %d:%d %o, want %d:%d %o", tc.path, h.Uid, h.Gid, h.Mode&0o7777, tc.uid, tc.gid, tc.mode)
		}
	}
	if h, _ := f.find(id, "/etc"); h != f.images["base"].files["etc"] {
		t.Errorf("/etc = %+v, want the base image's, untouched", h)
	}
	if h, _ := f.find(id, "/etc/app.conf"); h == nil {
		t.Errorf("/etc/app.conf: missing")
	}
}

// WORKDIR makes the directory and the parents the image lacks owned by
// the USER in force, as buildkit does, so that the user can write there;
// a directory the image has is left as it is, and an unknown user's is
// root's.
func TestWorkdirOwner(t *testing.T) {
	f := newFake()
	id, _, err := build(t, f, t.TempDir(), `FROM base
USER node
WORKDIR /home/node/app
WORKDIR /tmp
USER ghost
WORKDIR /srv/ghost
`, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path     string
		uid, gid int
	}{
		{"/home", 1000, 1001},
		{"/home/node", 1000, 1001},
		{"/home/node/app", 1000, 1001},
		{"/srv/ghost", 0, 0},
	} {
		h, _ := f.find(id, tc.path)
		if h == nil || h.Typeflag != tar.TypeDir {
			t.Errorf("%s = %+v, want a directory", tc.path, h)
			continue
		}
		if h.Uid != tc.uid || h.Gid != tc.gid || h.Mode&0o7777 != 0o755 {
			t.Errorf("%s = %d:%d %o, want %d:%d 755", tc.path, h.Uid, h.Gid, h.Mode&0o7777, tc.uid, tc.gid)
		}
	}
	if h, _ := f.find(id, "/tmp"); h != f.images["base"].files["tmp"] {
		t.Errorf("/tmp = %+v, want the base image's, untouched", h)
	}
}

// COPY and WORKDIR write through the image's symlinks, as docker does:
// on a merged-/usr image, an entry at bin/x would make a directory bin
// in its layer, hiding the image's /bin -> usr/bin and every program in
// it.
func TestCopyThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"tool": "#!/bin/sh\n"})
	f := newFake()
	f.images["base"].files["usr"] = &tar.Header{Typeflag: tar.TypeDir}
	f.images["base"].files["usr/bin"] = &tar.Header{Typeflag: tar.TypeDir}
	f.images["base"].files["bin"] = &tar.Header{Typeflag: tar.TypeSymlink, Linkname: "/usr/bin"}
	id, _, err := build(t, f, dir, `FROM base
COPY tool /bin/
COPY tool /bin/renamed
WORKDIR /bin/sub
`, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A tree copied over the image's root goes through its symlinks too.
	writeTree(t, dir, map[string]string{"rootfs/bin/x": "x", "rootfs/etc/y": "y"})
	id, _, err = build(t, f, dir, "FROM base\nCOPY rootfs/ /\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/usr/bin/x", "/etc/y"} {
		if h, _ := f.find(id, p); h == nil {
			t.Errorf("COPY rootfs/ /: %s: missing", p)
		}
	}
	if h, _ := f.find(id, "/bin"); h != f.images["base"].files["bin"] {
		t.Errorf("COPY rootfs/ /: /bin = %+v, want the image's symlink, untouched", h)
	}
	id, _, err = build(t, f, dir, `FROM base
COPY tool /bin/
COPY tool /bin/renamed
WORKDIR /bin/sub
`, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/usr/bin/tool", "/usr/bin/renamed", "/usr/bin/sub"} {
		if h, _ := f.find(id, p); h == nil {
			t.Errorf("%s: missing", p)
		}
	}
	if h, _ := f.find(id, "/bin"); h != f.images["base"].files["bin"] {
		t.Errorf("/bin = %+v, want the image's symlink, untouched", h)
	}
}

// A socket in the context (a dev server's, an editor's) is skipped by
// COPY of its directory, as docker skips it: it used to fail the step
// with "archive/tar: sockets not supported". Named alone it is an error
// that says so.
func TestCopySkipsSockets(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"app/main": "m"})
	l, err := net.Listen("unix", filepath.Join(dir, "app", "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f := newFake()
	id, _, err := build(t, f, dir, "FROM base\nCOPY app /srv/\n", Options{})
	if err != nil {
		t.Fatalf("COPY of a directory holding a socket: %v", err)
	}
	if h, _ := f.find(id, "/srv/main"); h == nil {
		t.Errorf("/srv/main: missing")
	}
	if h, _ := f.find(id, "/srv/s.sock"); h != nil {
		t.Errorf("/srv/s.sock = %+v, want it skipped", h)
	}
	if _, _, err := build(t, newFake(), dir, "FROM base\nCOPY app/s.sock /srv/\n", Options{}); err == nil || !strings.Contains(err.Error(), "a socket") {
		t.Errorf("COPY of the socket itself = %v, want an error saying it is a socket", err)
	}
}

func TestCopyRefusesOutsideContext(t *testing.T) {
	outer := t.TempDir()
	dir := filepath.Join(outer, "ctx")
	writeTree(t, outer, map[string]string{"secret": "s", "ctx/ok": "ok"})
	if err := os.Symlink("../secret", filepath.Join(dir, "leak")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(dir, "etc")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ recipe, want string }{
		{"FROM base\nCOPY ../secret /x\n", "line 2: COPY ../secret /x: ../secret: outside the build context"},
		{"FROM base\nCOPY /etc/passwd /x\n", "line 2: COPY /etc/passwd /x: /etc/passwd: an absolute path"},
		{"FROM base\nCOPY leak /x\n", "leak: leaves the build context"},
		{"FROM base\nCOPY etc/passwd /x\n", "leaves the build context"},
		{"FROM base\nCOPY missing /x\n", "missing"},
		{"FROM base\nRUN --mount=type=bind,source=leak,target=/l true\n", "leaves the build context"},
		{"FROM base\nCOPY --chown=nobody x /x\n", "nobody: no such name"},
		{"FROM base\nRUN --mount=type=bind,source=../secret,target=/l true\n", "outside the build context"},
	} {
		f := newFake()
		_, _, err := build(t, f, dir, tc.recipe, Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("build %q = %v, want an error containing %q", tc.recipe, err, tc.want)
		}
		if len(f.runs) != 0 || len(f.images) != 1 {
			t.Errorf("build %q made %d images and ran %d steps, want none", tc.recipe, len(f.images)-1, len(f.runs))
		}
	}
	if _, _, err := build(t, newFake(), filepath.Join(outer, "nope"), "FROM base\n", Options{}); err == nil || !strings.Contains(err.Error(), "build context") {
		t.Errorf("a missing context: %v, want a build context error", err)
	}
}

func TestAddUnpacksTar(t *testing.T) {
	dir := t.TempDir()
	var b bytes.Buffer
	gz := gzip.NewWriter(&b)
	tw := tar.NewWriter(gz)
	for _, e := range []struct{ name, data string }{{"pkg/", ""}, {"pkg/bin", "bin"}, {"../../escape", "e"}} {
		typ := byte(tar.TypeReg)
		if strings.HasSuffix(e.name, "/") {
			typ = tar.TypeDir
		}
		tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: typ, Mode: 0o755, Size: int64(len(e.data))})
		tw.Write([]byte(e.data))
	}
	tw.Close()
	gz.Close()
	if err := os.WriteFile(filepath.Join(dir, "pkg.tar.gz"), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	writeTree(t, dir, map[string]string{"plain": "p"})
	f := newFake()
	id, _, err := build(t, f, dir, "FROM base\nADD pkg.tar.gz /opt/\nADD plain /p\nCOPY pkg.tar.gz /raw/\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if h, d := f.find(id, "/opt/pkg/bin"); h == nil || d != "bin" {
		t.Errorf("/opt/pkg/bin = %v %q, want the unpacked file", h, d)
	}
	if h, d := f.find(id, "/opt/escape"); h == nil || d != "e" {
		t.Errorf("../../escape landed elsewhere than /opt/escape: %v %q", h, d)
	}
	if h, d := f.find(id, "/p"); h == nil || d != "p" {
		t.Errorf("/p = %v %q", h, d)
	}
	if h, _ := f.find(id, "/raw/pkg.tar.gz"); h == nil {
		t.Errorf("COPY unpacked the archive; want it copied as a file")
	}
}

func TestRunMountsAndFailure(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"package.json": "{}"})
	f := newFake()
	f.failOn = "boom"
	_, _, err := build(t, f, dir, `FROM base
WORKDIR /work
RUN --mount=type=cache,target=/root/.npm --mount=type=cache,id=apt,target=/var/cache/apt --mount=type=bind,source=package.json,target=pkg.json --mount=type=tmpfs,target=/tmp echo ok
RUN echo boom
RUN echo never
`, Options{})
	var se *StepError
	if !errors.As(err, &se) || se.Line != 4 || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("build = %v, want a StepError at line 4", err)
	}
	if len(f.runs) != 2 {
		t.Fatalf("ran %d steps, want 2 (none after the failure)", len(f.runs))
	}
	want := []Mount{
		{Type: "cache", Target: "/root/.npm"},
		{Type: "cache", Target: "/var/cache/apt", ID: "apt"},
		{Type: "bind", Target: "/work/pkg.json", Source: filepath.Join(dir, "package.json"), ReadOnly: true},
		{Type: "tmpfs", Target: "/tmp"},
	}
	if diff := cmp.Diff(want, f.runs[0].Mounts); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
	// A changed bound file is another step.
	writeTree(t, dir, map[string]string{"package.json": `{"a":1}`})
	f.failOn = ""
	runs := len(f.runs)
	if _, _, err := build(t, f, dir, "FROM base\nWORKDIR /work\nRUN --mount=type=bind,source=package.json,target=pkg.json --mount=type=cache,target=/root/.npm --mount=type=cache,id=apt,target=/var/cache/apt --mount=type=tmpfs,target=/tmp echo ok\n", Options{}); err != nil || len(f.runs) != runs+1 {
		t.Errorf("after changing a bound file: %v, %d runs; want the step run again", err, len(f.runs)-runs)
	}
}

func TestMultiStageAndScratch(t *testing.T) {
	f := newFake()
	id, _, err := build(t, f, t.TempDir(), `FROM base AS builder
RUN make
FROM builder
ENV X=1
FROM scratch
COPY <<EOF /hello
hi
EOF
`, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if img := f.images[id]; img.parent != "" {
		t.Errorf("the scratch stage's image has parent %s, want none", img.parent)
	}
	if h, d := f.find(id, "/hello"); h == nil || d != "hi\n" {
		t.Errorf("/hello = %v %q", h, d)
	}
	if _, _, err := build(t, newFake(), t.TempDir(), "FROM scratch\nRUN true\n", Options{}); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("RUN on scratch = %v, want an error at line 2", err)
	}
	if _, _, err := build(t, newFake(), t.TempDir(), "FROM nosuch\n", Options{}); err == nil || !strings.Contains(err.Error(), "line 1: FROM nosuch: snapshot nosuch: not found") {
		t.Errorf("unknown FROM = %v", err)
	}
}

// A stage whose base sets no PATH (scratch, or an image without one) has
// buildkit's default PATH in its configuration: what ENV $PATH expands to
// and what the image records, as docker build and podman build do.
func TestDefaultPath(t *testing.T) {
	const def = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, c := range []struct{ recipe, want string }{
		{"FROM scratch\nENV X=$PATH:/opt/bin\n", def + " X=" + strings.TrimPrefix(def, "PATH=") + ":/opt/bin"},
		{"FROM scratch\nCOPY <<EOF /hello\nhi\nEOF\n", def},
		{"FROM bare\nENV PATH=/opt/bin:$PATH\n", "PATH=/opt/bin:" + strings.TrimPrefix(def, "PATH=")},
		{"FROM bare\nRUN true\n", def},
		{"FROM scratch AS a\nENV X=1\nFROM a\nENV Y=2\n", def + " X=1 Y=2"},
		{"FROM base\nENV X=$PATH\n", "PATH=/bin X=/bin"}, // the image's own
	} {
		f := newFake()
		id, _, err := build(t, f, t.TempDir(), c.recipe, Options{})
		if err != nil {
			t.Errorf("%q: %v", c.recipe, err)
			continue
		}
		if got := strings.Join(f.images[id].cfg.Env, " "); got != c.want {
			t.Errorf("%q: Env = %s, want %s", c.recipe, got, c.want)
		}
	}
}

func TestCopyFrom(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"src/main.c": "int main(){}", "src/util.c": "x"})
	f := newFake()
	recipe := `FROM base AS builder
COPY src/ /src/
RUN make
FROM base
COPY --from=builder --chown=7:8 /src/ /app/
COPY --from=0 src/main.c /bin/
COPY --from=base /etc/passwd /copied-passwd
`
	id, evs, err := build(t, f, dir, recipe, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"/app/main.c": "int main(){}", "/app/util.c": "x", "/bin/main.c": "int main(){}", "/copied-passwd": f.images["base"].data["etc/passwd"]} {
		if h, d := f.find(id, p); h == nil || d != want {
			t.Errorf("%s = %v %q, want %q", p, h, d, want)
		}
	}
	if h, _ := f.find(id, "/app/main.c"); h == nil || h.Uid != 7 || h.Gid != 8 {
		t.Errorf("--chown: /app/main.c = %+v, want 7:8", h)
	}
	if h, _ := f.find(id, "/src/main.c"); h != nil {
		t.Errorf("the last stage has the builder's /src/main.c: only what COPY --from names is copied")
	}
	if len(evs) != 7 {
		t.Fatalf("%d steps, want 7", len(evs))
	}
	// Unchanged: all cached. A changed source in the builder: the
	// copy from it runs again (and what follows).
	if _, evs, err = build(t, f, dir, recipe, Options{}); err != nil || slices.ContainsFunc(evs, func(e Event) bool { return !e.Cached }) {
		t.Errorf("rebuild = %v, %+v; want every step cached", err, evs)
	}
	writeTree(t, dir, map[string]string{"src/util.c": "y"})
	if _, evs, err = build(t, f, dir, recipe, Options{}); err != nil || !evs[3].Cached || evs[4].Cached {
		t.Errorf("after a change in the builder's sources = %v, %+v; want step 5 run", err, evs)
	}
	// --target: the builder's image, the later stage not built.
	runs := len(f.runs)
	tid, evs, err := build(t, f, dir, recipe, Options{Target: "builder", NoCache: true})
	if err != nil || len(evs) != 3 || len(f.runs) != runs+1 {
		t.Fatalf("--target builder = %v, %d steps, %d runs; want 3 steps, 1 run", err, len(evs), len(f.runs)-runs)
	}
	if h, _ := f.find(tid, "/src/util.c"); h == nil {
		t.Errorf("--target builder: no /src/util.c in its image")
	}
	if _, _, err := build(t, f, dir, recipe, Options{Target: "nosuch"}); err == nil || !strings.Contains(err.Error(), `no stage called "nosuch"`) {
		t.Errorf("--target nosuch = %v", err)
	}
	for _, tc := range []struct{ recipe, want string }{
		{"FROM base\nCOPY --from=later /a /b\nFROM base AS later\n", "line 2: COPY --from=later /a /b: --from=later: the stage is not built before this one"},
		{"FROM base\nCOPY --from=3 /a /b\n", "--from=3: stage 3 is not built before this one"},
		{"FROM base\nCOPY --from=nosuch /a /b\n", "--from=nosuch: no stage of that name, and snapshot nosuch: not found"},
		{"FROM base AS b\nFROM base\nCOPY --from=b ../../etc/passwd /x\n", "line 3: COPY --from=b ../../etc/passwd /x: --from=b: ../../etc/passwd: leaves the image's root"},
		{"FROM base AS b\nFROM base\nCOPY --from=b /a/../../x /x\n", "leaves the image's root"},
		{"FROM scratch AS e\nFROM base\nCOPY --from=e /a /x\n", "--from=e: the image has no files"},
	} {
		if _, _, err := build(t, newFake(), dir, tc.recipe, Options{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("build(%q) = %v, want an error containing %q", tc.recipe, err, tc.want)
		}
	}
}

// An exception in .dockerignore (or --exclude) takes back what is under a
// directory the patterns exclude, as docker walks into such a directory:
// the allowlist "*" then "!src/**" copied nothing, and "docs" then
// "!docs/readme" left the readme out; a COPY naming such a directory
// copies what the exceptions take back.
func TestCopyIgnoreExceptions(t *testing.T) {
	for _, tc := range []struct {
		ignore, copy string
		want, not    []string
	}{
		{"*\n!src/**\n", "COPY . /all/", []string{"/all/src/main.c", "/all/src/sub/x.c"}, []string{"/all/package.json", "/all/docs/readme"}},
		{"*\n!package.json\n!src/sub/x.c\n", "COPY . /all/", []string{"/all/package.json", "/all/src/sub/x.c"}, []string{"/all/src/main.c"}},
		{"docs\n!docs/readme\n", "COPY . /all/", []string{"/all/docs/readme", "/all/src/main.c"}, []string{"/all/docs/draft"}},
		{"*\n!src/main.c\n", "COPY src /s/", []string{"/s/main.c"}, []string{"/s/sub/x.c"}},
	} {
		dir := t.TempDir()
		writeTree(t, dir, map[string]string{
			"package.json": "{}", "src/main.c": "m", "src/sub/x.c": "x", "docs/readme": "r", "docs/draft": "d",
			".dockerignore": tc.ignore,
		})
		f := newFake()
		id, _, err := build(t, f, dir, "FROM base\n"+tc.copy+"\n", Options{})
		if err != nil {
			t.Errorf("%q with %q: %v", tc.copy, tc.ignore, err)
			continue
		}
		for _, p := range tc.want {
			if h, _ := f.find(id, p); h == nil {
				t.Errorf("%q with .dockerignore %q: %s missing", tc.copy, tc.ignore, p)
			}
		}
		for _, p := range tc.not {
			if h, _ := f.find(id, p); h != nil {
				t.Errorf("%q with .dockerignore %q: %s copied, want it ignored", tc.copy, tc.ignore, p)
			}
		}
	}
}

// A --build-arg that no ARG declares changes nothing: the build says so,
// as docker does ("build-args [X] were not consumed"), so a misspelt
// name does not go unnoticed; the proxy variables are exempt.
func TestUnusedBuildArgs(t *testing.T) {
	recipe := "ARG BASE=base\nFROM $BASE\nARG VERSION\nRUN echo $VERSION\n"
	for _, tc := range []struct {
		args map[string]string
		want string
	}{
		{map[string]string{"VERISON": "2", "BASE": "base", "HTTP_PROXY": "http://p", "A": "1"}, "warning: build arguments no ARG declares, unused: A, VERISON\n"},
		{map[string]string{"VERSION": "2", "BASE": "base", "no_proxy": "x"}, ""},
	} {
		var stderr bytes.Buffer
		if _, _, err := build(t, newFake(), t.TempDir(), recipe, Options{Args: tc.args, Stderr: &stderr}); err != nil {
			t.Fatal(err)
		}
		if stderr.String() != tc.want {
			t.Errorf("build with %v: stderr %q, want %q", tc.args, stderr.String(), tc.want)
		}
	}
}

// TestEntrypointKeepsTheStagesCmd: ENTRYPOINT resets the CMD a stage
// inherited (from its base or an earlier stage), not one the stage set
// before it, as docker does: CMD ["x"] then ENTRYPOINT ["/e"] is /e x. It
// dropped the stage's own CMD; and the two cases, whose ENTRYPOINT steps
// have the same parent and text, must not share a cache entry.
func TestEntrypointKeepsTheStagesCmd(t *testing.T) {
	f := newFake()
	base := f.images["base"]
	base.cfg.Cmd = []string{"/bin/sh"}
	for _, tc := range []struct {
		recipe string
		want   []string
	}{
		{"FROM base\nENTRYPOINT [\"/e\"]\n", nil},
		{"FROM base AS a\nCMD [\"x\"]\nFROM a\nENTRYPOINT [\"/e\"]\n", nil},
		{"FROM base\nCMD [\"x\"]\nENTRYPOINT [\"/e\"]\n", []string{"x"}},
		{"FROM base\nCMD y\nLABEL l=1\nENTRYPOINT /e\n", []string{"/bin/sh", "-c", "y"}},
	} {
		id, _, err := build(t, f, t.TempDir(), tc.recipe, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := f.images[id].cfg.Cmd; !slices.Equal(got, tc.want) {
			t.Errorf("%q: Cmd = %q, want %q", tc.recipe, got, tc.want)
		}
	}
}

// TestShellCarriesOver: SHELL holds in a stage FROM the stage that set it
// (docker keeps it in the image), for RUN and shell-form CMD; and a
// shell-form CMD's cache entry is the SHELL's: the same CMD after another
// SHELL is not the first one's image.
func TestShellCarriesOver(t *testing.T) {
	f := newFake()
	id, _, err := build(t, f, t.TempDir(), "FROM base AS a\nSHELL [\"/bin/bash\", \"-c\"]\nFROM a\nRUN make\nCMD serve\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.runs[0].Argv, []string{"/bin/bash", "-c", "make"}; !slices.Equal(got, want) {
		t.Errorf("RUN in a stage FROM a SHELL's stage: argv %q, want %q", got, want)
	}
	if got, want := f.images[id].cfg.Cmd, []string{"/bin/bash", "-c", "serve"}; !slices.Equal(got, want) {
		t.Errorf("CMD in a stage FROM a SHELL's stage = %q, want %q", got, want)
	}
	f = newFake()
	for _, tc := range []struct {
		recipe string
		want   []string
	}{
		{"FROM base\nCMD serve\n", []string{"/bin/sh", "-c", "serve"}},
		{"FROM base\nSHELL [\"/bin/bash\", \"-c\"]\nCMD serve\n", []string{"/bin/bash", "-c", "serve"}},
		{"FROM base\nSHELL [\"/bin/bash\", \"-c\"]\nENTRYPOINT serve\n", []string{"/bin/bash", "-c", "serve"}},
		{"FROM base\nENTRYPOINT serve\n", []string{"/bin/sh", "-c", "serve"}},
	} {
		id, _, err := build(t, f, t.TempDir(), tc.recipe, Options{})
		if err != nil {
			t.Fatal(err)
		}
		cfg := f.images[id].cfg
		if got := append(cfg.Entrypoint, cfg.Cmd...); !slices.Equal(got, tc.want) {
			t.Errorf("%q: ENTRYPOINT+CMD = %q, want %q", tc.recipe, got, tc.want)
		}
	}
}

// TestRunHeredocs: a command with a heredoc (RUN cat <<EOF > file, the
// common way to write a file) is given to the shell whole, as docker
// does; it was refused. RUN <<-EOF drops every line's leading tabs.
func TestRunHeredocs(t *testing.T) {
	f := newFake()
	_, _, err := build(t, f, t.TempDir(), "FROM base\nARG V=1\n"+
		"RUN <<-EOF\n\techo a\n\techo b\nEOF\n"+
		"RUN <<EOF\necho plain\nEOF\n"+
		"RUN cat <<EOF > /conf\na=$V\nEOF\n"+
		"RUN <<A cat > /h\nx\nA\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"echo a\necho b\n", "echo plain\n", "cat <<EOF > /conf\na=$V\nEOF", "<<A cat > /h\nx\nA"}
	if len(f.runs) != len(want) {
		t.Fatalf("%d RUN steps ran, want %d", len(f.runs), len(want))
	}
	for i, r := range f.runs {
		if got := r.Argv; !slices.Equal(got, []string{"/bin/sh", "-c", want[i]}) {
			t.Errorf("RUN %d: argv %q, want the script %q", i+1, got, want[i])
		}
	}
}

// TestCopyHeredocExpands: an unquoted COPY <<EOF has the build's
// variables expanded in it (quotes kept, \$ a literal $, as in a shell's
// heredoc), as docker does; a quoted one not. It was copied as written.
func TestCopyHeredocExpands(t *testing.T) {
	f := newFake()
	id, _, err := build(t, f, t.TempDir(), "FROM base\nARG V=1\nENV E=e\n"+
		"COPY <<EOF /expanded\nv=$V \"q\" ${E} \\$V\nEOF\n"+
		"COPY <<'EOF' /literal\nv=$V\nEOF\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"/expanded": "v=1 \"q\" e $V\n", "/literal": "v=$V\n"} {
		if _, d := f.find(id, p); d != want {
			t.Errorf("%s = %q, want %q", p, d, want)
		}
	}
}

// TestRunHeredocShebang: RUN <<EOF whose heredoc starts with "#!" runs
// it with that interpreter (docker writes it to a file and executes it);
// it was run by /bin/sh, a python script as shell commands.
func TestRunHeredocShebang(t *testing.T) {
	f := newFake()
	_, _, err := build(t, f, t.TempDir(), "FROM base\nRUN <<EOF\n#!/usr/bin/env  python3 -u \nprint('hi')\nEOF\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	script := "#!/usr/bin/env  python3 -u \nprint('hi')\n"
	want := "exec '/usr/bin/env' 'python3 -u' /dev/fd/3 3<<'"
	if got := f.runs[0].Argv; len(got) != 3 || !strings.HasPrefix(got[2], want) || !strings.Contains(got[2], "'\n"+script+"LIGHTBOX_SCRIPT_") {
		t.Errorf("argv %q, want the script run as %q… with the heredoc %q", got, want, script)
	}
}

// TestCopyOntoAFile: a COPY that would make a directory where the image
// has a file, or put files into it, is an error naming it, as docker's
// "cannot copy to non-directory"; it replaced the file with the
// directory. A file over a file is copied.
func TestCopyOntoAFile(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"d/x": "x", "f": "f", "g": "g"})
	for _, c := range []string{"COPY d /etc/passwd", "COPY f /etc/passwd/", "COPY f g /etc/passwd", "COPY d/ /etc/passwd/sub/", "COPY f /etc/passwd/x"} {
		f := newFake()
		_, _, err := build(t, f, dir, "FROM base\n"+c+"\n", Options{})
		if err == nil || !strings.Contains(err.Error(), "line 2: "+c+": /etc/passwd: the image has a file there") {
			t.Errorf("%s: %v, want an error naming /etc/passwd", c, err)
		}
	}
	// A directory onto a file, with or without a trailing "/": buildkit's
	// "cannot copy to non-directory", podman's "already exists but is
	// not a directory".
	for _, c := range []string{"COPY --from=a /etc /etc/passwd/", "COPY --from=a /etc /etc/passwd", "COPY --from=a /etc/group /etc/passwd/x"} {
		_, _, err := build(t, newFake(), dir, "FROM base AS a\nFROM base\n"+c+"\n", Options{})
		if err == nil || !strings.Contains(err.Error(), "line 3: "+c+": /etc/passwd: the image has a file there") {
			t.Errorf("%s: %v, want an error naming /etc/passwd", c, err)
		}
	}
	f := newFake()
	id, _, err := build(t, f, dir, "FROM base\nCOPY f /etc/passwd\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if h, d := f.find(id, "/etc/passwd"); h == nil || d != "f" {
		t.Errorf("COPY f /etc/passwd: %v %q, want f's content", h, d)
	}
	// A file over a file, from a stage: copied.
	f = newFake()
	id, _, err = build(t, f, dir, "FROM base AS a\nFROM base\nCOPY --from=a /etc/group /etc/passwd\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if h, d := f.find(id, "/etc/passwd"); h == nil || !strings.HasPrefix(d, "root:x:0:\n") {
		t.Errorf("COPY --from=a /etc/group /etc/passwd: %v %q, want /etc/group's content", h, d)
	}
}
