package volstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/errdefs"
	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/lockfile"
	"github.com/beamhop/lightbox/internal/names"
	"github.com/beamhop/lightbox/internal/rmtree"
	"github.com/beamhop/lightbox/internal/testutil"
	"github.com/beamhop/lightbox/volstore"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// countingHandler counts "volume created" records, and those of an
// AcquireToFill that waits for another's Fill.
type countingHandler struct {
	slog.Handler
	created, waiting *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	switch r.Message {
	case "volume created":
		h.created.Add(1)
	case "volume: waiting for another sandbox to fill it":
		h.waiting.Add(1)
	}
	return nil
}

type fixture struct {
	root, tmp string
	m         idmap.Mapping
	created   atomic.Int64
	waiting   atomic.Int64
	s         *volstore.Store
}

func newStore(t *testing.T) *fixture {
	t.Helper()
	m, err := idmap.Detect()
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	f := &fixture{root: filepath.Join(base, "volumes"), tmp: filepath.Join(base, "tmp"), m: m}
	f.s = f.open(t)
	t.Cleanup(func() {
		// Free what the test left (loop mounts) before TempDir's cleanup.
		vols, _ := f.s.List(context.Background(), false)
		for _, v := range vols {
			f.s.Remove(context.Background(), v.Name)
		}
	})
	return f
}

func (f *fixture) open(t *testing.T) *volstore.Store {
	t.Helper()
	log := slog.New(countingHandler{Handler: slog.DiscardHandler, created: &f.created, waiting: &f.waiting})
	s, err := volstore.Open(t.Context(), volstore.Options{Root: f.root, TmpDir: f.tmp, Mapping: f.m, Logger: log})
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	return s
}

func defaults() volstore.CreateOptions { return volstore.CreateOptions{UID: -1, GID: -1} }

func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// volumeEntries lists the volume directories (not the lock directory).
func volumeEntries(t *testing.T, f *fixture) []string {
	var out []string
	for _, e := range entries(t, f.root) {
		if !strings.HasPrefix(e, ".") {
			out = append(out, e)
		}
	}
	return out
}

func TestEnsureIdempotent(t *testing.T) {
	f := newStore(t)
	ctx := t.Context()
	o := defaults()
	o.Labels = map[string]string{"app": "npm", "ttl": "30d"}
	v, created, err := f.s.Ensure(ctx, "npm-cache", o)
	if err != nil || !created {
		t.Fatalf("Ensure(new) = %v, %v, %v; want created", v, created, err)
	}
	if v.Backend != "dir" || v.QuotaMiB != 0 || v.CreatedAt.IsZero() || v.DataDir != filepath.Join(f.root, "npm-cache", "data") {
		t.Errorf("new volume = %+v", v)
	}
	if err := os.WriteFile(filepath.Join(v.DataDir, "pkg"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	o2 := defaults()
	o2.Labels = map[string]string{"other": "1"}
	v2, created, err := f.s.Ensure(ctx, "npm-cache", o2)
	if err != nil || created {
		t.Fatalf("Ensure(existing) = %v, %v, %v; want the existing volume", v2, created, err)
	}
	if diff := cmp.Diff(v, v2); diff != "" {
		t.Errorf("Ensure(existing, other options) changed the volume (-before +after):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(v2.DataDir, "pkg")); err != nil {
		t.Errorf("contents lost: %v", err)
	}
	got, err := f.s.Get(ctx, "npm-cache")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(v.Labels, got.Labels); diff != "" || got.Backend != "dir" {
		t.Errorf("Get after reopen: backend %q, labels diff %s", got.Backend, diff)
	}
	// meta.json records what inspect shows.
	data, err := os.ReadFile(filepath.Join(f.root, "npm-cache", "meta.json"))
	if err != nil || !strings.Contains(string(data), `"backend": "dir"`) || !strings.Contains(string(data), `"ttl": "30d"`) {
		t.Errorf("meta.json = %s, %v", data, err)
	}
	if _, err := f.s.Get(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
	}
	if err := f.s.Remove(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Remove(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := f.s.InUse(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("InUse(unknown) = %v, want ErrNotFound", err)
	}
	if got := entries(t, filepath.Join(f.root, ".locks")); len(got) != 1 {
		t.Errorf("lock files = %q, want only the existing volume's", got)
	}
}

func TestBadInputCreatesNothing(t *testing.T) {
	f := newStore(t)
	ctx := t.Context()
	for _, name := range []string{"../x", "a/b", "", strings.Repeat("a", 64), "a\x00b", "-x", ".x", "..", "a b"} {
		if _, _, err := f.s.Ensure(ctx, name, defaults()); !errors.Is(err, names.ErrInvalid) {
			t.Errorf("Ensure(%q) = %v, want ErrInvalid", name, err)
		}
		if _, _, err := f.s.Acquire(ctx, name, defaults()); !errors.Is(err, names.ErrInvalid) {
			t.Errorf("Acquire(%q) = %v, want ErrInvalid", name, err)
		}
		if err := f.s.Remove(ctx, name); !errors.Is(err, names.ErrInvalid) {
			t.Errorf("Remove(%q) = %v, want ErrInvalid", name, err)
		}
	}
	bad := []volstore.CreateOptions{
		{UID: -1, GID: -1, QuotaMiB: -1},
		{UID: -1, GID: -1, QuotaMiB: volstore.MaxQuotaMiB + 1},
		{UID: -1, GID: -1, Labels: map[string]string{"": "x"}},
		{UID: -1, GID: -1, Labels: map[string]string{"a=b": "x"}},
		{UID: -1, GID: -1, Labels: map[string]string{"k": "a\nb"}},
		{UID: -1, GID: -1, Labels: map[string]string{"k": "\x1b[2J"}},
		{UID: -1, GID: -1, Labels: map[string]string{"k\r": "v"}},
	}
	if os.Geteuid() == 0 {
		// Larger than the filesystem, below the filesystem's own overhead.
		bad = append(bad, volstore.CreateOptions{UID: -1, GID: -1, QuotaMiB: 1 << 30}, volstore.CreateOptions{UID: -1, GID: -1, QuotaMiB: 1})
	}
	for _, o := range bad {
		_, _, err := f.s.Ensure(ctx, "ok", o)
		if !errors.Is(err, volstore.ErrInvalidOption) {
			t.Errorf("Ensure(quota %d, labels %v) = %v, want ErrInvalidOption", o.QuotaMiB, o.Labels, err)
		}
	}
	if got := volumeEntries(t, f); len(got) != 0 {
		t.Errorf("volumes dir holds %q after bad input, want nothing", got)
	}
	if got := entries(t, f.tmp); len(got) != 0 {
		t.Errorf("tmp dir holds %q after bad input, want nothing", got)
	}
	if got := entries(t, filepath.Join(f.root, ".locks")); len(got) != 0 {
		t.Errorf("lock files left after bad input: %q", got)
	}
}

func TestQuotaRefusedRootless(t *testing.T) {
	testutil.RootlessOnly(t)
	f := newStore(t)
	o := defaults()
	o.QuotaMiB = 16
	_, _, err := f.s.Ensure(t.Context(), "big", o)
	if !errors.Is(err, errdefs.ErrQuotaUnsupported) || !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("Ensure(quota, rootless) = %v, want ErrQuotaUnsupported", err)
	}
	t.Logf("refusal: %v", err)
	for _, want := range []string{"rootless", "as root"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	var nr *volstore.NeedsRootError
	if !errors.As(err, &nr) || nr.Action.Owner == "" {
		t.Errorf("refusal %v: no root action to name", err)
	} else if want := (volstore.RootAction{Op: volstore.RootCreate, Owner: nr.Action.Owner, OwnerRoot: filepath.Dir(f.root), Volume: "big", QuotaMiB: 16}); nr.Action != want {
		t.Errorf("refusal's root action = %+v, want %+v", nr.Action, want)
	}
	if got := volumeEntries(t, f); len(got) != 0 {
		t.Errorf("volumes dir holds %q after the refusal", got)
	}
	if b, err := f.s.QuotaBackend(); b != "" || !errors.Is(err, errdefs.ErrQuotaUnsupported) {
		t.Errorf("QuotaBackend() = %q, %v", b, err)
	}
}

// TestConcurrentFirstUse: fifty first uses of one volume create it once
// and all succeed; racing Ensures with different options agree.
func TestConcurrentFirstUse(t *testing.T) {
	f := newStore(t)
	ctx := t.Context()
	const n = 50
	var wg sync.WaitGroup
	vols := make([]*volstore.Volume, n)
	errs := make([]error, n)
	leases := make([]*volstore.Lease, n)
	for i := range n {
		wg.Go(func() {
			o := defaults()
			o.Labels = map[string]string{"who": strconv.Itoa(i)}
			if i%2 == 0 {
				leases[i], vols[i], errs[i] = f.s.Acquire(ctx, "shared", o)
			} else {
				vols[i], _, errs[i] = f.s.Ensure(ctx, "shared", o)
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("use #%d: %v", i, errs[i])
		}
		if vols[i].CreatedAt != vols[0].CreatedAt || !cmpLabels(vols[i].Labels, vols[0].Labels) {
			t.Errorf("use #%d sees %v created %v, #0 sees %v created %v", i, vols[i].Labels, vols[i].CreatedAt, vols[0].Labels, vols[0].CreatedAt)
		}
	}
	if c := f.created.Load(); c != 1 {
		t.Errorf("volume created %d times, want 1", c)
	}
	if used, err := f.s.InUse(ctx, "shared"); err != nil || !used {
		t.Errorf("InUse with 25 leases = %v, %v", used, err)
	}
	if err := f.s.Remove(ctx, "shared"); !errors.Is(err, errdefs.ErrInUse) {
		t.Errorf("Remove while leased = %v, want ErrInUse", err)
	}
	for _, l := range leases {
		if l != nil {
			l.Close()
		}
	}
	if err := f.s.Remove(ctx, "shared"); err != nil {
		t.Errorf("Remove after the leases ended = %v", err)
	}
}

// TestConcurrentFirstUseProcesses: twenty processes (launches) using one
// new volume at once all succeed and see the one volume created.
func TestConcurrentFirstUseProcesses(t *testing.T) {
	f := newStore(t)
	const n = 20
	outs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), fmt.Sprintf("%s=first %s %s shared 0", envHelper, f.root, f.tmp))
			out, err := cmd.CombinedOutput()
			outs[i], errs[i] = strings.TrimSpace(string(out)), err
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || outs[i] != outs[0] {
			t.Errorf("process %d: %v: %s (process 0: %s)", i, errs[i], outs[i], outs[0])
		}
	}
	if got := volumeEntries(t, f); len(got) != 1 {
		t.Errorf("volumes = %q, want one", got)
	}
	if got := entries(t, f.tmp); len(got) != 0 {
		t.Errorf("tmp holds %q", got)
	}
}

func cmpLabels(a, b map[string]string) bool { return cmp.Equal(a, b) }

// TestLeaseDiesWithHolder: a lease handed to a child (the sandbox's init)
// outlives the parent's descriptor and dies with the child.
func TestLeaseDiesWithHolder(t *testing.T) {
	f := newStore(t)
	ctx := t.Context()
	l, v, err := f.s.Acquire(ctx, "cache", defaults())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "600")
	cmd.ExtraFiles = []*os.File{l.File()}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if err := f.s.Remove(ctx, "cache"); !errors.Is(err, errdefs.ErrInUse) {
		t.Fatalf("Remove while the child holds the lease = %v, want ErrInUse", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if used, err := f.s.InUse(ctx, "cache"); err != nil || used {
		t.Fatalf("InUse after the holder died = %v, %v; want false", used, err)
	}
	if err := f.s.Remove(ctx, "cache"); err != nil {
		t.Fatalf("Remove after the holder died = %v", err)
	}
	if _, err := os.Stat(v.DataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir after Remove: %v", err)
	}
	if got := volumeEntries(t, f); len(got) != 0 {
		t.Errorf("volumes dir holds %q after Remove", got)
	}
	if got := entries(t, filepath.Join(f.root, ".locks")); len(got) != 0 {
		t.Errorf("lock files left after Remove: %q", got)
	}
}

// TestRemoveRacingAcquire: a removal racing a use ends with one of them
// failing cleanly or in order; a user never gets a half-deleted volume.
func TestRemoveRacingAcquire(t *testing.T) {
	f := newStore(t)
	ctx := t.Context()
	for i := range 30 {
		v, _, err := f.s.Ensure(ctx, "racy", defaults())
		if err != nil {
			t.Fatal(err)
		}
		for j := range 20 {
			if err := os.WriteFile(filepath.Join(v.DataDir, "marker"+strconv.Itoa(j)), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		var (
			wg     sync.WaitGroup
			lease  *volstore.Lease
			got    *volstore.Volume
			aerr   error
			remErr error
		)
		wg.Go(func() { lease, got, aerr = f.s.Acquire(ctx, "racy", defaults()) })
		wg.Go(func() { remErr = f.s.Remove(ctx, "racy") })
		wg.Wait()
		if aerr != nil {
			t.Fatalf("round %d: Acquire = %v", i, aerr)
		}
		if remErr != nil && !errors.Is(remErr, errdefs.ErrInUse) {
			t.Fatalf("round %d: Remove = %v, want nil or ErrInUse", i, remErr)
		}
		ents, err := os.ReadDir(got.DataDir)
		if err != nil {
			t.Fatalf("round %d: the acquired volume's data dir: %v", i, err)
		}
		// Either the old volume whole (Remove refused) or a new empty one
		// (Remove went first): never a part.
		if want := map[bool]int{true: 0, false: 20}[remErr == nil]; len(ents) != want {
			t.Fatalf("round %d: acquired volume holds %d entries, want %d (remove err %v)", i, len(ents), want, remErr)
		}
		lease.Close()
		if err := f.s.Remove(ctx, "racy"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestListPruneAndTimes(t *testing.T) {
	f := newStore(t)
	ctx := t.Context()
	mk := func(name string, labels map[string]string) *volstore.Volume {
		o := defaults()
		o.Labels = labels
		v, _, err := f.s.Ensure(ctx, name, o)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	a := mk("a-tmp", map[string]string{"kind": "tmp"})
	mk("b-tmp", map[string]string{"kind": "tmp", "keep": ""})
	mk("c-cache", map[string]string{"kind": "cache"})
	mk("d-tmp", map[string]string{"kind": "tmp"})
	if err := os.WriteFile(filepath.Join(a.DataDir, "f"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	// lastUsedAt moves on use; createdAt does not.
	l, used, err := f.s.Acquire(ctx, "d-tmp", defaults())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if used.LastUsedAt.Before(used.CreatedAt) {
		t.Errorf("lastUsedAt %v before createdAt %v", used.LastUsedAt, used.CreatedAt)
	}
	if g, _ := f.s.Get(ctx, "d-tmp"); !g.LastUsedAt.Equal(used.LastUsedAt) {
		t.Errorf("lastUsedAt not recorded: %v, want %v", g.LastUsedAt, used.LastUsedAt)
	}

	list, err := f.s.List(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range list {
		got = append(got, v.Name)
		if v.UsageKnown {
			t.Errorf("List without size: %s usage known, want unknown for dir", v.Name)
		}
	}
	if diff := cmp.Diff([]string{"a-tmp", "b-tmp", "c-cache", "d-tmp"}, got); diff != "" {
		t.Errorf("List names (-want +got):\n%s", diff)
	}
	list, err = f.s.List(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if !list[0].UsageKnown || list[0].UsedBytes < 1<<20 {
		t.Errorf("List with size: %s used %d known %v, want >= 1 MiB", list[0].Name, list[0].UsedBytes, list[0].UsageKnown)
	}

	// Until before everything: nothing is old enough.
	if names, err := f.s.Prune(ctx, volstore.PruneFilter{Labels: []string{"kind=tmp"}, Until: a.CreatedAt.Add(-time.Hour)}, false); err != nil || len(names) != 0 {
		t.Errorf("Prune(until before all) = %v, %v; want nothing", names, err)
	}
	dry, err := f.s.Prune(ctx, volstore.PruneFilter{Labels: []string{"kind=tmp"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a-tmp", "b-tmp"}, dry); diff != "" {
		t.Errorf("Prune dry run (-want +got):\n%s", diff)
	}
	if len(mustList(t, f.s)) != 4 {
		t.Errorf("dry run removed something")
	}
	pruned, err := f.s.Prune(ctx, volstore.PruneFilter{Labels: []string{"kind=tmp"}, Until: time.Now().Add(time.Hour)}, false)
	if err != nil {
		t.Fatal(err)
	}
	// d-tmp is in use, c-cache does not match.
	if diff := cmp.Diff([]string{"a-tmp", "b-tmp"}, pruned); diff != "" {
		t.Errorf("Prune (-want +got):\n%s", diff)
	}
	var left []string
	for _, v := range mustList(t, f.s) {
		left = append(left, v.Name)
	}
	if diff := cmp.Diff([]string{"c-cache", "d-tmp"}, left); diff != "" {
		t.Errorf("left after prune (-want +got):\n%s", diff)
	}
}

func mustList(t *testing.T, s *volstore.Store) []volstore.Volume {
	t.Helper()
	l, err := s.List(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestOwnerAndMode: a new volume's root takes the owner and mode asked for
// (the mount target's, as the snapshot has it), also rootless for an id of
// the subordinate range.
func TestOwnerAndMode(t *testing.T) {
	f := newStore(t)
	testutil.Need(t, !f.m.Single(), "needs a mapping with more than one id (root, or newuidmap and a /etc/subuid range)")
	uid, _ := f.m.HostUID(1000)
	gid, _ := f.m.HostGID(1000)
	v, _, err := f.s.Ensure(t.Context(), "home", volstore.CreateOptions{UID: int(uid), GID: int(gid), Mode: os.ModeDir | 0o700})
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(v.DataDir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != uid || st.Gid != gid || st.Mode&0o7777 != 0o700 {
		t.Errorf("data dir owner %d:%d mode %o, want %d:%d 700", st.Uid, st.Gid, st.Mode&0o7777, uid, gid)
	}
	// A tree that id made is removed with the volume.
	if err := os.MkdirAll(filepath.Join(v.DataDir, "a/b"), 0o755); err != nil && os.Geteuid() == 0 {
		t.Fatal(err)
	}
	if err := f.s.Remove(t.Context(), "home"); err != nil {
		t.Fatalf("Remove = %v", err)
	}
	if _, err := os.Lstat(filepath.Dir(v.DataDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("volume dir after Remove: %v", err)
	}
}

// TestRemoveSubordinateOwnedContents: rootless, contents owned by other
// ids of the range (which the caller cannot delete on the host) go with
// the volume.
func TestRemoveSubordinateOwnedContents(t *testing.T) {
	testutil.RootlessOnly(t)
	f := newStore(t)
	testutil.Need(t, f.m.Subordinate, "needs newuidmap/newgidmap and a /etc/subuid range")
	v, _, err := f.s.Ensure(t.Context(), "apt", defaults())
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := f.m.HostUID(100)
	gid, _ := f.m.HostGID(100)
	d := filepath.Join(v.DataDir, "lists", "partial")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(d, "f"), d, filepath.Dir(d)} {
		if err := rmtree.Chown(t.Context(), p, int(uid), int(gid), f.m); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(d, "f")); err == nil {
		t.Fatal("fixture: the caller could delete the file on the host")
	}
	if err := f.s.Remove(t.Context(), "apt"); err != nil {
		t.Fatalf("Remove = %v", err)
	}
	if got := volumeEntries(t, f); len(got) != 0 {
		t.Errorf("volumes dir holds %q", got)
	}
	if got := entries(t, f.tmp); len(got) != 0 {
		t.Errorf("tmp holds %q after Remove", got)
	}
}

// The helper process of TestKilledCreate: it creates a volume and blocks
// just before the rename, until killed.
const envHelper = "VOLSTORE_TEST_HELPER"

func helperMain() {
	var mode, root, tmp, name string
	var quota int64
	fmt.Sscanf(os.Getenv(envHelper), "%s %s %s %s %d", &mode, &root, &tmp, &name, &quota)
	m, err := idmap.Detect()
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	ctx := context.Background()
	s, err := volstore.Open(ctx, volstore.Options{Root: root, TmpDir: tmp, Mapping: m})
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	if mode == "first" {
		// One of many processes using a new volume at once.
		l, v, err := s.Acquire(ctx, name, volstore.CreateOptions{UID: -1, GID: -1})
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		l.Close()
		fmt.Println(v.CreatedAt.UnixNano())
		os.Exit(0)
	}
	if mode == "rm" {
		// A rootless user removing a volume of their store.
		if err := s.Remove(ctx, name); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("removed")
		os.Exit(0)
	}
	if mode == "use" {
		// A rootless user's use of a volume root made for it.
		l, v, err := s.Acquire(ctx, name, volstore.CreateOptions{UID: -1, GID: -1})
		if err == nil {
			err = os.WriteFile(filepath.Join(v.DataDir, "mine"), []byte("x"), 0o644)
			l.Close()
		}
		if err == nil {
			v, err = s.Get(ctx, name)
		}
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Printf("ok %s %d %v\n", v.Backend, v.QuotaMiB, v.UsageKnown)
		os.Exit(0)
	}
	volstore.SetTestHookBeforeRename(func() {
		fmt.Println("ready")
		select {}
	})
	_, _, err = s.Ensure(ctx, name, volstore.CreateOptions{UID: -1, GID: -1, QuotaMiB: quota})
	fmt.Println("not killed:", err)
	os.Exit(1)
}

// killedCreate starts a helper that creates name and kill -9s it at the
// last step, with the volume complete in tmp (mounted, for loop).
func killedCreate(t *testing.T, f *fixture, name string, quota int64) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=create %s %s %s %d", envHelper, f.root, f.tmp, name, quota))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	cmd.Process.Kill()
	cmd.Wait()
	if line != "ready\n" {
		t.Fatalf("helper: %q", line)
	}
	if len(entries(t, f.tmp)) == 0 {
		t.Fatal("fixture: the killed create left nothing in tmp")
	}
	lk, err := lockfile.TryExclusive(filepath.Join(f.root, ".locks", name+".lock"))
	if err != nil {
		t.Fatalf("the name lock is still held after the kill: %v", err)
	}
	lk.Close()
}

// TestKilledCreate: a kill -9 in the middle of a create leaves no volume
// and no lock; the next use cleans what it left and creates the volume.
func TestKilledCreate(t *testing.T) {
	f := newStore(t)
	killedCreate(t, f, "half", 0)
	if vols := mustList(t, f.s); len(vols) != 0 {
		t.Fatalf("a half-made volume is listed: %+v", vols)
	}
	if _, err := f.s.Get(t.Context(), "half"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Get(half-made) = %v, want ErrNotFound", err)
	}
	if _, created, err := f.s.Ensure(t.Context(), "half", defaults()); err != nil || !created {
		t.Fatalf("Ensure after the kill = %v, %v", created, err)
	}
	if got := entries(t, f.tmp); len(got) != 0 {
		t.Errorf("tmp still holds %q", got)
	}
	// A removal killed after the rename: the next use of the name frees it.
	v, err := f.s.Get(t.Context(), "half")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Dir(v.DataDir), filepath.Join(f.tmp, "volrm+half+0123")); err != nil {
		t.Fatal(err)
	}
	if _, created, err := f.s.Ensure(t.Context(), "half", defaults()); err != nil || !created {
		t.Fatalf("Ensure after a killed remove = %v, %v", created, err)
	}
	if got := entries(t, f.tmp); len(got) != 0 {
		t.Errorf("tmp still holds %q after a killed remove", got)
	}
	// Open sweeps what a kill left for names nobody uses again.
	killedCreate(t, f, "other", 0)
	f.open(t)
	if got := entries(t, f.tmp); len(got) != 0 {
		t.Errorf("tmp still holds %q after Open", got)
	}
}

// probeHandler counts the records of the quota backend's probe.
type probeHandler struct {
	slog.Handler
	probes *atomic.Int64
}

func (h probeHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h probeHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "volume quota backend" || r.Message == "volume quotas unsupported" {
		h.probes.Add(1)
	}
	return nil
}

// Open does not probe the quota backend (a launch without a quota or a
// disk cap never needs it: the loop probe opens /dev/loop-control); the
// first use does, once.
func TestQuotaProbedOnFirstUse(t *testing.T) {
	m, err := idmap.Detect()
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	var probes atomic.Int64
	s, err := volstore.Open(t.Context(), volstore.Options{
		Root: filepath.Join(base, "volumes"), TmpDir: filepath.Join(base, "tmp"), Mapping: m,
		Logger: slog.New(probeHandler{Handler: slog.DiscardHandler, probes: &probes}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := probes.Load(); n != 0 {
		t.Fatalf("after Open: %d probes, want 0", n)
	}
	name1, err1 := s.QuotaBackend()
	name2, err2 := s.QuotaBackend()
	if n := probes.Load(); n != 1 {
		t.Fatalf("after two QuotaBackend calls: %d probes, want 1", n)
	}
	if name1 != name2 || (err1 == nil) != (err2 == nil) {
		t.Fatalf("QuotaBackend = %q, %v then %q, %v; want the same answer", name1, err1, name2, err2)
	}
}

// BenchmarkOpen opens a volume store, with the quota backend's probe
// (what every Open paid before the probe waited for its first use) and
// without.
func BenchmarkOpen(b *testing.B) {
	m, err := idmap.Detect()
	if err != nil {
		b.Fatal(err)
	}
	base := b.TempDir()
	for _, probe := range []bool{true, false} {
		b.Run(map[bool]string{true: "probe", false: "no-probe"}[probe], func(b *testing.B) {
			for b.Loop() {
				s, err := volstore.Open(b.Context(), volstore.Options{Root: filepath.Join(base, "volumes"), TmpDir: filepath.Join(base, "tmp"), Mapping: m})
				if err != nil {
					b.Fatal(err)
				}
				if probe {
					_, _ = s.QuotaBackend() // the probe's answer (none, rootless) is not this benchmark's concern
				}
			}
		})
	}
}

// TestKilledMetaWrite: a launch killed while Acquire recorded the use in
// meta.json (a temporary file, synced, renamed) left the temporary file in
// the volume's directory, one more per such kill, for the volume's life;
// the next use of the volume removes it and keeps the data.
func TestKilledMetaWrite(t *testing.T) {
	f := newStore(t)
	l, v, err := f.s.Acquire(t.Context(), "used", defaults())
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if err := os.WriteFile(filepath.Join(v.DataDir, "keep"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	left := filepath.Join(filepath.Dir(v.DataDir), ".tmp-meta.json-2992293525")
	if err := os.WriteFile(left, []byte(`{"labels":`), 0o644); err != nil {
		t.Fatal(err)
	}
	l, v, err = f.s.Acquire(t.Context(), "used", defaults())
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := os.Lstat(left); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after the next use, %s: %v; want it removed", filepath.Base(left), err)
	}
	if b, err := os.ReadFile(filepath.Join(v.DataDir, "keep")); err != nil || string(b) != "data" {
		t.Errorf("the volume's data after the next use: %q, %v", b, err)
	}
}
