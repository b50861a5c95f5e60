package child

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// CloneSpec is what the clone role makes: its own descriptors 0..Files-1
// become the child's, under the same numbers; the others it holds (the
// report pipe, the cgroup files) are its own.
type CloneSpec struct {
	Role      string // the child's role (EnvRole in its environment)
	Flags     uintptr
	Files     int
	UIDs      []syscall.SysProcIDMap // written by the clone role (nil: the launcher maps late, EnvSync)
	GIDs      []syscall.SysProcIDMap
	Setgroups bool                // GidMappingsEnableSetgroups
	Cred      *syscall.Credential // Uid, Gid and NoSetGroups only
	Ambient   bool                // every capability ambient (a child mapped late)
	Report    int                 // where the child's pid, or "E" and an error, is written
	Tasks     []int               // cgroup v1 tasks files the cloning thread joins (the child is born in them)
	CgroupDir int                 // cgroup v2 directory for CLONE_INTO_CGROUP (-1: none)
	Owner     int                 // the new user namespace's owner (AsOwner; 0: this process's)
}

// Encode is the spec in EnvClone's form: space-separated key=value words.
func (s CloneSpec) Encode() string {
	var b strings.Builder
	word := func(k, v string) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k + "=" + v)
	}
	ids := func(ms []syscall.SysProcIDMap) string {
		var parts []string
		for _, m := range ms {
			parts = append(parts, fmt.Sprintf("%d:%d:%d", m.ContainerID, m.HostID, m.Size))
		}
		return strings.Join(parts, ",")
	}
	ints := func(fds []int) string {
		var parts []string
		for _, fd := range fds {
			parts = append(parts, strconv.Itoa(fd))
		}
		return strings.Join(parts, ",")
	}
	word("role", s.Role)
	word("flags", strconv.FormatUint(uint64(s.Flags), 16))
	word("files", strconv.Itoa(s.Files))
	word("report", strconv.Itoa(s.Report))
	word("cgdir", strconv.Itoa(s.CgroupDir))
	if len(s.UIDs) > 0 {
		word("uids", ids(s.UIDs))
	}
	if len(s.GIDs) > 0 {
		word("gids", ids(s.GIDs))
	}
	if s.Setgroups {
		word("setgroups", "1")
	}
	if s.Cred != nil {
		word("cred", fmt.Sprintf("%d:%d", s.Cred.Uid, s.Cred.Gid))
		if s.Cred.NoSetGroups {
			word("nosetgroups", "1")
		}
	}
	if s.Ambient {
		word("ambient", "1")
	}
	if s.Owner > 0 {
		word("owner", strconv.Itoa(s.Owner))
	}
	if len(s.Tasks) > 0 {
		word("tasks", ints(s.Tasks))
	}
	return b.String()
}

// ParseCloneSpec reads Encode's form back; anything else is an error.
func ParseCloneSpec(str string) (CloneSpec, error) {
	s := CloneSpec{Report: -1, CgroupDir: -1}
	noSetGroups := false
	bad := func(w string) (CloneSpec, error) { return CloneSpec{}, fmt.Errorf("bad clone spec word %q", w) }
	num := func(v string) (int, bool) {
		n, err := strconv.Atoi(v)
		return n, err == nil && n >= -1
	}
	idmaps := func(v string) ([]syscall.SysProcIDMap, bool) {
		var out []syscall.SysProcIDMap
		for _, p := range strings.Split(v, ",") {
			f := strings.Split(p, ":")
			if len(f) != 3 {
				return nil, false
			}
			var n [3]int
			for i := range f {
				x, err := strconv.Atoi(f[i])
				if err != nil || x < 0 {
					return nil, false
				}
				n[i] = x
			}
			out = append(out, syscall.SysProcIDMap{ContainerID: n[0], HostID: n[1], Size: n[2]})
		}
		return out, true
	}
	for _, w := range strings.Fields(str) {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			return bad(w)
		}
		switch k {
		case "role":
			s.Role = v
		case "flags":
			f, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				return bad(w)
			}
			s.Flags = uintptr(f)
		case "files", "report", "cgdir":
			n, ok := num(v)
			if !ok {
				return bad(w)
			}
			switch k {
			case "files":
				s.Files = n
			case "report":
				s.Report = n
			case "cgdir":
				s.CgroupDir = n
			}
		case "uids", "gids":
			m, ok := idmaps(v)
			if !ok {
				return bad(w)
			}
			if k == "uids" {
				s.UIDs = m
			} else {
				s.GIDs = m
			}
		case "setgroups":
			s.Setgroups = v == "1"
		case "ambient":
			s.Ambient = v == "1"
		case "cred":
			u, g, ok := strings.Cut(v, ":")
			uid, err1 := strconv.ParseUint(u, 10, 32)
			gid, err2 := strconv.ParseUint(g, 10, 32)
			if !ok || err1 != nil || err2 != nil {
				return bad(w)
			}
			s.Cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		case "nosetgroups":
			noSetGroups = v == "1"
		case "owner":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n == 0 {
				return bad(w)
			}
			s.Owner = int(n)
		case "tasks":
			for _, p := range strings.Split(v, ",") {
				n, ok := num(p)
				if !ok || n < 0 {
					return bad(w)
				}
				s.Tasks = append(s.Tasks, n)
			}
		default:
			return bad(w)
		}
	}
	if noSetGroups {
		if s.Cred == nil {
			return CloneSpec{}, errors.New("clone spec has nosetgroups without a credential")
		}
		s.Cred.NoSetGroups = true
	}
	if s.Role == "" || s.Files < 3 || s.Report < s.Files {
		return CloneSpec{}, errors.New("clone spec lacks its role, files or report descriptor")
	}
	return s, nil
}

// The clone role runs from here, at this package's initialization, so
// that every program linking it (lightbox, the lean init, a program that
// embeds lightbox, a test binary whose TestMain dispatches other roles)
// serves it without dispatching it, and before the inits of the packages
// that come after this one.
func init() {
	if os.Getenv(EnvRole) == CloneRole {
		CloneMain()
	}
}

// AllCaps is every capability, for SysProcAttr.AmbientCaps: a child
// started unmapped (its id map written after its exec) keeps them across
// that exec.
func AllCaps() []uintptr {
	caps := make([]uintptr, 0, unix.CAP_LAST_CAP+1)
	for c := uintptr(0); c <= uintptr(unix.CAP_LAST_CAP); c++ {
		caps = append(caps, c)
	}
	return caps
}

// CloneMain is the clone role's whole life: it clones and execs the
// running binary in the spec's role, reports the child's pid (or why it
// could not) and exits. It never returns.
func CloneMain() {
	report := -1
	pid, err := cloneChild(&report)
	if report >= 0 {
		msg := strconv.Itoa(pid)
		if err != nil {
			msg = "E" + err.Error()
		}
		_, _ = unix.Write(report, []byte(msg)) // a pipe to the launcher: if it is gone, nobody is left to tell
	} else if err != nil {
		fmt.Fprintf(os.Stderr, "lightbox clone: %v\n", err)
	}
	if err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

func cloneChild(report *int) (int, error) {
	spec, err := ParseCloneSpec(os.Getenv(EnvClone))
	if err != nil {
		return 0, err
	}
	*report = spec.Report
	// Only descriptors 0..Files-1 go to the child (ForkExec puts each back
	// under its own number); the rest are this process's.
	if err := unix.CloseRange(uint(spec.Files), ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return 0, fmt.Errorf("close_range: %w", err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, EnvClone+"=") && !strings.HasPrefix(kv, EnvRole+"=") {
			env = append(env, kv)
		}
	}
	env = append(env, EnvRole+"="+spec.Role)
	files := make([]uintptr, spec.Files)
	for i := range files {
		files[i] = uintptr(i)
		if _, err := unix.FcntlInt(uintptr(i), unix.F_GETFD, 0); errors.Is(err, unix.EBADF) {
			files[i] = ^uintptr(0) // a gap the launcher left (a nil ExtraFiles entry): closed in the child too
		}
	}
	sys := &syscall.SysProcAttr{
		Cloneflags:                 spec.Flags | unix.CLONE_PARENT,
		UidMappings:                spec.UIDs,
		GidMappings:                spec.GIDs,
		GidMappingsEnableSetgroups: spec.Setgroups,
		Credential:                 spec.Cred,
	}
	if spec.Ambient {
		sys.AmbientCaps = AllCaps()
	}
	if spec.CgroupDir >= 0 {
		sys.UseCgroupFD, sys.CgroupFD = true, spec.CgroupDir
	}
	// The child is cloned from a thread that joined the sandbox's v1
	// cgroups (it is born in them); this process ends right after, so the
	// thread does not go back.
	runtime.LockOSThread()
	for _, fd := range spec.Tasks {
		for {
			_, err := unix.Write(fd, []byte("0"))
			if err == nil {
				break
			}
			if !errors.Is(err, unix.EINTR) {
				return 0, fmt.Errorf("join cgroup: %w", err)
			}
		}
	}
	var pid int
	err = AsOwner(spec.Owner, func() (err error) {
		pid, err = syscall.ForkExec("/proc/self/exe", os.Args, &syscall.ProcAttr{Env: env, Files: files, Sys: sys})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", spec.Role, err)
	}
	return pid, nil
}
