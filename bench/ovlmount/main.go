//go:build linux

// Command ovlmount times overlayfs's mount itself (fsconfig's create,
// where ovl_fill_super probes the work dir) with several option sets,
// interleaved, each on a fresh upper and work dir as a launch has. Run
// it as root inside a user namespace, as nsinit mounts:
//
//	unshare -Urm go run ./bench/ovlmount -dir /path/on/the/store/fs -n 400
//
// It prints, for each variant, the median and the 10th/90th percentile of
// fsconfig(FSCONFIG_CMD_CREATE), of the whole fsopen..fsmount, and of the
// unmount (the detached mount's close).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

type variant struct {
	name  string
	extra [][2]string
}

func main() {
	dir := flag.String("dir", "/tmp/ovlmount", "scratch directory (on the filesystem to measure)")
	n := flag.Int("n", 200, "mounts per variant")
	only := flag.String("only", "", "comma-separated variant names (all when empty)")
	flag.Parse()
	vs := []variant{
		{"pinned", nil},
		{"uuid=null", [][2]string{{"uuid", "null"}}},
		{"uuid=off", [][2]string{{"uuid", "off"}}},
		{"xino=off", [][2]string{{"xino", "off"}}},
		{"index=off", [][2]string{{"index", "off"}}},
		{"nfs_export=off", [][2]string{{"nfs_export", "off"}}},
		{"all-off", [][2]string{{"uuid", "null"}, {"xino", "off"}, {"index", "off"}, {"nfs_export", "off"}}},
		{"novolatile", nil},
	}
	if *only != "" {
		keep := map[string]bool{}
		for _, s := range strings.Split(*only, ",") {
			keep[s] = true
		}
		var k []variant
		for _, v := range vs {
			if keep[v.name] {
				k = append(k, v)
			}
		}
		vs = k
	}
	lower := filepath.Join(*dir, "lower")
	for _, d := range []string{"bin", "etc", "tmp"} {
		if err := os.MkdirAll(filepath.Join(lower, d), 0o755); err != nil {
			fail(err)
		}
	}
	create := make([][]time.Duration, len(vs))
	whole := make([][]time.Duration, len(vs))
	umount := make([][]time.Duration, len(vs))
	for i := 0; i < *n; i++ {
		for j, v := range vs {
			c, w, u := once(*dir, lower, i, v)
			create[j] = append(create[j], c)
			whole[j] = append(whole[j], w)
			umount[j] = append(umount[j], u)
		}
	}
	fmt.Printf("%-16s %22s %22s %22s\n", "variant", "create p10/p50/p90 µs", "mount p10/p50/p90 µs", "close p10/p50/p90 µs")
	for j, v := range vs {
		fmt.Printf("%-16s %22s %22s %22s\n", v.name, pct(create[j]), pct(whole[j]), pct(umount[j]))
	}
	if err := os.RemoveAll(*dir); err != nil {
		fail(err)
	}
}

func once(dir, lower string, i int, v variant) (create, whole, umount time.Duration) {
	sb := filepath.Join(dir, fmt.Sprintf("sb-%s-%d", strings.ReplaceAll(v.name, "=", "_"), i))
	upper, work := filepath.Join(sb, "upper"), filepath.Join(sb, "work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			fail(err)
		}
	}
	t0 := time.Now()
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		fail(fmt.Errorf("fsopen: %w", err))
	}
	flagp := func(k string) {
		if err := unix.FsconfigSetFlag(fd, k); err != nil {
			fail(fmt.Errorf("fsconfig %s: %w", k, err))
		}
	}
	str := func(k, val string) {
		if err := unix.FsconfigSetString(fd, k, val); err != nil {
			fail(fmt.Errorf("fsconfig %s=%s: %w", k, val, err))
		}
	}
	flagp("userxattr")
	str("redirect_dir", "nofollow")
	str("metacopy", "off")
	if v.name != "novolatile" {
		flagp("volatile")
	}
	for _, e := range v.extra {
		str(e[0], e[1])
	}
	str("lowerdir+", lower)
	str("upperdir", upper)
	str("workdir", work)
	t1 := time.Now()
	if err := unix.FsconfigCreate(fd); err != nil {
		fail(fmt.Errorf("fsconfig create (%s): %w", v.name, err))
	}
	t2 := time.Now()
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		fail(fmt.Errorf("fsmount: %w", err))
	}
	t3 := time.Now()
	if err := unix.Close(fd); err != nil {
		fail(err)
	}
	t4 := time.Now()
	if err := unix.Close(mfd); err != nil {
		fail(err)
	}
	t5 := time.Now()
	if err := os.RemoveAll(sb); err != nil {
		fail(err)
	}
	return t2.Sub(t1), t3.Sub(t0), t5.Sub(t4)
}

func pct(d []time.Duration) string {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
	q := func(p float64) float64 { return float64(s[int(p*float64(len(s)-1))].Microseconds()) }
	return fmt.Sprintf("%.0f/%.0f/%.0f", q(0.1), q(0.5), q(0.9))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "ovlmount:", err)
	os.Exit(1)
}
