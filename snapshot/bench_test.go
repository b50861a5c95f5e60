package snapshot

import (
	"archive/tar"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beamhop/lightbox/internal/testutil"
	"github.com/klauspost/pgzip"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// benchMB is the uncompressed size of BenchmarkUnpack's layer:
// $LIGHTBOX_BENCH_MB, default 500.
func benchMB() int {
	if v, err := strconv.Atoi(os.Getenv("LIGHTBOX_BENCH_MB")); err == nil && v > 0 {
		return v
	}
	return 500
}

// benchLayer returns a gzipped layer of about mb MB of mixed files (text,
// random binary, many small files, directories, symlinks), made once and
// cached in the system's temporary directory.
func benchLayer(b *testing.B, mb int) string {
	p := filepath.Join(os.TempDir(), fmt.Sprintf("lightbox-bench-layer-v2-%dMB.tar.gz", mb))
	if _, err := os.Stat(p); err == nil {
		return p
	}
	b.Logf("generating %s", p)
	f, err := os.CreateTemp(os.TempDir(), "lightbox-bench-*.tmp")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	zw := pgzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("the quick brown fox jumps over lazy dog lightbox sandbox snapshot layer overlay namespace volume cache build artifact package module import export config")
	mt := time.Unix(1700000000, 0)
	total, limit := 0, mb<<20
	buf := make([]byte, 2<<20)
	for d := 0; total < limit; d++ {
		dir := fmt.Sprintf("usr/lib/pkg%03d/sub%d/", d/8, d%8)
		tw.WriteHeader(&tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mt})
		for i := 0; i < 40 && total < limit; i++ {
			name := fmt.Sprintf("%sf%03d", dir, i)
			var data []byte
			switch k := rng.IntN(10); {
			case k < 4: // text-like
				var sb strings.Builder
				n := 1024 + rng.IntN(200<<10)
				for sb.Len() < n {
					sb.WriteString(words[rng.IntN(len(words))])
					sb.WriteByte(" \n"[rng.IntN(2)])
				}
				data = []byte(sb.String())
			case k < 7: // binary, incompressible
				n := 4096 + rng.IntN(512<<10)
				for j := 0; j < n; j += 8 {
					v := rng.Uint64()
					for k := 0; k < 8 && j+k < n; k++ {
						buf[j+k] = byte(v >> (8 * k))
					}
				}
				data = buf[:n]
			default: // small
				data = []byte(strings.Repeat(words[rng.IntN(len(words))], 1+rng.IntN(60)))
			}
			mode := int64(0o644)
			if i%7 == 0 {
				mode = 0o755
			}
			tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(data)), ModTime: mt})
			tw.Write(data)
			total += len(data)
			if i%20 == 0 {
				tw.WriteHeader(&tar.Header{Name: name + ".link", Typeflag: tar.TypeSymlink, Linkname: filepath.Base(name), Mode: 0o777, ModTime: mt})
			}
		}
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	os.Chmod(f.Name(), 0o644)
	if err := os.Rename(f.Name(), p); err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkUnpack unpacks a large gzipped layer into a store (ns/op is
// that unpack alone) and, in the same run, extracts the same tarball with
// `tar -xzf`; it reports speed-vs-tar (tar's time / lightbox's time: 1 is
// as fast as tar, the target is >= 0.7) and both throughputs in
// uncompressed MB/s. LIGHTBOX_BENCH_MB sets the layer's size (default 500).
func BenchmarkUnpack(b *testing.B) {
	tarBin, err := exec.LookPath("tar")
	if err != nil {
		b.Skip("needs tar")
	}
	mb := benchMB()
	tgz := benchLayer(b, mb)
	ctx := b.Context()
	s, err := Open(Options{Root: b.TempDir(), Mapping: testMapping(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.removeAll(ctx, s.layersDir())
	e, err := s.engine()
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	f, err := os.Open(tgz)
	if err != nil {
		b.Fatal(err)
	}
	d, n, err := e.PutBlob(ctx, f) // also warms the page cache
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	desc := ispec.Descriptor{MediaType: ispec.MediaTypeImageLayerGzip, Digest: d, Size: n}
	scratch := b.TempDir()
	var tarTime, lbTime time.Duration
	b.ResetTimer()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		// tar -xzf, then lightbox; each into a fresh directory.
		dir := filepath.Join(scratch, "tar"+strconv.Itoa(i))
		os.Mkdir(dir, 0o755)
		start := time.Now()
		if out, err := exec.Command(tarBin, "-xzf", tgz, "-C", dir).CombinedOutput(); err != nil {
			b.Fatalf("tar: %v: %s", err, out)
		}
		tarTime += time.Since(start)
		os.RemoveAll(dir)

		start = time.Now()
		b.StartTimer()
		if err := s.ensureLayer(ctx, e, desc); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		lbTime += time.Since(start)
		if err := s.removeAll(ctx, s.LayerDir(d)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(tarTime.Seconds()/lbTime.Seconds(), "speed-vs-tar")
	b.ReportMetric(float64(mb)*float64(b.N)/lbTime.Seconds(), "lightbox-MB/s")
	b.ReportMetric(float64(mb)*float64(b.N)/tarTime.Seconds(), "tar-MB/s")
	b.SetBytes(int64(mb) << 20)
}

// BenchmarkLease resolves a snapshot for a launch in a store whose index
// also holds n build-cache entries (each build step adds one): "get" is
// what a lease cost before refs.json (Get: umoci, the whole index parsed,
// every layer's size read), "lease" is Lease now.
func BenchmarkLease(b *testing.B) {
	ctx := b.Context()
	s := openStore(b)
	if _, err := s.Import(ctx, "x", testutil.BusyboxRootfs(b), ImportOptions{}); err != nil {
		b.Fatal(err)
	}
	have := 0
	for _, n := range []int{0, 100, 1000} {
		e, err := s.engine()
		if err != nil {
			b.Fatal(err)
		}
		idx, err := e.GetIndex(ctx)
		if err != nil {
			b.Fatal(err)
		}
		named := idx.Manifests[len(idx.Manifests)-1]
		for ; have < n; have++ {
			idx.Manifests = append([]ispec.Descriptor{{MediaType: named.MediaType, Digest: named.Digest, Size: named.Size,
				Annotations: map[string]string{annotationBuildKey: fmt.Sprintf("sha256:%064x", have), annotationCreated: time.Now().UTC().Format(time.RFC3339Nano)}}}, idx.Manifests...)
		}
		if err := e.PutIndex(ctx, idx); err != nil {
			b.Fatal(err)
		}
		e.Close()
		b.Run(fmt.Sprintf("get/entries=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := s.Get(ctx, "x"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("lease/entries=%d", n), func(b *testing.B) {
			for b.Loop() {
				l, _, err := s.Lease(ctx, "x")
				if err != nil {
					b.Fatal(err)
				}
				l.Close()
			}
		})
	}
}
