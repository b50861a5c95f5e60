package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/beamhop/lightbox/internal/lockfile"
	"github.com/beamhop/lightbox/internal/testutil"
	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var (
	testManifest = digest.Digest("sha256:" + sixtyFour('a'))
	testLayer    = digest.Digest("sha256:" + sixtyFour('b'))
)

func sixtyFour(c byte) string { return string(bytes.Repeat([]byte{c}, 64)) }

// A record must give back the Config the image config had, nil and empty
// lists and maps told apart, whichever decoder reads it; jsonlite and
// encoding/json must agree on every record jsonlite takes.
func TestLaunchRecordRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		c    ispec.ImageConfig
		lite bool // jsonlite takes it (no escape needed)
	}{
		{ispec.ImageConfig{}, true},
		{ispec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"sh"}}, true},
		{ispec.ImageConfig{Env: []string{}, Entrypoint: []string{}, Cmd: []string{}, Labels: map[string]string{}}, true},
		{ispec.ImageConfig{WorkingDir: "/w", User: "ü", Entrypoint: []string{"/e", "<&>"}, Labels: map[string]string{"a": "b", "c": ""}}, true},
		{ispec.ImageConfig{Cmd: []string{`echo "quoted" \ é`, "tab\there", "nl\n"}, Labels: map[string]string{`k"`: "v\\"}}, false},
		{ispec.ImageConfig{Env: []string{"A=\u2028"}}, false},
		{ispec.ImageConfig{Cmd: []string{"postgres"}, StopSignal: "SIGINT"}, true},
	} {
		c := tc.c
		m := &ispec.Manifest{
			Config: ispec.Descriptor{Size: 282},
			Layers: []ispec.Descriptor{{Digest: testLayer, Size: 7}, {Digest: testLayer, Size: 0}},
		}
		want := recordOf(testManifest, m, &ispec.Image{Config: c})
		b, err := encodeLaunchRecord(want)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := decodeLaunchRecord(b, testManifest)
		if !ok {
			t.Fatalf("decodeLaunchRecord(%s) refused it", b)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("record of %+v (-want +got):\n%s", c, diff)
		}
		wantCfg := Config{Env: c.Env, WorkingDir: c.WorkingDir, User: c.User, Entrypoint: c.Entrypoint, Cmd: c.Cmd, Labels: c.Labels, StopSignal: c.StopSignal}
		if diff := cmp.Diff(wantCfg, got.Config.config()); diff != "" {
			t.Errorf("config of %+v (-want +got):\n%s", c, diff)
		}
		_, body, _ := bytes.Cut(b, []byte{'\n'})
		lite, ok := parseLaunchRecord(body)
		if ok != tc.lite {
			t.Errorf("jsonlite takes %s: %v, want %v", body, ok, tc.lite)
		}
		if ok {
			std := new(launchRecord)
			if err := json.Unmarshal(body, std); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(std, lite); diff != "" {
				t.Errorf("jsonlite and encoding/json differ on %s (-json +jsonlite):\n%s", body, diff)
			}
		}
	}
}

// A record is ignored when torn or damaged, when it names another
// manifest, and when it would make a path of something not a digest, even
// with its checksum right (forged).
func TestLaunchRecordRefused(t *testing.T) {
	m := &ispec.Manifest{Layers: []ispec.Descriptor{{Digest: testLayer, Size: 7}}}
	good, err := encodeLaunchRecord(recordOf(testManifest, m, &ispec.Image{}))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := decodeLaunchRecord(good, testManifest); !ok {
		t.Fatalf("a good record was refused: %s", good)
	}
	forge := func(r launchRecord) []byte {
		body, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(body)
		return append([]byte(hex.EncodeToString(sum[:])+"\n"), body...)
	}
	ok := launchRecord{Format: launchFormat, Manifest: testManifest.String(), Layers: []launchLayer{{Digest: testLayer.String(), Size: 7}}}
	bad := func(f func(r *launchRecord)) []byte {
		r := ok
		r.Layers = append([]launchLayer(nil), ok.Layers...)
		f(&r)
		return forge(r)
	}
	for name, b := range map[string][]byte{
		"empty": nil,
		// An older lightbox's record lacks fields (stopSignal): it
		// cannot say the image has none, so it is rewritten.
		"older format":   bad(func(r *launchRecord) { r.Format = 0 }),
		"torn":           good[:len(good)-10],
		"no checksum":    good[65:],
		"damaged":        bytes.Replace(good, []byte(`"size":7`), []byte(`"size":8`), 1),
		"other manifest": bad(func(r *launchRecord) { r.Manifest = "sha256:" + sixtyFour('c') }),
		"path layer":     bad(func(r *launchRecord) { r.Layers[0].Digest = "sha256:../../../etc" }),
		"short layer":    bad(func(r *launchRecord) { r.Layers[0].Digest = "sha256:abc" }),
		"negative size":  bad(func(r *launchRecord) { r.Layers[0].Size = -1 }),
		"no layers":      bad(func(r *launchRecord) { r.Layers = nil }),
		"negative cfg":   bad(func(r *launchRecord) { r.ConfigSize = -1 }),
		"not json":       append(append([]byte(nil), good[:65]...), "{"...),
	} {
		if r, ok := decodeLaunchRecord(b, testManifest); ok {
			t.Errorf("%s: decodeLaunchRecord(%q) = %+v, want refused", name, b, r)
		}
	}
	if _, ok := decodeLaunchRecord(forge(ok), testManifest); !ok {
		t.Error("the forge helper makes records refused for the wrong reason")
	}
}

// An import records its manifest for launches, a Lease that finds no
// record writes one, a record put in another manifest's place is not
// used, and GC removes the record with its manifest.
func TestLeaseLaunchRecord(t *testing.T) {
	ctx := t.Context()
	s := openStore(t)
	rootfs := testutil.BusyboxRootfs(t)
	imported, err := s.Import(ctx, "x", rootfs, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.launchFile(digest.Digest(imported.Digest))); err != nil {
		t.Fatalf("no record after Import(x): %v", err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "y-only"), []byte("y"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, "y", rootfs, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	// What Get says, taken first: Get writes a missing record too.
	wants := map[string]*Snapshot{}
	for _, n := range []string{"x", "y"} {
		sn, err := s.Get(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		sn.Size = 0
		wants[n] = sn
	}
	lease := func(name string) *Snapshot {
		t.Helper()
		want := wants[name]
		l, got, err := s.Lease(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("Lease(%s) differs from Get (-Get +Lease):\n%s", name, diff)
		}
		return got
	}
	x, y := lease("x"), lease("y")
	if x.Digest == y.Digest {
		t.Fatal("x and y have the same manifest")
	}
	xrec, yrec := s.launchFile(digest.Digest(x.Digest)), s.launchFile(digest.Digest(y.Digest))
	xb, err := os.ReadFile(xrec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(yrec); err != nil {
		t.Fatalf("no record of y: %v", err)
	}
	lease("y")
	if _, err := os.Stat(yrec); err != nil {
		t.Fatalf("no record after Lease(y) found none: %v", err)
	}
	if err := os.WriteFile(yrec, xb, 0o600); err != nil {
		t.Fatal(err)
	}
	lease("y") // x's record in y's place: ignored, rewritten
	if b, err := os.ReadFile(yrec); err != nil || bytes.Equal(b, xb) {
		t.Fatalf("y's record after a lease = %s, %v; want it rewritten", b, err)
	}
	if err := s.Remove(ctx, "y"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(yrec); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("y's record after Remove(y): %v, want it gone", err)
	}
	if _, err := os.Stat(xrec); err != nil {
		t.Errorf("x's record after Remove(y): %v", err)
	}
}

// parseRefs takes with jsonlite what writeRefs writes, and agrees with
// encoding/json on it; what jsonlite declines still parses.
func TestParseRefs(t *testing.T) {
	for i, c := range []refsCache{
		{Index: "sha256:" + sixtyFour('1'), Refs: map[string]ispec.Descriptor{}},
		{Index: "sha256:" + sixtyFour('1'), Refs: map[string]ispec.Descriptor{
			"bb": {MediaType: ispec.MediaTypeImageManifest, Digest: testManifest, Size: 406, Annotations: map[string]string{annotationCreated: "2026-11-30T21:20:44.120468731Z", ispec.AnnotationRefName: "bb"}},
			"x":  {Digest: testManifest},
		}},
		{Index: "sha256:" + sixtyFour('1'), Refs: map[string]ispec.Descriptor{
			"p": {Digest: testManifest, Platform: &ispec.Platform{OS: "linux"}, URLs: []string{"u"}, Annotations: map[string]string{"q": `"`}},
		}},
	} {
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if i < 2 && !parseRefsLite(b, new(refsCache)) {
			t.Errorf("jsonlite declined %s", b)
		}
		var std refsCache
		if err := json.Unmarshal(b, &std); err != nil {
			t.Fatal(err)
		}
		var got refsCache
		if !parseRefs(b, &got) {
			t.Fatalf("parseRefs(%s) failed", b)
		}
		if diff := cmp.Diff(std, got); diff != "" {
			t.Errorf("parseRefs(%s) (-json +parseRefs):\n%s", b, diff)
		}
		// What writeRefs writes reads back the same, with either decoder;
		// by hand exactly when jsonlite can read it back.
		if _, ok := encodeRefsLite(c); ok != (i < 2) {
			t.Errorf("encodeRefsLite of case %d: ok %v", i, ok)
		}
		eb, err := encodeRefs(c)
		if err != nil {
			t.Fatal(err)
		}
		var back refsCache
		if err := json.Unmarshal(eb, &back); err != nil {
			t.Fatalf("encodeRefs wrote %s: %v", eb, err)
		}
		if diff := cmp.Diff(std, back); diff != "" {
			t.Errorf("encodeRefs wrote %s (-want +got):\n%s", eb, diff)
		}
		if got := (refsCache{}); parseRefsLite(eb, &got) != (i < 2) {
			t.Errorf("jsonlite on what encodeRefs wrote (%s): took it %v", eb, i >= 2)
		} else if i < 2 {
			if diff := cmp.Diff(std, got); diff != "" {
				t.Errorf("jsonlite read %s (-want +got):\n%s", eb, diff)
			}
		}
	}
	var lite refsCache
	for _, b := range []string{`{"index":"a","refs":{"x":{"digest":"d","size":1}}}`, `{"index":"a","refs":{}}`} {
		if !parseRefsLite([]byte(b), &lite) {
			t.Errorf("jsonlite declined %s", b)
		}
	}
	for _, b := range []string{``, `{"index":"sha2`, `{"index":1}`, `[]`} {
		var c refsCache
		if parseRefs([]byte(b), &c) && c.Index != "" {
			t.Errorf("parseRefs(%s) = %+v", b, c)
		}
	}
}

// parseIndexLite agrees with encoding/json on an index like umoci writes
// and declines one with anything it does not know.
func TestParseIndexLite(t *testing.T) {
	ctx := t.Context()
	s := openStore(t)
	if _, err := s.Import(ctx, "x", testutil.BusyboxRootfs(t), ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	real, err := os.ReadFile(filepath.Join(s.ociDir(), "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	made, err := json.Marshal(ispec.Index{MediaType: ispec.MediaTypeImageIndex, Manifests: []ispec.Descriptor{
		{MediaType: ispec.MediaTypeImageManifest, Digest: testManifest, Size: 1, Annotations: map[string]string{ispec.AnnotationRefName: "a"}},
		{MediaType: ispec.MediaTypeImageManifest, Digest: testLayer, Size: 2, Annotations: map[string]string{annotationBuildKey: "k"}},
		{Digest: testLayer},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{real, made} {
		var idx ispec.Index
		if err := json.Unmarshal(b, &idx); err != nil {
			t.Fatal(err)
		}
		got, ok := parseIndexLite(b)
		if !ok {
			t.Fatalf("parseIndexLite declined %s", b)
		}
		if diff := cmp.Diff(idx.Manifests, got); diff != "" {
			t.Errorf("parseIndexLite(%s) (-json +jsonlite):\n%s", b, diff)
		}
	}
	for _, b := range []string{
		`{"schemaVersion":2,"manifests":[{"digest":"d","platform":{"os":"linux"}}]}`,
		`{"schemaVersion":2,"manifests":[],"annotations":{"a":"b"}}`,
		`{"schemaVersion":2,"manifests":null}`,
		`{"schemaVersion":2}`,
		`{"schemaVersion":2,"manifests":[{"digest":"d\u0041"}]}`,
		`{"schemaVersion":2,"Manifests":[]}`,
	} {
		if got, ok := parseIndexLite([]byte(b)); ok {
			t.Errorf("parseIndexLite(%s) = %+v, want declined", b, got)
		}
	}
}

// TestGCImageLeases: gc removes the lease file of an image the store no
// longer holds (a build step's parent, leased by manifest digest), keeps
// one that is held and one of an image still there.
func TestGCImageLeases(t *testing.T) {
	ctx := t.Context()
	s := openStore(t)
	sn, err := s.Import(ctx, "x", testutil.BusyboxRootfs(t), ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l, _, _, err := s.LeaseImage(ctx, sn.Digest, "")
	if err != nil {
		t.Fatal(err)
	}
	l.Close() // the file stays: x is still there
	present := s.imageLeaseFile(digest.Digest(sn.Digest))
	gone := s.imageLeaseFile(digest.FromString("an image no longer stored"))
	heldGone := s.imageLeaseFile(digest.FromString("another, leased"))
	for _, p := range []string{gone, heldGone} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hl, err := lockfile.Shared(ctx, heldGone)
	if err != nil {
		t.Fatal(err)
	}
	defer hl.Close()
	if err := s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(gone); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lease file of an image no longer stored after GC: %v, want it gone", err)
	}
	for _, p := range []string{present, heldGone} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("lease file %s after GC: %v, want it kept", p, err)
		}
	}
}
