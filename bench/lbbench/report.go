package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

type results struct {
	Date     string            `json:"date"`
	Seconds  float64           `json:"seconds"`
	Machine  machine           `json:"machine"`
	Versions map[string]string `json:"versions"`
	Settings settings          `json:"settings"`
	Rows     []row             `json:"rows"`
}

type machine struct {
	CPU      string `json:"cpu"`
	Cores    int    `json:"cores"`
	Kernel   string `json:"kernel"`
	OS       string `json:"os"`
	MemoryMB int64  `json:"memoryMB"`
	LoadAvg  string `json:"loadAvgAtStart"`
}

type settings struct {
	Rounds      int `json:"rounds"`
	Runs        int `json:"runsPerRound"`
	Warmup      int `json:"warmupPerRound"`
	BatchRounds int `json:"batchRounds"`
	BatchRuns   int `json:"batchRunsPerRound"`
}

type row struct {
	Section    string `json:"section"`
	Key        string `json:"key"`
	Name       string `json:"name"`
	Mode       string `json:"mode"`
	Command    string `json:"command,omitempty"`
	Unit       string `json:"unit,omitempty"` // "ms" or "kB"
	N          int    `json:"runs,omitempty"`
	FailedRuns int    `json:"failedRuns,omitempty"`
	// FailedStderr is the tail of what the command wrote on stderr, when
	// some runs failed and it was kept (the batches).
	FailedStderr string   `json:"failedStderr,omitempty"`
	Median       float64  `json:"median,omitempty"`
	P25          float64  `json:"p25,omitempty"`
	P75          float64  `json:"p75,omitempty"`
	Min          float64  `json:"min,omitempty"`
	Max          float64  `json:"max,omitempty"`
	Ratio        float64  `json:"ratio,omitempty"`
	RatioTo      string   `json:"ratioTo,omitempty"`
	Memory       *memInfo `json:"memory,omitempty"`
	Error        string   `json:"error,omitempty"`
}

func firstLine(argv ...string) string {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return "n/a"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

func machineInfo() machine {
	var mc machine
	mc.Cores = runtime.NumCPU()
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				mc.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	mc.Kernel = firstLine("uname", "-r")
	if data, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				mc.OS = strings.Trim(v, `"`)
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		_, _ = fmt.Sscanf(strings.SplitN(string(data), "\n", 2)[0], "MemTotal: %d kB", &kb) // memory unknown: MemoryMB stays 0
		mc.MemoryMB = kb / 1024
	}
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(data))
		if len(f) >= 3 {
			mc.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return mc
}

func versions(lightbox string) map[string]string {
	return map[string]string{
		"lightbox":   firstLine(lightbox, "version") + " " + firstLine("git", "-C", filepath.Dir(filepath.Dir(lightbox)), "describe", "--always", "--dirty"),
		"runc":       firstLine("runc", "--version"),
		"crun":       firstLine("crun", "--version"),
		"bubblewrap": firstLine("bwrap", "--version"),
		"podman":     firstLine("podman", "--version"),
		"hyperfine":  firstLine("hyperfine", "--version"),
		"unshare":    firstLine("unshare", "--version"),
	}
}

// record turns a group's items into rows: stats, and the ratio of each
// median to its base (the group's floor, or podman for memory).
func (b *bench) record(m *mode, section string, items []*item) {
	if b.res.Date == "" {
		b.res.Date = time.Now().UTC().Format(time.RFC3339)
	}
	byKey := map[string]*item{}
	for _, it := range items {
		byKey[it.key] = it
	}
	for _, it := range items {
		r := row{Section: section, Key: it.key, Name: it.label, Mode: m.name, Error: it.err, FailedRuns: it.failed}
		if it.failed > 0 && it.stderr != "" {
			r.FailedStderr = fileTail(it.stderr, 4096)
		}
		if len(it.argv) > 0 {
			r.Command = shellQuote(it.argv)
		} else if it.api != "" {
			r.Command = "go test -bench " + it.api + " ./bench/api"
		}
		base := it.base
		if base == "" {
			base = items[0].key
		}
		switch {
		case it.mem != nil:
			r.Unit, r.Memory, r.Median = "kB", it.mem, float64(it.mem.PrivateKB)
			if bi := byKey[base]; bi != nil && bi.mem != nil && bi.mem.PrivateKB > 0 {
				r.Ratio, r.RatioTo = r.Median/float64(bi.mem.PrivateKB), base
			}
		case r.Error == "":
			st, ok := summarize(it.samples)
			if !ok {
				if it.failed > 0 {
					r.Error = fmt.Sprintf("all %d runs failed", it.failed)
				} else {
					r.Error = "no samples"
				}
				break
			}
			r.Unit, r.N, r.Median, r.P25, r.P75, r.Min, r.Max = "ms", st.N, st.Median, st.P25, st.P75, st.Min, st.Max
			if bi := byKey[base]; bi != nil {
				if bs, ok := summarize(bi.samples); ok && bs.Median > 0 {
					r.Ratio, r.RatioTo = st.Median/bs.Median, base
				}
			}
		}
		b.res.Rows = append(b.res.Rows, r)
	}
}

// wide reports a spread (interquartile range) over a quarter of the median.
func (r row) wide() bool { return r.Unit == "ms" && r.Median > 0 && (r.P75-r.P25)/r.Median > 0.25 }

func (b *bench) table() string {
	var sb strings.Builder
	mc := b.res.Machine
	fmt.Fprintf(&sb, "\nlightbox bench, %s: %s, %d cores, %d MB, %s, kernel %s (load at start %s)\n",
		b.res.Date, mc.CPU, mc.Cores, mc.MemoryMB, mc.OS, mc.Kernel, mc.LoadAvg)
	v := b.res.Versions
	fmt.Fprintf(&sb, "%s · %s · %s · %s · %s · %s\n", v["lightbox"], v["runc"], v["crun"], v["bubblewrap"], v["podman"], v["hyperfine"])
	s := b.res.Settings
	fmt.Fprintf(&sb, "hyperfine -N, %d interleaved rounds × %d runs (+%d warm-up) per command, batches %d × %d; median [p25–p75]; × = median / the floor's median in the same group and mode (memory: / podman's; private = Private_Clean+Private_Dirty of smaps_rollup, which counts a binary's text pages that no other process maps; anon = its Anonymous part)\n\n",
		s.Rounds, s.Runs, s.Warmup, s.BatchRounds, s.BatchRuns)

	type key struct{ section, key string }
	var order []key
	cells := map[key]map[string]row{}
	for _, r := range b.res.Rows {
		k := key{r.Section, r.Key}
		if cells[k] == nil {
			cells[k] = map[string]row{}
			order = append(order, k)
		}
		cells[k][r.Mode] = r
	}
	var notes []string
	note := func(s string) string {
		for i, n := range notes {
			if n == s {
				return fmt.Sprintf("[%d]", i+1)
			}
		}
		notes = append(notes, s)
		return fmt.Sprintf("[%d]", len(notes))
	}
	cell := func(r row, ok bool) (string, string) {
		switch {
		case !ok:
			return "", ""
		case r.Error != "":
			return "n/a " + note(r.Error), ""
		case r.Unit == "kB":
			return fmt.Sprintf("%d kB (anon %d)", int64(r.Median), r.Memory.AnonKB), ratioString(r.Ratio)
		}
		val := fmt.Sprintf("%s ms [%s–%s]", ms(r.Median), ms(r.P25), ms(r.P75))
		if r.N == 1 {
			val = fmt.Sprintf("%s ms (one run)", ms(r.Median))
		}
		if r.wide() {
			val += " " + note("! wide spread (IQR over 25% of the median): distrust this figure, the machine was busy")
		}
		if r.FailedRuns > 0 {
			val += " " + note(fmt.Sprintf("some runs failed (see results.json failedRuns and failedStderr) for %s", r.Key))
		}
		return val, ratioString(r.Ratio)
	}
	fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s |\n", "measurement", "root", "×", "rootless", "×")
	fmt.Fprintf(&sb, "|---|---:|---:|---:|---:|\n")
	section := ""
	for _, k := range order {
		if k.section != section {
			section = k.section
			fmt.Fprintf(&sb, "| **%s** | | | | |\n", section)
		}
		rs := cells[k]
		name := ""
		for _, r := range rs {
			name = r.Name
		}
		r1, ok1 := rs["root"]
		r2, ok2 := rs["rootless"]
		if r0, ok := rs["-"]; ok {
			r1, ok1, r2, ok2 = r0, true, r0, true
		}
		v1, x1 := cell(r1, ok1)
		v2, x2 := cell(r2, ok2)
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s |\n", name, v1, x1, v2, x2)
	}
	if len(notes) > 0 {
		sb.WriteString("\n")
		for i, n := range notes {
			fmt.Fprintf(&sb, "[%d] %s\n", i+1, n)
		}
	}
	return sb.String()
}

func ratioString(r float64) string {
	switch {
	case r <= 0:
		return ""
	case r < 0.1:
		return fmt.Sprintf("%.3f", r)
	default:
		return fmt.Sprintf("%.2f", r)
	}
}

func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func (b *bench) writeJSON(path string) error {
	data, err := json.MarshalIndent(b.res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// fileTail is the last n bytes of the file at p ("" when it cannot be
// read: a row's note, not worth failing the report for).
func fileTail(p string, n int64) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }() // read only
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-n, 0)
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil {
		return ""
	}
	return string(b)
}
