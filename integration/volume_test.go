//go:build linux

package integration

import (
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beamhop/lightbox"
	"github.com/beamhop/lightbox/internal/testutil"
)

type volEntry struct {
	Name       string            `json:"name"`
	Labels     map[string]string `json:"labels"`
	CreatedAt  time.Time         `json:"createdAt"`
	LastUsedAt time.Time         `json:"lastUsedAt"`
	QuotaMiB   int64             `json:"quotaMiB"`
	UsedBytes  int64             `json:"usedBytes"`
	Backend    string            `json:"backend"`
	UsedBy     []string          `json:"usedBy"`
}

func volumes(t *testing.T, root string, args ...string) []volEntry {
	t.Helper()
	var list []volEntry
	out := lbOK(t, root, append([]string{"volume", "ls", "--format", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("volume ls: %v: %s", err, out)
	}
	return list
}

func volNames(vs []volEntry) string {
	var n []string
	for _, v := range vs {
		n = append(n, v.Name)
	}
	return strings.Join(n, ",")
}

// TestCLIVolumes drives the volume lifecycle through the CLI.
func TestCLIVolumes(t *testing.T) {
	root, _ := newStore(t)
	lbOK(t, root, "volume", "create", "--label", "team=ml", "--label", "ttl=30d", "--label", "owners=ana,bo", "models")
	lbOK(t, root, "volume", "create", "--label", "team=web", "npm")
	// Creating it again with other options changes nothing and says so.
	r := lb(t, root, "", "volume", "create", "--label", "team=other", "models")
	if r.code != 0 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("volume create of an existing volume with other labels: code %d stderr %q", r.code, r.stderr)
	}
	if got := volNames(volumes(t, root, "--filter", "label=team=ml")); got != "models" {
		t.Errorf("ls --filter label=team=ml = %s", got)
	}
	if got := volNames(volumes(t, root, "--filter", "label=team")); got != "models,npm" {
		t.Errorf("ls --filter label=team = %s", got)
	}
	var v volEntry
	if err := json.Unmarshal([]byte(lbOK(t, root, "volume", "inspect", "models")), &v); err != nil {
		t.Fatal(err)
	}
	if v.Labels["team"] != "ml" || v.Labels["owners"] != "ana,bo" || v.CreatedAt.IsZero() || time.Since(v.CreatedAt) > time.Hour || v.Backend == "" {
		t.Errorf("inspect models = %+v", v)
	}
	// Used by a sandbox: lastUsedAt moves, usage computed on request.
	lbOK(t, root, "run", "--network", "none", "-v", "models:/m", "busybox", "sh", "-c", "head -c 100000 /dev/zero > /m/w")
	for _, e := range volumes(t, root, "--size") {
		if e.Name == "models" && (e.UsedBytes < 100000 || e.LastUsedAt.Before(v.CreatedAt)) {
			t.Errorf("after use: %+v, want usedBytes >= 100000 and lastUsedAt set", e)
		}
	}
	// dangling = used by no sandbox.
	if got := volNames(volumes(t, root, "--filter", "dangling=true")); got != "models,npm" {
		t.Errorf("ls --filter dangling=true = %s", got)
	}
	// prune by label, dry run first.
	if out := lbOK(t, root, "volume", "prune", "--filter", "label=team=web", "--dry-run"); out != "npm\n" {
		t.Errorf("prune --dry-run = %q", out)
	}
	if got := volNames(volumes(t, root)); got != "models,npm" {
		t.Errorf("a dry run removed something: %s", got)
	}
	lbOK(t, root, "volume", "prune", "--filter", "label=team=web")
	if got := volNames(volumes(t, root)); got != "models" {
		t.Errorf("after prune: %s", got)
	}
	lbOK(t, root, "volume", "rm", "models")
	if r := lb(t, root, "", "volume", "rm", "models"); r.code == 0 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("rm of a removed volume: code %d stderr %q", r.code, r.stderr)
	}
	lbOK(t, root, "volume", "rm", "-f", "models")
	for _, bad := range []string{"../x", "a/b", "-a", ".a", strings.Repeat("x", 64)} {
		if r := lb(t, root, "", "volume", "create", "--", bad); r.code == 0 || !strings.Contains(r.stderr, "invalid name") {
			t.Errorf("volume create %q: code %d stderr %q", bad, r.code, r.stderr)
		}
	}
	if r := lb(t, root, "", "volume", "create", "--label", "=v", "x"); r.code == 0 {
		t.Errorf("a label with an empty key was accepted")
	}
}

// TestVolumeQuota: as root a quota is enforced (ENOSPC at the limit, df
// shows it, the neighbour unaffected); rootless it is refused with an
// explanation.
func TestVolumeQuota(t *testing.T) {
	root, r := newStore(t)
	ctx := t.Context()
	if os.Geteuid() != 0 {
		_, err := r.EnsureVolume(ctx, "q", lightbox.VolumeOptions{QuotaMiB: 16})
		var nr *lightbox.NeedsRootError
		if !errors.Is(err, lightbox.ErrQuotaUnsupported) || !errors.As(err, &nr) ||
			nr.Action.Op != lightbox.RootCreate || nr.Action.Volume != "q" || nr.Action.QuotaMiB != 16 {
			t.Fatalf("rootless quota = %v, want ErrQuotaUnsupported naming what root does to create it", err)
		}
		return
	}
	testutil.RootOnly(t)
	v, err := r.EnsureVolume(ctx, "q", lightbox.VolumeOptions{QuotaMiB: 16})
	if err != nil {
		t.Fatal(err)
	}
	if v.QuotaMiB != 16 {
		t.Errorf("QuotaMiB = %d", v.QuotaMiB)
	}
	res := lb(t, root, "", "run", "--network", "none", "-v", "q:/q", "-v", "free:/free", "busybox", "sh", "-c",
		"df -m /q | tail -1; dd if=/dev/zero of=/q/big bs=1M count=64 2>&1; echo dd=$?; dd if=/dev/zero of=/free/f bs=1M count=20 2>/dev/null; echo free=$?")
	if !strings.Contains(res.stdout, "No space left on device") || !strings.Contains(res.stdout, "free=0") {
		t.Errorf("writing past a 16 MiB quota: %s %s", res.stdout, res.stderr)
	}
	fields := strings.Fields(strings.SplitN(res.stdout, "\n", 2)[0])
	if size, _ := strconv.Atoi(fields[min(1, len(fields)-1)]); size < 12 || size > 17 {
		t.Errorf("df inside shows %q, want a size of about 16 MiB", fields)
	}
	list, err := r.ListVolumes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range list {
		if v.Name == "q" && (v.UsedBytes < 10<<20 || v.UsedBytes > 17<<20) {
			t.Errorf("usage of the full volume = %d bytes", v.UsedBytes)
		}
	}
	if err := r.RemoveVolume(ctx, "q"); err != nil {
		t.Fatal(err)
	}
	if n := hostMountsUnder(t, root); n != 0 {
		t.Errorf("%d mounts left under the store after removing the quota volume", n)
	}
}
