package reexec

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
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
// and newgidmap for it before letting it go on.
func (c *Cmd) Start() error {
	env := c.Env
	if env == nil {
		env = os.Environ()
	}
	env = append(env, EnvRole+"="+c.Args[0][len("lightbox-"):])
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
			return err
		}
		defer func() { _ = r.Close() }() // the child's end, read by the child: ours is only closed
		c.syncW = w
		c.ExtraFiles = append(c.ExtraFiles, r)
		env = append(env, envSync+"="+strconv.Itoa(2+len(c.ExtraFiles)))
		// Keep every capability across the exec of an unmapped child.
		for cp := uintptr(0); cp <= uintptr(unix.CAP_LAST_CAP); cp++ {
			spa.AmbientCaps = append(spa.AmbientCaps, cp)
		}
	}
	c.Env = env
	if err := c.Cmd.Start(); err != nil {
		if c.syncW != nil {
			_ = c.syncW.Close() // the start already failed: that error is returned
		}
		return err
	}
	if c.syncW == nil {
		return nil
	}
	defer func() { _ = c.syncW.Close() }() // a pipe: the one byte written through it was checked
	pid := strconv.Itoa(c.Process.Pid)
	for _, h := range []struct {
		tool string
		rs   []idmap.Range
	}{{"newuidmap", c.mapping.UIDs}, {"newgidmap", c.mapping.GIDs}} {
		path, err := idmap.LookHelper(h.tool)
		if err == nil {
			var out []byte
			out, err = exec.Command(path, append([]string{pid}, idmap.Args(h.rs)...)...).CombinedOutput()
			if err != nil {
				err = fmt.Errorf("%s %s: %w: %s", h.tool, pid, err, out)
			}
		}
		if err != nil {
			_ = c.Process.Kill() // the map failed: its error is returned, the child only reaped
			_ = c.Wait()         // killed above: the status says so
			return fmt.Errorf("write id map: %w", err)
		}
	}
	if _, err := c.syncW.Write([]byte{1}); err != nil {
		_ = c.Process.Kill() // the release failed: its error is returned, the child only reaped
		_ = c.Wait()         // killed above: the status says so
		return fmt.Errorf("release child: %w", err)
	}
	return nil
}
