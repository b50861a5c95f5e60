package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// item is one command of a measured group.
type item struct {
	key   string   // stable id in results.json: "cold/crun"
	label string   // row label
	argv  []string // what hyperfine runs (as the mode's user)
	api   string   // instead of argv: a Go benchmark of bench/api
	base  string   // key of the floor item its ratio is taken to
	err   string   // why it is not measured ("" = it is)

	samples []float64 // ms
	failed  int       // runs with a non-zero exit status
	stderr  string    // where the command's stderr goes ("": nowhere kept)
	mem     *memInfo  // memory rows
}

// shellQuote quotes argv for hyperfine's -N word splitting (POSIX rules).
func shellQuote(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
		}) < 0 {
			b.WriteString(a)
			continue
		}
		b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	return b.String()
}

// probe runs each command once; a command that fails is not measured and
// its row says why.
func (b *bench) probe(ctx context.Context, m *mode, items []*item) {
	for _, it := range items {
		if it.err != "" {
			continue
		}
		if it.api != "" {
			if _, err := b.runAPI(ctx, m, it.api, 1, ""); err != nil {
				it.err = "lightbox Go API: " + err.Error()
			}
			continue
		}
		out, err := m.output(ctx, 2*time.Minute, it.argv...)
		if err != nil {
			it.err = fmt.Sprintf("%s: %s", it.argv[0], lastLine(out, err))
		}
	}
	for _, it := range items {
		if it.err != "" {
			log.Printf("%s %s: n/a: %s", m.name, it.key, it.err)
		}
	}
}

// measure runs the group in interleaved rounds: each round is one
// hyperfine invocation over every command (order rotated per round),
// followed by the Go API benchmarks; samples pool across rounds. After
// two rounds it stops early when the next round would end past the
// group's time budget (a busy machine), so `make bench` stays bounded.
func (b *bench) measure(ctx context.Context, m *mode, group string, items []*item, rounds, runs, warmup int) error {
	budget := groupBudget[group]
	if budget == 0 {
		budget = time.Minute
	}
	budget = time.Duration(float64(budget) * b.cfg.budgetScale)
	groupStart := time.Now()
	b.probe(ctx, m, items)
	var cmds, apis []*item
	for _, it := range items {
		switch {
		case it.err != "":
		case it.api != "":
			apis = append(apis, it)
		default:
			cmds = append(cmds, it)
		}
	}
	for r := range rounds {
		if err := ctx.Err(); err != nil {
			return err
		}
		if el := time.Since(groupStart); r >= 2 && el+el/time.Duration(r) > budget {
			log.Printf("%s %s: stopping after %d rounds: the time budget (%v) would be exceeded", m.name, group, r, budget.Round(time.Second))
			break
		}
		log.Printf("%s %s: round %d/%d", m.name, group, r+1, rounds)
		if len(cmds) > 0 {
			order := slices.Clone(cmds)
			k := r % len(order)
			order = append(order[k:], order[:k]...)
			jsonPath := filepath.Join(m.dir, fmt.Sprintf("hyperfine-%s-%d.json", strings.ReplaceAll(group, "/", "-"), r))
			args := []string{"hyperfine", "-N", "-i", "--style", "none",
				"--warmup", strconv.Itoa(warmup), "--runs", strconv.Itoa(runs), "--export-json", jsonPath}
			for _, it := range order {
				args = append(args, "-n", it.key, shellQuote(it.argv))
			}
			out, err := m.output(ctx, 10*time.Minute, args...)
			if err != nil {
				return fmt.Errorf("hyperfine: %v: %s", err, out)
			}
			if err := readHyperfine(jsonPath, order); err != nil {
				return err
			}
		}
		for _, it := range apis {
			ss, err := b.runAPI(ctx, m, it.api, runs, filepath.Join(m.dir, "api-samples"))
			if err != nil {
				it.err = "lightbox Go API: " + err.Error()
				continue
			}
			it.samples = append(it.samples, ss...)
		}
	}
	return nil
}

// groupBudget is each group's time budget per mode (scaled by -budget).
var groupBudget = map[string]time.Duration{
	"cold":   115 * time.Second, // 75 s, and ~7 s a round for the idle pool's wait (BenchmarkPoolTakeIdle: 4 s of idle after its prewarm, for the probe run and the timed one)
	"exec":   60 * time.Second,
	"batch":  45 * time.Second,
	"layers": 40 * time.Second,
}

func readHyperfine(path string, order []*item) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var hf struct {
		Results []struct {
			Times     []float64 `json:"times"`
			ExitCodes []*int    `json:"exit_codes"`
		} `json:"results"`
	}
	if err := json.Unmarshal(data, &hf); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(hf.Results) != len(order) {
		return fmt.Errorf("%s: %d results for %d commands", path, len(hf.Results), len(order))
	}
	for i, r := range hf.Results {
		it := order[i]
		for j, t := range r.Times {
			if j < len(r.ExitCodes) && (r.ExitCodes[j] == nil || *r.ExitCodes[j] != 0) {
				it.failed++
				continue
			}
			it.samples = append(it.samples, t*1000)
		}
	}
	return nil
}

// runAPI runs one Go benchmark of bench/api n times (after the testing
// package's own single probe run) and returns the per-iteration samples.
func (b *bench) runAPI(ctx context.Context, m *mode, name string, n int, samplesPath string) ([]float64, error) {
	if b.cfg.apiTest == "" {
		return nil, fmt.Errorf("no test binary of bench/api")
	}
	if samplesPath != "" {
		_ = os.Remove(samplesPath) // best effort cleanup
	}
	// The test binary must be readable by the mode's user: copy it into
	// the mode's dir once.
	bin := filepath.Join(m.dir, "api.test")
	if _, err := os.Stat(bin); err != nil {
		data, err := os.ReadFile(b.cfg.apiTest)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(bin, data, 0o755); err != nil {
			return nil, err
		}
	}
	argv := []string{"env", "LIGHTBOX_BENCH_ROOT=" + m.lbRoot, "LIGHTBOX_BENCH_SNAPSHOT=" + snapName,
		"LIGHTBOX_BENCH_SAMPLES=" + samplesPath,
		bin, "-test.run=^$", "-test.bench=^" + name + "$", fmt.Sprintf("-test.benchtime=%dx", n), "-test.count=1"}
	out, err := m.output(ctx, 5*time.Minute, argv...)
	if err != nil || strings.Contains(string(out), "--- FAIL") || strings.Contains(string(out), "--- SKIP") {
		return nil, fmt.Errorf("%s", apiError(out, err))
	}
	if samplesPath == "" {
		return nil, nil
	}
	f, err := os.Open(samplesPath)
	if err != nil {
		return nil, fmt.Errorf("no samples: %w", err)
	}
	defer func() { _ = f.Close() }() // read-only, or nothing written through it
	var ss []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		ns, err := strconv.ParseFloat(strings.TrimSpace(sc.Text()), 64)
		if err == nil {
			ss = append(ss, ns/1e6)
		}
	}
	return ss, sc.Err()
}

// apiError picks the informative line of a failed benchmark run.
func apiError(out []byte, err error) string {
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if strings.Contains(line, "_test.go:") {
			if _, msg, ok := strings.Cut(line, ": "); ok {
				if len(msg) > 160 {
					msg = msg[:157] + "..."
				}
				return msg
			}
		}
	}
	return lastLine(out, err)
}

// stats of a sample set (ms).
type stats struct {
	N                          int
	Median, P25, P75, Min, Max float64
}

func summarize(s []float64) (stats, bool) {
	if len(s) == 0 {
		return stats{}, false
	}
	s = slices.Clone(s)
	slices.Sort(s)
	q := func(p float64) float64 {
		x := p * float64(len(s)-1)
		i := int(x)
		if i+1 >= len(s) {
			return s[len(s)-1]
		}
		return s[i] + (x-float64(i))*(s[i+1]-s[i])
	}
	return stats{N: len(s), Median: q(0.5), P25: q(0.25), P75: q(0.75), Min: s[0], Max: s[len(s)-1]}, true
}
