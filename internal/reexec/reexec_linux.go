package reexec

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/beamhop/lightbox/internal/idmap"
	"github.com/beamhop/lightbox/internal/reexec/child"
)

const envSync = child.EnvSync

// Command prepares a re-exec of the running binary in role, in a new user
// namespace with mapping m, plus the namespaces in cloneflags (CLONE_NEW*).
// The caller may set Stdin, Stdout, Stderr, Env, ExtraFiles and the other
// SysProcAttr fields before Start; the role marker and the handshake are
// added by Start. exe overrides the binary ("" = /proc/self/exe).
func Command(exe, role string, m idmap.Mapping, cloneflags uintptr, args ...string) *Cmd {
	if exe == "" {
		exe = "/proc/self/exe"
	}
	c := exec.Command(exe, args...)
	c.Args[0] = "lightbox-" + role
	c.SysProcAttr = &syscall.SysProcAttr{Cloneflags: cloneflags | unix.CLONE_NEWUSER}
	return &Cmd{Cmd: c, mapping: m}
}

func toSys(rs []idmap.Range) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(rs))
	for i, r := range rs {
		out[i] = syscall.SysProcIDMap{ContainerID: int(r.ContainerID), HostID: int(r.HostID), Size: int(r.Size)}
	}
	return out
}

// Start starts the child and, when the mapping needs them, runs newuidmap
// and newgidmap for it before letting it go on: with StartVia when this
// process is Large (a fork of it would copy the page tables of all its
// memory), else with StartFork.
func (c *Cmd) Start() error {
	if Large() && !c.SysProcAttr.UseCgroupFD {
		return c.StartVia(nil, nil)
	}
	return c.StartFork()
}

// StartFork is Start with Go's own clone of this process (a fork, as the
// child is in a new user namespace), whatever this process's size.
func (c *Cmd) StartFork() error {
	r, err := c.prepare()
	if err != nil {
		return err
	}
	if r != nil {
		defer func() { _ = r.Close() }() // the child's end, read by the child: ours is only closed
	}
	err = child.AsOwner(c.owner(), c.Cmd.Start)
	closeFiles(&c.closeAfterStart)
	if err != nil {
		if c.syncW != nil {
			_ = c.syncW.Close() // the start already failed: that error is returned
		}
		closeFiles(&c.closeAfterWait)
		return err
	}
	return c.mapLate()
}

// prepare sets up the child's environment and SysProcAttr for the
// mapping: written by the clone (Go's UidMappings), or by newuidmap and
// newgidmap once the child runs, behind the pipe whose read end it
// returns (the caller closes it once the child is started).
func (c *Cmd) prepare() (syncR *os.File, err error) {
	env := c.Env
	if env == nil {
		env = os.Environ()
	}
	env = append(env, EnvRole+"="+c.role())
	spa := c.SysProcAttr
	if !c.mapping.Subordinate {
		spa.UidMappings = toSys(c.mapping.UIDs)
		spa.GidMappings = toSys(c.mapping.GIDs)
		// setgroups must be denied for an unprivileged single-id gid map.
		spa.GidMappingsEnableSetgroups = os.Getuid() == 0
		if os.Getuid() == 0 && spa.Credential == nil {
			// Real root's own id is unmapped in a private range: become
			// the namespace's root before the exec, or it drops every
			// capability.
			spa.Credential = &syscall.Credential{Uid: 0, Gid: 0}
		}
	} else {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		syncR = r
		c.syncW = w
		c.ExtraFiles = append(c.ExtraFiles, r)
		env = append(env, envSync+"="+strconv.Itoa(2+len(c.ExtraFiles)))
		// Keep every capability across the exec of an unmapped child.
		spa.AmbientCaps = child.AllCaps()
	}
	c.Env = env
	return syncR, nil
}

func (c *Cmd) role() string { return c.Args[0][len("lightbox-"):] }

// owner is the uid that owns the child's user namespace (child.AsOwner):
// as real root with a private range, the host uid the namespace's root
// maps to, so that what the sandbox spends of the kernel's per-user
// counts is that uid's and not host root's; else 0, this process's own.
func (c *Cmd) owner() int {
	if c.mapping.Subordinate || os.Getuid() != 0 {
		return 0
	}
	for _, r := range c.mapping.UIDs {
		if r.ContainerID == 0 {
			return int(r.HostID)
		}
	}
	return 0
}

// Large says whether this process holds more than LargeAnon of anonymous
// memory (/proc/self/statm: resident less file-backed and shared pages).
// An unreadable statm reads as small.
func Large() bool {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return false
	}
	res, err1 := strconv.ParseUint(f[1], 10, 64)
	shared, err2 := strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil || shared > res {
		return false
	}
	return (res-shared)*uint64(os.Getpagesize()) > LargeAnon
}

// StartVia is Start through a small intermediate: the binary in the clone
// role (child.CloneRole), started without a namespace of its own (so Go
// starts it with a vfork, which does not copy this process's page
// tables), makes the clone with CLONE_PARENT and reports the child's pid.
// The child is this process's, as with Start: Wait waits for it. For a
// launcher holding much memory, whose own fork would copy the page tables
// of all of it (package child's CloneRole says what that costs).
//
// The child is born in the cgroups given: the v1 tasks files that the
// intermediate's cloning thread joins, or the v2 directory it clones
// into; the intermediate itself is in neither (the sandbox's pids limit
// does not count its threads). SysProcAttr must not set UseCgroupFD here.
func (c *Cmd) StartVia(tasks []*os.File, cgroupDir *os.File) error {
	if c.SysProcAttr.UseCgroupFD {
		return errors.New("reexec: StartVia takes the cgroup as an argument, not in SysProcAttr")
	}
	if cr := c.SysProcAttr.Credential; cr != nil && len(cr.Groups) > 0 {
		return errors.New("reexec: StartVia carries a credential's uid, gid and NoSetGroups only")
	}
	r, err := c.prepare()
	if err != nil {
		return err
	}
	if r != nil {
		defer func() { _ = r.Close() }() // the child's end (see Start)
	}
	fail := func(err error) error {
		if c.syncW != nil {
			_ = c.syncW.Close() // the start failed: that error is returned
		}
		closeFiles(&c.closeAfterStart)
		closeFiles(&c.closeAfterWait)
		return err
	}
	// A stream that is not a file goes through a pipe of ours, copied
	// here (the intermediate's own exec.Cmd would copy it, and its Wait
	// would wait for the child, which holds the pipe).
	stdin, stdout, stderr, copies, err := c.streams()
	if err != nil {
		return fail(err)
	}
	spa := c.SysProcAttr
	spec := child.CloneSpec{
		Role: c.role(), Flags: spa.Cloneflags, Files: 3 + len(c.ExtraFiles),
		UIDs: spa.UidMappings, GIDs: spa.GidMappings, Setgroups: spa.GidMappingsEnableSetgroups,
		Ambient: len(spa.AmbientCaps) > 0, CgroupDir: -1, Owner: c.owner(),
	}
	if spa.Credential != nil {
		spec.Cred = &syscall.Credential{Uid: spa.Credential.Uid, Gid: spa.Credential.Gid, NoSetGroups: spa.Credential.NoSetGroups}
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	defer func() { _ = repR.Close() }() // read to its end below
	extra := append([]*os.File(nil), c.ExtraFiles...)
	add := func(f *os.File) int {
		extra = append(extra, f)
		return 2 + len(extra)
	}
	spec.Report = add(repW)
	for _, f := range tasks {
		spec.Tasks = append(spec.Tasks, add(f))
	}
	if cgroupDir != nil {
		spec.CgroupDir = add(cgroupDir)
	}
	env := make([]string, 0, len(c.Env)+1)
	for _, kv := range c.Env {
		if !strings.HasPrefix(kv, EnvRole+"=") {
			env = append(env, kv)
		}
	}
	env = append(env, EnvRole+"="+child.CloneRole, child.EnvClone+"="+spec.Encode())
	ic := exec.Command(c.Path)
	ic.Args, ic.Env, ic.ExtraFiles = c.Args, env, extra
	// A nil file must be a nil interface here, or exec takes it for a
	// file.
	if stdin != nil {
		ic.Stdin = stdin
	}
	if stdout != nil {
		ic.Stdout = stdout
	}
	if stderr != nil {
		ic.Stderr = stderr
	}
	err = ic.Start()
	_ = repW.Close() // the intermediate has its own; ours would keep the read below from ending
	closeFiles(&c.closeAfterStart)
	if err != nil {
		return fail(fmt.Errorf("start the clone helper: %w", err))
	}
	for _, cp := range copies {
		c.copies.Go(cp)
	}
	msg, rerr := io.ReadAll(io.LimitReader(repR, 4096))
	werr := ic.Wait()
	pid, perr := strconv.Atoi(string(msg))
	switch {
	case rerr != nil:
		return fail(fmt.Errorf("read the clone helper's report: %w", rerr))
	case len(msg) > 0 && msg[0] == 'E':
		return fail(errors.New(string(msg[1:])))
	case perr != nil || pid <= 0:
		return fail(fmt.Errorf("the clone helper reported %q (%v)", msg, werr))
	}
	// Our child (CLONE_PARENT), not yet waited for: its pid cannot have
	// been reused.
	p, err := os.FindProcess(pid)
	if err != nil {
		return fail(fmt.Errorf("find the cloned child %d: %w", pid, err))
	}
	c.Cmd.Process = p // exec.Cmd's Wait waits for it
	return c.mapLate()
}

// streams returns the intermediate's stdin, stdout and stderr: a file or
// nothing as given, anything else the child's end of a new pipe whose
// other end copies, run once the intermediate is started, carry. The
// pipes' ends are in closeAfterStart and closeAfterWait (an error leaves
// them there for the caller's cleanup).
func (c *Cmd) streams() (stdin, stdout, stderr *os.File, copies []func(), err error) {
	if f, ok := c.Stdin.(*os.File); ok || c.Stdin == nil {
		stdin = f
	} else {
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, nil, nil, nil, err
		}
		stdin = pr
		c.closeAfterStart = append(c.closeAfterStart, pr)
		c.closeAfterWait = append(c.closeAfterWait, pw) // the copy closes it first; a failed start before the copy runs
		src := c.Stdin
		copies = append(copies, func() {
			_, _ = io.Copy(pw, src) // the child stopped reading (EPIPE) or src ended: as exec, neither fails the command
			_ = pw.Close()          // EOF for the child
		})
	}
	out := func(w io.Writer) (*os.File, error) {
		if f, ok := w.(*os.File); ok || w == nil {
			return f, nil
		}
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		c.closeAfterStart = append(c.closeAfterStart, pw)
		c.closeAfterWait = append(c.closeAfterWait, pr) // the copy closes it first; a failed start before the copy runs
		copies = append(copies, func() {
			_, _ = io.Copy(w, pr) // to the caller's writer, until the child and its children are gone
			_ = pr.Close()        // read-only
		})
		return pw, nil
	}
	if stdout, err = out(c.Stdout); err != nil {
		return nil, nil, nil, nil, err
	}
	if stderr, err = out(c.Stderr); err != nil {
		return nil, nil, nil, nil, err
	}
	return stdin, stdout, stderr, copies, nil
}

// mapLate runs newuidmap and newgidmap for a child started mapped late
// (prepare's pipe) and lets it go on; nothing when it was mapped at its
// clone. The two helpers run at once: each writes its own file of the
// child's (uid_map, gid_map), neither reads what the other writes, and
// the child waits for both (each helper's exec, ~1 ms of a setuid
// program's start, is the child's wait; bench/NOTES.md, 2026-12-01
// clone). A failure kills and reaps the child.
func (c *Cmd) mapLate() error {
	if c.syncW == nil {
		return nil
	}
	defer func() { _ = c.syncW.Close() }() // a pipe: the one byte written through it was checked
	pid := strconv.Itoa(c.Process.Pid)
	gidErr := make(chan error, 1)
	go func() { gidErr <- runMapHelper("newgidmap", pid, c.mapping.GIDs) }()
	err := runMapHelper("newuidmap", pid, c.mapping.UIDs)
	err = errors.Join(err, <-gidErr)
	if err != nil {
		_ = c.Process.Kill() // the map failed: its error is returned, the child only reaped
		_ = c.Wait()         // killed above: the status says so
		return fmt.Errorf("write id map: %w", err)
	}
	if _, err := c.syncW.Write([]byte{1}); err != nil {
		_ = c.Process.Kill() // the release failed: its error is returned, the child only reaped
		_ = c.Wait()         // killed above: the status says so
		return fmt.Errorf("release child: %w", err)
	}
	return nil
}

// runMapHelper runs tool (newuidmap or newgidmap) for pid with ranges rs.
func runMapHelper(tool, pid string, rs []idmap.Range) error {
	path, err := idmap.LookHelper(tool)
	if err != nil {
		return err
	}
	out, err := exec.Command(path, append([]string{pid}, idmap.Args(rs)...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", tool, pid, err, out)
	}
	return nil
}
