package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Tags: busybox `sleep TAG` workloads are found on the host by their
// argument.
const (
	execTag    = 86417 // runc/crun exec targets (bundle "exec")
	podmanTag  = 86423 // podman exec target
	nsenterTag = 86427 // nsenter target
	memTag     = 86431 // memory targets, one at a time
)

var allTags = []int{execTag, podmanTag, nsenterTag, memTag}

func (b *bench) floorArgv(m *mode, cmd ...string) []string {
	return append([]string{"unshare", "--user", "--map-root-user", "--mount", "--pid", "--fork",
		"--uts", "--ipc", "--net", "chroot", m.rootfs}, cmd...)
}

func (b *bench) bwrapArgv(m *mode, cmd ...string) []string {
	return append([]string{"bwrap", "--unshare-all", "--ro-bind", m.rootfs, "/", "--proc", "/proc",
		"--dev", "/dev", "--tmpfs", "/tmp"}, cmd...)
}

func (b *bench) lb(m *mode, args ...string) []string {
	return append([]string{b.cfg.lightbox, "--root", m.lbRoot}, args...)
}

func (b *bench) podmanArgv(m *mode, args ...string) []string {
	return append(append([]string{}, m.podman...), args...)
}

func (b *bench) podmanRunArgv(m *mode, args ...string) []string {
	out := b.podmanArgv(m, "run")
	out = append(out, m.podmanRun...)
	return append(out, args...)
}

func (m *mode) lbItem(it *item) *item {
	if m.lbErr != "" {
		it.err = m.lbErr
	}
	return it
}

// idToken in a batch command becomes a unique container id.
const idToken = "LBBID"

// keepStderr appends what a batch's commands write on stderr to a file of
// the mode's work dir, so that a failed run says why (hyperfine keeps no
// output): its tail goes into results.json.
func keepStderr(m *mode, it *item) {
	if len(it.argv) != 3 || it.argv[0] != "sh" {
		return
	}
	it.stderr = filepath.Join(m.dir, "stderr-"+strings.ReplaceAll(it.key, "/", "-")+".log")
	it.argv[2] += " 2>>" + shellQuote([]string{it.stderr})
}

// batch is `sh -c 'seq N | xargs -P P -I{} CMD'`: CMD may use {} (the
// index) and $$ (the shell's pid) to make names unique.
func batch(n, par int, argv []string) []string {
	return []string{"sh", "-c", fmt.Sprintf("seq %d | xargs -P %d -I{} %s", n, par,
		strings.ReplaceAll(shellQuote(argv), idToken, "lbb-$$-{}"))}
}

func (b *bench) run(ctx context.Context) error {
	c := b.cfg
	for _, m := range b.modes {
		// 1. Cold sandbox running /bin/true.
		cold := []*item{
			{key: "cold/floor", label: "floor: unshare … chroot ROOTFS /bin/true", argv: b.floorArgv(m, "/bin/true")},
			{key: "cold/plain", label: "plain /bin/true (no sandbox)", argv: []string{"/bin/true"}},
			m.lbItem(&item{key: "cold/lightbox", label: "lightbox run --network none", argv: b.lb(m, "run", "--network", "none", snapName, "/bin/true")}),
			m.lbItem(&item{key: "cold/lightbox-api", label: "Go API: RunInSandbox + Exec", api: "BenchmarkRunInSandbox"}),
			m.lbItem(&item{key: "cold/lightbox-api-large", label: "Go API: RunInSandbox + Exec, from a process holding 1 GiB", api: "BenchmarkRunInSandboxLarge"}),
			m.lbItem(&item{key: "cold/lightbox-pool", label: "Go API: warm pool, take + first Exec", api: "BenchmarkPoolTake"}),
			m.lbItem(&item{key: "cold/lightbox-pool-idle", label: "Go API: warm pool after idle, take + first Exec", api: "BenchmarkPoolTakeIdle"}),
			{key: "cold/crun", label: "crun run (new netns)", argv: []string{"crun", "--root", m.crunRoot, "run", "--bundle", filepath.Join(m.bundles, "true"), "lbb-cold"}},
			{key: "cold/runc", label: "runc run (new netns)", argv: []string{"runc", "--root", m.runcRoot, "run", "--bundle", filepath.Join(m.bundles, "true"), "lbb-cold"}},
			{key: "cold/bwrap", label: "bwrap --unshare-all", argv: b.bwrapArgv(m, "/bin/true")},
			{key: "cold/podman", label: "podman run --rm --network none", argv: b.podmanRunArgv(m, "--rm", "--rootfs", m.podmanRootfs, "/bin/true")},
		}
		if err := b.measure(ctx, m, "cold", cold, c.rounds, c.runs, c.warmup); err != nil {
			return err
		}
		b.record(m, "cold /bin/true", cold)

		// 2. Exec into a running sandbox.
		ex, err := b.execItems(ctx, m)
		if err != nil {
			return err
		}
		if err := b.measure(ctx, m, "exec", ex, c.rounds, c.runs, c.warmup); err != nil {
			return err
		}
		b.runCleanups()
		b.record(m, "exec /bin/true into a running sandbox", ex)

		// 3. 50 sandboxes, 8 at a time; 100 on one volume.
		ba := []*item{
			{key: "batch50/floor", label: "floor ×50, 8 at a time", argv: batch(50, 8, b.floorArgv(m, "/bin/true"))},
			m.lbItem(&item{key: "batch50/lightbox", label: "lightbox run ×50", base: "batch50/floor",
				argv: batch(50, 8, b.lb(m, "run", "--network", "none", snapName, "/bin/true"))}),
			{key: "batch50/crun", label: "crun run ×50", base: "batch50/floor",
				argv: batch(50, 8, []string{"crun", "--root", m.crunRoot, "run", "--bundle", filepath.Join(m.bundles, "true"), idToken})},
			{key: "batch50/runc", label: "runc run ×50", base: "batch50/floor",
				argv: batch(50, 8, []string{"runc", "--root", m.runcRoot, "run", "--bundle", filepath.Join(m.bundles, "true"), idToken})},
			{key: "batch50/bwrap", label: "bwrap ×50", base: "batch50/floor", argv: batch(50, 8, b.bwrapArgv(m, "/bin/true"))},
			{key: "batch100/floor", label: "floor ×100, 8 at a time", base: "batch100/floor", argv: batch(100, 8, b.floorArgv(m, "/bin/true"))},
			m.lbItem(&item{key: "batch100/lightbox-volume", label: "lightbox run -v benchvol:/data ×100", base: "batch100/floor",
				argv: batch(100, 8, b.lb(m, "run", "--network", "none", "-v", "benchvol:/data", snapName, "/bin/sh", "-c", "echo {} > /data/{}"))}),
		}
		for _, it := range ba {
			keepStderr(m, it)
		}
		if err := b.measure(ctx, m, "batch", ba, c.batchRounds, c.batchRuns, 0); err != nil {
			return err
		}
		b.record(m, "many sandboxes, 8 at a time", ba)

		// 4. Launch from the busybox snapshot vs a 1 GB, 50-layer one.
		if c.bigMiB > 0 {
			items, extra, err := b.layerItems(ctx, m)
			if err != nil {
				return err
			}
			if err := b.measure(ctx, m, "layers", items, c.rounds, max(c.runs/2, 3), c.warmup); err != nil {
				return err
			}
			b.record(m, fmt.Sprintf("launch: busybox snapshot vs a %d MiB, %d-layer one", c.bigMiB, c.bigLayers), append(items, extra...))
		}

		// 6. Host-side private memory of an idle detached sandbox.
		b.memory(ctx, m)
	}
	b.notMeasured()
	return nil
}

func (b *bench) runCleanups() {
	for i := len(b.cleanups) - 1; i >= 0; i-- {
		b.cleanups[i]()
	}
	b.cleanups = nil
}

// execItems starts one long-running sandbox per tool and returns the
// commands that exec /bin/true into them.
func (b *bench) execItems(ctx context.Context, m *mode) ([]*item, error) {
	bg := context.Background()
	items := []*item{
		{key: "exec/floor", label: "floor (cold, for the ratio)", argv: b.floorArgv(m, "/bin/true")},
	}

	// lightbox: an idle detached sandbox.
	lbx := m.lbItem(&item{key: "exec/lightbox", label: "lightbox exec", argv: b.lb(m, "exec", "lbb-exec", "/bin/true")})
	lba := m.lbItem(&item{key: "exec/lightbox-api", label: "Go API: Sandbox.Exec", api: "BenchmarkSandboxExec"})
	if lbx.err == "" {
		if out, err := m.detached(ctx, 2*time.Minute, b.lb(m, "run", "-d", "--name", "lbb-exec", "--network", "none", snapName)...); err != nil {
			lbx.err = "lightbox: run -d: " + lastLine(out, err)
		} else {
			b.cleanups = append(b.cleanups, func() { _, _ = m.output(bg, time.Minute, b.lb(m, "rm", "-f", "lbb-exec")...) }) // best effort cleanup
		}
	}
	items = append(items, lbx, lba)

	// runc and crun: a detached container running sleep.
	for _, rt := range []string{"runc", "crun"} {
		root := m.runcRoot
		if rt == "crun" {
			root = m.crunRoot
		}
		it := &item{key: "exec/" + rt, label: rt + " exec", argv: []string{rt, "--root", root, "exec", "lbb-exec", "/bin/true"}}
		if out, err := m.detached(ctx, 2*time.Minute, rt, "--root", root, "run", "-d", "--bundle", filepath.Join(m.bundles, "exec"), "lbb-exec"); err != nil {
			it.err = rt + ": run -d: " + lastLine(out, err)
		} else {
			rt := rt
			b.cleanups = append(b.cleanups, func() { _, _ = m.output(bg, time.Minute, rt, "--root", root, "delete", "-f", "lbb-exec") }) // best effort cleanup
		}
		items = append(items, it)
	}

	// podman: a detached container running sleep.
	pd := &item{key: "exec/podman", label: "podman exec", argv: b.podmanArgv(m, "exec", "lbb-exec", "/bin/true")}
	if out, err := m.detached(ctx, 2*time.Minute, b.podmanRunArgv(m, "-d", "--name", "lbb-exec", "--rootfs", m.podmanRootfs, "sleep", strconv.Itoa(podmanTag))...); err != nil {
		pd.err = "podman: run -d: " + lastLine(out, err)
	} else {
		b.cleanups = append(b.cleanups, func() { _, _ = m.output(bg, time.Minute, b.podmanArgv(m, "rm", "-f", "-t", "0", "lbb-exec")...) }) // best effort cleanup
	}
	items = append(items, pd)

	// nsenter into the floor's namespaces around a sleep.
	ns := &item{key: "exec/nsenter", label: "nsenter into unshare's namespaces"}
	cmd := m.cmd(bg, b.floorArgv(m, "sleep", strconv.Itoa(nsenterTag))...)
	if err := cmd.Start(); err != nil {
		ns.err = "unshare: " + err.Error()
	} else {
		p, ok := waitSleep(ctx, nsenterTag, m.uid, 10*time.Second)
		b.cleanups = append(b.cleanups, func() {
			if ok {
				_ = syscall.Kill(p.pid, syscall.SIGKILL) // best effort: it may be gone already
			}
			_ = cmd.Process.Kill() // best effort: it may be gone already
			_ = cmd.Wait()         // reaps the killed child: its status tells nothing
		})
		if !ok {
			ns.err = "unshare: sleep did not start"
		} else {
			ns.argv = []string{"nsenter", "-t", strconv.Itoa(p.pid), "-U", "-m", "-p", "-u", "-i", "-n", "-r", "-w"}
			if m.user != "" {
				ns.argv = append(ns.argv, "--preserve-credentials")
			}
			ns.argv = append(ns.argv, "/bin/true")
		}
	}
	items = append(items, ns)
	for _, it := range items {
		if it.base == "" {
			it.base = "exec/floor"
		}
	}
	return items, nil
}

func waitSleep(ctx context.Context, tag, uid int, d time.Duration) (proc, bool) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if p, ok := findSleep(tag, uid); ok {
			return p, true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return proc{}, false
}

// memory starts each tool's idle detached sandbox running `sleep TAG`
// and sums the private memory (smaps_rollup) of what stays alive on the
// host for it: the workload's ancestors that this run started, and the
// processes in its user namespace (a rootless podman's pause process),
// less the workload itself.
func (b *bench) memory(ctx context.Context, m *mode) {
	bg := context.Background()
	tag := strconv.Itoa(memTag)
	type target struct {
		key, label string
		start      []string
		stop       []string
		err        string
		exec       []string // run execs times once the workload runs
		execs      int
	}
	targets := []target{
		{key: "mem/lightbox", label: "lightbox run -d (init + helpers)",
			start: b.lb(m, "run", "-d", "--name", "lbb-mem", "--network", "none", snapName, "sleep", tag),
			stop:  b.lb(m, "rm", "-f", "lbb-mem"), err: m.lbErr},
		{key: "mem/lightbox-execs", label: "lightbox run -d, after 300 lightbox exec",
			start: b.lb(m, "run", "-d", "--name", "lbb-mem", "--network", "none", snapName, "sleep", tag),
			stop:  b.lb(m, "rm", "-f", "lbb-mem"), err: m.lbErr,
			exec: b.lb(m, "exec", "lbb-mem", "/bin/true"), execs: 300},
		{key: "mem/lightbox-private", label: "lightbox run -d, default private network (init + slirp4netns)",
			start: b.lb(m, "run", "-d", "--name", "lbb-memp", snapName, "sleep", tag),
			stop:  b.lb(m, "rm", "-f", "lbb-memp"), err: m.lbErr},
		{key: "mem/lightbox-pasta", label: "lightbox run -d --network private:pasta (init + keeper + pasta)",
			start: b.lb(m, "run", "-d", "--name", "lbb-memq", "--network", "private:pasta", snapName, "sleep", tag),
			stop:  b.lb(m, "rm", "-f", "lbb-memq"), err: m.lbErr},
		{key: "mem/podman", label: "podman run -d (conmon, + pause rootless)",
			start: b.podmanRunArgv(m, "-d", "--name", "lbb-mem", "--rootfs", m.podmanRootfs, "sleep", tag),
			stop:  b.podmanArgv(m, "rm", "-f", "-t", "0", "lbb-mem")},
		{key: "mem/runc", label: "runc run -d",
			start: []string{"runc", "--root", m.runcRoot, "run", "-d", "--bundle", filepath.Join(m.bundles, "mem"), "lbb-mem"},
			stop:  []string{"runc", "--root", m.runcRoot, "delete", "-f", "lbb-mem"}},
		{key: "mem/crun", label: "crun run -d",
			start: []string{"crun", "--root", m.crunRoot, "run", "-d", "--bundle", filepath.Join(m.bundles, "mem"), "lbb-mem"},
			stop:  []string{"crun", "--root", m.crunRoot, "delete", "-f", "lbb-mem"}},
		{key: "mem/bwrap", label: "bwrap (in the background)",
			start: append([]string{"setsid", "-f"}, b.bwrapArgv(m, "sleep", tag)...)},
	}
	var items []*item
	// The namespace this run (root) lives in: a workload outside it has
	// one of its own.
	hostUserns, _ := os.Readlink("/proc/self/ns/user")
	for _, t := range targets {
		it := &item{key: t.key, label: t.label, err: t.err}
		items = append(items, it)
		if it.err != "" {
			continue
		}
		before := map[int]uint64{}
		for _, p := range listProcs() {
			before[p.pid] = p.start
		}
		out, err := m.detached(ctx, 2*time.Minute, t.start...)
		w, ok := proc{}, false
		switch {
		case err != nil:
			it.err = fmt.Sprintf("%s: %s", t.start[0], lastLine(out, err))
		default:
			if w, ok = waitSleep(ctx, memTag, m.uid, 15*time.Second); !ok {
				it.err = "the workload did not start"
			}
		}
		for i := 0; ok && i < t.execs; i++ {
			if out, err := m.output(ctx, time.Minute, t.exec...); err != nil {
				it.err, ok = fmt.Sprintf("exec %d: %s", i, lastLine(out, err)), false
			}
		}
		if ok {
			// Let the launch (or the execs) settle: lightbox's init
			// hands over to a fresh copy of itself one idle second
			// after the launch's last connection, ten after later
			// ones (nsinit/handover_linux.go).
			settle := 3 * time.Second
			if t.execs > 0 {
				settle = 12 * time.Second
			}
			time.Sleep(settle)
			it.mem = hostSide(w, before, hostUserns)
			if strings.HasPrefix(t.key, "mem/lightbox") && t.key != "mem/lightbox-private" && t.key != "mem/lightbox-pasta" {
				// Issue 14's target: at most 1 MiB anonymous and 4 MiB
				// private besides the user's processes.
				verdict := "met"
				if it.mem.AnonKB > 1024 || it.mem.PrivateKB > 4096 {
					verdict = "MISSED"
				}
				log.Printf("%s %s: %d kB anonymous, %d kB private: idle target (1024 / 4096 kB) %s", m.name, t.key, it.mem.AnonKB, it.mem.PrivateKB, verdict)
			}
		}
		if t.stop != nil {
			_, _ = m.output(bg, time.Minute, t.stop...) // best effort cleanup
		}
		if p, ok := findSleep(memTag, m.uid); ok {
			_ = syscall.Kill(p.pid, syscall.SIGKILL) // best effort: it may be gone already
		}
		waitGone(memTag, m.uid, 10*time.Second)
	}
	for _, it := range items {
		it.base = "mem/podman"
		if it.err != "" {
			log.Printf("%s %s: n/a: %s", m.name, it.key, it.err)
		}
	}
	b.record(m, "idle detached sandbox: host-side private memory", items)
}

func waitGone(tag, uid int, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if _, ok := findSleep(tag, uid); !ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func isNew(p proc, before map[int]uint64) bool {
	st, ok := before[p.pid]
	return !ok || st != p.start
}

func hostSide(w proc, before map[int]uint64, hostUserns string) *memInfo {
	all := listProcs()
	byPid := map[int]proc{}
	for _, p := range all {
		byPid[p.pid] = p
	}
	set := map[int]proc{}
	// Ancestors this run started.
	for p, ok := byPid[w.ppid]; ok && p.pid > 1 && isNew(p, before); p, ok = byPid[p.ppid] {
		set[p.pid] = p
	}
	// The workload's own user namespace, when it has one (not its
	// descendants or itself).
	if w.userns != "" && hostUserns != "" && w.userns != hostUserns {
		for _, p := range all {
			if p.userns == w.userns && p.pid != w.pid && !descends(p, w.pid, byPid) {
				set[p.pid] = p
			}
		}
	}
	mi := &memInfo{Processes: []string{}}
	for _, p := range set {
		priv, rss, pss, anon, ok := smapsRollup(p.pid)
		if !ok {
			continue
		}
		mi.PrivateKB += priv
		mi.RssKB += rss
		mi.PssKB += pss
		mi.AnonKB += anon
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.pid))
		mi.Processes = append(mi.Processes, fmt.Sprintf("pid %d comm %q exe %q: private %d kB, anonymous %d kB, rss %d kB", p.pid, p.comm, exe, priv, anon, rss))
	}
	return mi
}

func descends(p proc, anc int, byPid map[int]proc) bool {
	for i := 0; i < 64 && p.pid > 1; i++ {
		if p.ppid == anc {
			return true
		}
		q, ok := byPid[p.ppid]
		if !ok {
			return false
		}
		p = q
	}
	return false
}

// notMeasured records the parts of issue 8 this instrument does not
// measure yet, with the reason.
func (b *bench) notMeasured() {
	nms := []struct{ key, label, why string }{
		{"unpack/500mb", "unpack of a 500 MB gzipped layer vs tar -xzf", "measured by the snapshot package's go test -bench (issue 2), not here"},
	}
	if b.cfg.bigMiB == 0 {
		nms = append(nms, struct{ key, label, why string }{"layers/big", "launch from a 1 GB 50-layer snapshot", "skipped: -big-mib 0"})
	}
	for _, nm := range nms {
		b.res.Rows = append(b.res.Rows, row{Section: "not measured here", Key: nm.key, Name: nm.label, Mode: "-", Error: nm.why})
	}
}

// layerItems imports the many-layer snapshot (made once per run) into
// the mode's store, timing that first unpack, and returns the launch
// commands to compare plus rows for the two import times.
func (b *bench) layerItems(ctx context.Context, m *mode) (items, extra []*item, err error) {
	c := b.cfg
	layout := filepath.Join(b.work, "big-oci")
	if _, err := os.Stat(filepath.Join(layout, "index.json")); err != nil {
		log.Printf("making a %d MiB, %d-layer OCI image", c.bigMiB, c.bigLayers)
		if err := makeLayeredImage(layout, b.modes[0].rootfs, "big", c.bigLayers, c.bigMiB); err != nil {
			return nil, nil, fmt.Errorf("many-layer image: %w", err)
		}
	}
	bigLabel := fmt.Sprintf("lightbox run: %d MiB, %d-layer snapshot", c.bigMiB, c.bigLayers)
	items = []*item{
		{key: "layers/floor", label: "floor: unshare … chroot ROOTFS /bin/true", argv: b.floorArgv(m, "/bin/true")},
		m.lbItem(&item{key: "layers/lightbox-small", label: "lightbox run: busybox snapshot (1 layer)", argv: b.lb(m, "run", "--network", "none", snapName, "/bin/true")}),
		m.lbItem(&item{key: "layers/lightbox-big", label: bigLabel, argv: b.lb(m, "run", "--network", "none", "bench-big", "/bin/true")}),
	}
	imp := m.lbItem(&item{key: "layers/import-big", label: fmt.Sprintf("first import (unpack) of the %d MiB, %d-layer snapshot", c.bigMiB, c.bigLayers), base: "-"})
	small := m.lbItem(&item{key: "layers/import-small", label: "first import (unpack) of the busybox snapshot", base: "-"})
	if m.importMs > 0 {
		small.samples = []float64{m.importMs}
	}
	if imp.err == "" {
		log.Printf("%s: importing the many-layer snapshot", m.name)
		start := time.Now()
		out, err := m.output(ctx, 10*time.Minute, b.lb(m, "snapshot", "import", "bench-big", layout)...)
		if err != nil {
			imp.err = "lightbox: snapshot import: " + lastLine(out, err)
			items[2].err = imp.err
		} else {
			imp.samples = []float64{float64(time.Since(start).Microseconds()) / 1000}
		}
	}
	return items, []*item{small, imp}, nil
}
