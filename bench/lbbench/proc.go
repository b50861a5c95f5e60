package main

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
)

// proc is what the memory section needs to know of a host process.
type proc struct {
	pid, ppid, uid int
	comm           string
	argv           []string
	userns         string // readlink /proc/PID/ns/user
	start          uint64 // start time in clock ticks (pid reuse guard)
}

func readProc(pid int) (proc, bool) {
	p := proc{pid: pid}
	dir := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return p, false
	}
	// comm is in parentheses and may hold spaces: split after the last ')'.
	i, j := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if i < 0 || j < i {
		return p, false
	}
	p.comm = string(stat[i+1 : j])
	f := strings.Fields(string(stat[j+1:]))
	if len(f) < 20 {
		return p, false
	}
	p.ppid, _ = strconv.Atoi(f[1])
	p.start, _ = strconv.ParseUint(f[19], 10, 64)
	if st, err := os.ReadFile(dir + "/status"); err == nil {
		for _, line := range strings.Split(string(st), "\n") {
			if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
				if fs := strings.Fields(rest); len(fs) > 0 {
					p.uid, _ = strconv.Atoi(fs[0])
				}
			}
		}
	}
	if cl, err := os.ReadFile(dir + "/cmdline"); err == nil {
		p.argv = strings.Split(strings.TrimRight(string(cl), "\x00"), "\x00")
	}
	p.userns, _ = os.Readlink(dir + "/ns/user")
	return p, true
}

func listProcs() []proc {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok {
			out = append(out, p)
		}
	}
	return out
}

// findSleep returns the busybox `sleep TAG` process of uid, if any.
func findSleep(tag, uid int) (proc, bool) {
	want := strconv.Itoa(tag)
	for _, p := range listProcs() {
		// As root any uid: a root store's sandboxes run as ids of its
		// private range (the tag alone tells the workload).
		if (uid == 0 || p.uid == uid) && len(p.argv) == 2 && (p.argv[0] == "sleep" || strings.HasSuffix(p.argv[0], "/sleep")) && p.argv[1] == want {
			return p, true
		}
	}
	return proc{}, false
}

// memInfo is the host-side memory of a set of processes (kB).
type memInfo struct {
	PrivateKB int64    `json:"privateKB"`
	RssKB     int64    `json:"rssKB"`
	PssKB     int64    `json:"pssKB"`
	AnonKB    int64    `json:"anonKB"`    // anonymous memory (heap, stacks): private but for what fork shares
	Processes []string `json:"processes"` // "pid comm privateKB"
}

func smapsRollup(pid int) (priv, rss, pss, anon int64, ok bool) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0, 0, 0, 0, false
	}
	defer func() { _ = f.Close() }() // read-only, or nothing written through it
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		v, err := strconv.ParseInt(fs[1], 10, 64)
		if err != nil {
			continue
		}
		switch fs[0] {
		case "Private_Clean:", "Private_Dirty:", "Private_Hugetlb:":
			priv += v
		case "Rss:":
			rss = v
		case "Pss:":
			pss = v
		case "Anonymous:":
			anon = v
		}
	}
	return priv, rss, pss, anon, true
}
