package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/beamhop/lightbox/nsinit"
	"golang.org/x/sys/unix"
)

// Cmd is a command to run in a sandbox, in the spirit of os/exec.Cmd. The
// process runs in its own session, as the sandbox's user unless User says
// otherwise, and never gets the caller's terminal: with Tty it gets a pty
// allocated inside the sandbox, relayed here.
type Cmd struct {
	// CmdSpec says what runs: the fields lightbox.Cmd has too.
	CmdSpec

	sb     *Sandbox
	ctx    context.Context
	main   bool
	logMax int64 // Stdout and Stderr are log files the init relays, capped
	// logs: Stdout and Stderr are the sandbox's own log files, which
	// the runtime made for it: passed as they are, never copied.
	logs bool
	// ttyLog, with Tty, is the log file the init copies the terminal's
	// output into (capped at logMax), for a main command that outlives
	// this process; there is then no pty here.
	ttyLog *os.File

	started   bool
	conn      *net.UnixConn
	pty       *os.File
	pid       atomic.Int64 // set from the Started reply, or with late from the Exit one
	closers   []io.Closer  // our ends, closed after Wait
	outs      []*os.File   // the read ends of the output pipes copied here
	copies    sync.WaitGroup
	copyErr   error
	copyMu    sync.Mutex
	done      chan struct{}
	exitCode  int
	signal    syscall.Signal
	timedOut  bool  // the sandbox's timeout ended the command
	destroyed bool  // the sandbox was being destroyed as it ended
	err       error // a failure to learn the exit status
	waitOnce  sync.Once
	waitErr   error
	oomKnown  bool   // the sandbox has an OOM-kill counter
	oomBase   uint64 // its count when the command started
}

// Command returns a Cmd that runs name with args in the sandbox.
func (s *Sandbox) Command(name string, arg ...string) *Cmd {
	return &Cmd{CmdSpec: CmdSpec{Path: name, Args: arg}, sb: s}
}

// CommandContext is Command with a context: when ctx ends before the
// command does, the command is killed (SIGKILL).
func (s *Sandbox) CommandContext(ctx context.Context, name string, arg ...string) *Cmd {
	c := s.Command(name, arg...)
	c.ctx = ctx
	return c
}

// Start starts the command. A command that does not exist in the
// sandbox fails with an error wrapping ErrCommandNotFound; one that cannot
// be executed, ErrNotExecutable.
func (c *Cmd) Start() error { return c.startCtx(false) }

// StartLate sends the command to the sandbox and returns without waiting
// to hear that it started: what Start would have returned for a command
// that could not start (ErrCommandNotFound, ErrNotExecutable…) Wait
// returns, and Pid is known once Wait returned (Started). It spares a
// message and a wakeup of each side per command: for a caller that waits
// for the end anyway (Run; bench/NOTES.md, execserve). With Tty it is
// Start.
func (c *Cmd) StartLate() error { return c.startCtx(!c.Tty) }

func (c *Cmd) startCtx(late bool) error {
	ctx := c.ctx
	if ctx == nil {
		ctx = context.Background() // no context given: nothing can cancel it, as exec.Command
	}
	return c.start(ctx, ctx, late)
}

// start starts the command: ctx bounds the start, life the command's run
// (its end kills the command); late, without waiting for the Started
// reply (StartLate).
func (c *Cmd) start(ctx, life context.Context, late bool) (err error) {
	if c.started {
		return errors.New("lightbox: Cmd already started")
	}
	c.started = true
	if c.sb == nil {
		return errors.New("lightbox: Cmd not made by Sandbox.Command")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	args := append([]string{c.Path}, c.Args...)
	if err := checkProcess(args, c.Env, c.Dir, c.User); err != nil {
		return &ExecError{Sandbox: c.sb.name, Err: err}
	}
	var childEnds []int
	defer func() {
		for _, fd := range childEnds {
			unix.Close(fd) // the child's ends of its stdio: the init has its own once sent
		}
		if err != nil {
			c.closeOurs()
		}
	}()
	req := nsinit.Request{Op: nsinit.OpExec, Exec: &nsinit.Exec{
		Args: args, Env: c.Env, Dir: c.Dir, User: c.User, Tty: c.Tty, Rows: c.TtySize[0], Cols: c.TtySize[1], Main: c.main, LogMax: c.logMax,
		NoStarted: late,
	}}
	var fds []int
	if c.Tty && c.ttyLog != nil {
		req.Exec.TtyLog = true
		fds = []int{int(c.ttyLog.Fd())}
	}
	if !c.Tty {
		for i := range 3 {
			var st stdio
			var err error
			switch i {
			case 0:
				st, err = c.reader(c.Stdin)
			case 1:
				st, err = c.writer(c.Stdout, "stdout")
			case 2:
				st, err = c.writer(c.Stderr, "stderr")
			}
			if err != nil {
				return err
			}
			fds = append(fds, st.pass)
			if st.own {
				childEnds = append(childEnds, st.pass)
			}
		}
	}
	conn, err := c.sb.dial(ctx)
	if err != nil {
		return err
	}
	c.oomBase, c.oomKnown = c.sb.oomKills()
	c.conn = conn
	c.closers = append(c.closers, conn)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) }) // fails only on a closed conn: its I/O then fails
	err = sendRequest(conn, req, fds)
	if err == nil && !late {
		var r nsinit.Reply
		var rfds []int
		r, rfds, err = readReply(conn)
		if err == nil {
			switch r.Type {
			case nsinit.ReplyStarted:
				c.pid.Store(int64(r.Pid))
				if c.Tty && c.ttyLog == nil {
					if len(rfds) != 1 {
						err = errors.New("init sent no pty")
					} else {
						// Non-blocking, so that os.File reads it through
						// the poller and closeOurs can end the relay's
						// read: a blocking read held the master (and the
						// relay, writing to Stdout after Wait) while a
						// job the command left held the terminal. The
						// init keeps its copy of the description unread.
						if err = unix.SetNonblock(rfds[0], true); err != nil {
							unix.Close(rfds[0])
							err = fmt.Errorf("pty: %w", err)
							break
						}
						c.pty = os.NewFile(uintptr(rfds[0]), "pty")
						c.closers = append(c.closers, c.pty)
					}
				}
			case nsinit.ReplyError:
				err = startError(r)
			default:
				err = fmt.Errorf("unexpected reply %q", r.Type)
			}
		}
	}
	if !stop() || ctx.Err() != nil {
		if err == nil {
			err = ctx.Err()
		}
	}
	if err != nil {
		// An init that closed the socket unanswered (a destroy racing
		// the exec) is a sandbox no longer running, not a socket error.
		return &ExecError{Sandbox: c.sb.name, Err: ctxErr(ctx, c.sb.gone(err))}
	}
	_ = conn.SetDeadline(time.Time{}) // fails only on a closed conn: its I/O then fails
	for _, fd := range childEnds {
		unix.Close(fd) // the child's ends, sent: the init holds its own
	}
	childEnds = nil
	if c.Tty && c.ttyLog == nil {
		c.relayPty()
	}
	c.done = make(chan struct{})
	go c.waitExit(life)
	return nil
}

// startError is the error of a command the init could not start.
func startError(r nsinit.Reply) error {
	switch r.Code {
	case 127:
		return fmt.Errorf("%w: %s", ErrCommandNotFound, r.Error)
	case 126:
		return fmt.Errorf("%w: %s", ErrNotExecutable, r.Error)
	}
	return errors.New(r.Error)
}

// devNull returns /dev/null opened for reading and writing once for the
// process: the stream of a command given none (the init gets its own copy
// of the descriptor with each request), instead of an open and a close
// around every command.
// A failed open (EMFILE) is not kept: the next command tries again.
func devNull() (*os.File, error) {
	devNullMu.Lock()
	defer devNullMu.Unlock()
	if devNullF == nil {
		f, err := os.OpenFile(os.DevNull, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		devNullF = f
	}
	return devNullF, nil
}

// null is /dev/null for a stream the caller gave none, or nil when the
// sandbox maps its owner (the identity mapping: the sandbox's root could
// chmod the host's /dev/null through /proc/self/fd), so that the caller
// makes a pipe instead.
func (c *Cmd) null() (*os.File, error) {
	f, err := devNull()
	if err != nil {
		return nil, err
	}
	if c.sb.m.nullMapped() {
		return nil, nil
	}
	return f, nil
}

var (
	devNullMu sync.Mutex
	devNullF  *os.File // never closed: one descriptor for the process's life
)

type stdio struct {
	pass int  // the fd passed to the process
	own  bool // pass is ours (a pipe's end), closed once it is passed
}

// fileFD is f's descriptor to pass: Fd, which also makes a file that Go
// polls blocking, as the workload expects its stdio (the caller's file
// stays open: c holds it).
func fileFD(f *os.File) stdio { return stdio{pass: int(f.Fd())} }

// passable tells how the caller's file f may become a workload's stream
// (name: "stdin", "stdout", "stderr"): passed as it is, or copied through
// a pipe. What the workload holds it can reopen through /proc/self/fd
// with any access its credentials allow, and fchmod, fchown or truncate
// when the sandbox maps the file's owner (rootless: the caller's own
// files): handed `< data.csv`, it could rewrite and chmod the caller's
// file. So only streams without a host file behind them pass: sockets,
// anonymous pipes the sandbox's root owns (see pipe), and the null-like
// devices (/dev/null, zero, full, random, urandom) whose owner the
// sandbox does not map. A regular file,
// a block device, a FIFO or socket in a file system, any other device
// is copied through a pipe, as docker and podman copy every stream. A
// terminal is always copied (a workload must never get the caller's
// terminal: TIOCSTI and friends). A directory is refused: a command
// handed one walks the host's tree from it (/proc/self/fd/0/..), the
// escape of runc's CVE-2024-21626.
func (c *Cmd) passable(f *os.File, name string) (pass bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false, fmt.Errorf("%s: fstat %s: %w", name, f.Name(), err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return false, fmt.Errorf("%s is a directory (%s), not a stream: refused, a command handed it could reach the host's files through it", name, f.Name())
	case unix.S_IFSOCK:
		return true, nil // sockfs: no file behind it
	case unix.S_IFIFO:
		var fs unix.Statfs_t
		if err := unix.Fstatfs(int(f.Fd()), &fs); err != nil {
			return false, fmt.Errorf("%s: fstatfs %s: %w", name, f.Name(), err)
		}
		// A named FIFO has a file. An anonymous pipe the sandbox's root
		// does not own (host root's, in a store with a private range)
		// could not be reopened inside: copied into one it owns.
		return fs.Type == unix.PIPEFS_MAGIC && c.sb.m.mapsOwner(&st), nil
	case unix.S_IFCHR:
		return nullLike(st.Rdev) && !c.sb.m.mapsOwner(&st), nil // a terminal is no null-like device: copied
	}
	return false, nil
}

// nullLike reports whether rdev is one of the memory devices that hold no
// data of anyone's: /dev/null, zero, full, random and urandom (1:3, 5, 7,
// 8, 9).
func nullLike(rdev uint64) bool {
	if unix.Major(rdev) != 1 {
		return false
	}
	switch unix.Minor(rdev) {
	case 3, 5, 7, 8, 9:
		return true
	}
	return false
}

// pipe is pipe's pipe owned by the sandbox's root: a workload reopens its
// streams through /proc/self/fd (`echo > /dev/stdout`, a log file that is
// a link to /dev/stdout, as nginx's images have), which a pipe made by
// host root refuses to a sandbox's root that is not host root (runc
// chowns the container's stdio for the same reason). Only our own pipes
// are given away so; rootless, the caller is the sandbox's root already.
func (c *Cmd) pipe(ourRead bool) (ours *os.File, theirs int, err error) {
	ours, theirs, err = pipe(ourRead)
	if err != nil {
		return nil, -1, err
	}
	if uid, gid, ok := c.sb.m.rootOwner(); ok {
		if err := unix.Fchown(theirs, uid, gid); err != nil {
			_ = ours.Close() // a pipe's end, unused
			unix.Close(theirs)
			return nil, -1, os.NewSyscallError("fchown", err)
		}
	}
	return ours, theirs, nil
}

// pipe returns a pipe for one of the workload's streams: our end (the
// read end when ourRead) non-blocking in Go's poller, the workload's end
// blocking and no *os.File at all. os.Pipe polls both ends, so the end we
// pass would be made non-blocking, registered with epoll, made blocking
// again by Fd and unregistered at its Close: six syscalls per stream of
// every command for nothing.
func pipe(ourRead bool) (ours *os.File, theirs int, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, -1, os.NewSyscallError("pipe2", err)
	}
	o, t := p[0], p[1]
	if !ourRead {
		o, t = t, o
	}
	// The two ends are two open files: this leaves ours non-blocking.
	if _, err := unix.FcntlInt(uintptr(t), unix.F_SETFL, 0); err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return nil, -1, os.NewSyscallError("fcntl", err)
	}
	return os.NewFile(uintptr(o), "pipe"), t, nil
}

func (c *Cmd) reader(r io.Reader) (stdio, error) {
	if f, ok := r.(*os.File); ok && f != nil {
		if pass, err := c.passable(f, "stdin"); err != nil {
			return stdio{}, err
		} else if pass {
			return fileFD(f), nil
		}
	}
	if r == nil {
		f, err := c.null()
		if err != nil {
			return stdio{}, err
		}
		if f != nil {
			return fileFD(f), nil
		}
		// A sandbox that maps /dev/null's owner (the identity mapping)
		// could chmod the host's: an empty pipe instead.
		pw, pr, err := c.pipe(false)
		if err != nil {
			return stdio{}, err
		}
		_ = pw.Close() // a pipe's end: the reader sees EOF at once
		return stdio{pass: pr, own: true}, nil
	}
	pw, pr, err := c.pipe(false)
	if err != nil {
		return stdio{}, err
	}
	c.closers = append(c.closers, pw)
	go func() {
		_, err := io.Copy(pw, r)
		if err != nil && !errors.Is(err, unix.EPIPE) && !errors.Is(err, os.ErrClosed) {
			// The reader failed: the command sees the end of its input
			// next, and must not pass for having had all of it (as
			// os/exec, Wait returns this when the command exits 0).
			// Said before the close, so before the command can end of
			// it. A command that stopped reading (EPIPE) or ended
			// (our end closed) lost nothing.
			c.setCopyErr(fmt.Errorf("copy stdin: %w", err))
		}
		_ = pw.Close() // a pipe: no buffer of ours; the reader sees EOF
	}()
	return stdio{pass: pr, own: true}, nil
}

func (c *Cmd) writer(w io.Writer, name string) (stdio, error) {
	if f, ok := w.(*os.File); ok && f != nil {
		if c.logs {
			return fileFD(f), nil // the sandbox's own log file
		}
		if pass, err := c.passable(f, name); err != nil {
			return stdio{}, err
		} else if pass {
			return fileFD(f), nil
		}
	}
	if w == nil {
		f, err := c.null()
		if err != nil {
			return stdio{}, err
		}
		if f != nil {
			return fileFD(f), nil
		}
		w = io.Discard // as for stdin: copied into nothing here
	}
	pr, pw, err := c.pipe(true)
	if err != nil {
		return stdio{}, err
	}
	c.closers = append(c.closers, pr)
	c.outs = append(c.outs, pr)
	c.copies.Add(1)
	go func() {
		defer c.copies.Done()
		if err := copyOut(w, pr); err != nil {
			c.setCopyErr(err)
			// As os/exec: the command's writes now fail (EPIPE,
			// SIGPIPE) instead of blocking on a full pipe nobody reads,
			// which kept Wait waiting for ever.
			_ = pr.Close() // our read end: nothing more is read from it
		}
	}()
	return stdio{pass: pw, own: true}, nil
}

// copyOut copies a stream of the workload into w with a pooled buffer:
// io.Copy from an *os.File into a writer that is no io.ReaderFrom (Exec's
// capped buffer) allocates 32 KiB, twice per command. It ends at the
// stream's end, or when Wait sets a read deadline (WaitDelay passed after
// the command exited): then once it copied what the pipe holds.
func copyOut(w io.Writer, r *os.File) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	_, err := io.CopyBuffer(w, readerOnly{r}, *bp) // readerOnly: *os.File's WriteTo would take the allocating path
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return drain(w, r, *bp)
	}
	return err
}

// drain copies into w what the pipe r holds now, without waiting for
// more: what the command wrote before it exited, which a writer slow to
// take it (a terminal, a busy reader of our stdout) left there. At most
// the pipe's capacity, so that a process writing on (a background job)
// cannot keep it copying.
func drain(w io.Writer, r *os.File, buf []byte) error {
	rc, err := r.SyscallConn()
	if err != nil {
		return err
	}
	left := -1
	for {
		var n int
		var rerr error
		// Control, not Read: r's read deadline has passed. The pipe
		// is non-blocking (pipe): a read of an empty one says EAGAIN.
		if err := rc.Control(func(fd uintptr) {
			if left < 0 {
				if left, rerr = unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0); rerr != nil {
					return
				}
			}
			for {
				n, rerr = unix.Read(int(fd), buf[:min(len(buf), left)])
				if rerr != unix.EINTR {
					return
				}
			}
		}); err != nil {
			return err
		}
		switch {
		case rerr == unix.EAGAIN || (rerr == nil && n == 0):
			return nil // empty, or every writer gone
		case rerr != nil:
			return &os.PathError{Op: "read", Path: r.Name(), Err: rerr}
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		if left -= n; left <= 0 {
			return nil
		}
	}
}

// readerOnly hides every method of its Reader but Read.
type readerOnly struct{ io.Reader }

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (c *Cmd) setCopyErr(err error) {
	c.copyMu.Lock()
	if c.copyErr == nil {
		c.copyErr = err
	}
	c.copyMu.Unlock()
}

// relayPty copies between the pty's master and Stdin/Stdout.
func (c *Cmd) relayPty() {
	if c.Stdin != nil {
		go func() { _, _ = io.Copy(c.pty, c.Stdin) }() // ends when either side closes: nothing to report
	}
	out := c.Stdout
	if out == nil {
		out = io.Discard
	}
	c.copies.Add(1)
	go func() {
		defer c.copies.Done()
		w := &writeErr{w: out}
		_, err := io.Copy(w, c.pty)
		// EIO is how a pty master says every slave end closed; a
		// closed master, that Wait gave up waiting for a job the
		// command left holding the terminal (WaitDelay) and closed it.
		if err == nil || errors.Is(err, unix.EIO) || errors.Is(err, os.ErrClosed) {
			return
		}
		c.setCopyErr(err)
		if w.err != nil {
			// The output's reader is gone (`lightbox run -t … | head`)
			// or the caller's writer failed: the command is told so as
			// a pipe's writer would be, with SIGPIPE.
			_ = c.Signal(unix.SIGPIPE) // fails only once the command or its init is gone: nothing to end then
		} else {
			// The terminal itself failed: hang the command up (SIGHUP,
			// what a terminal's hangup sends).
			_ = c.Signal(unix.SIGHUP) // fails once the command has exited: nothing to hang up
		}
		// Then drain the terminal, so that the command never blocks on a
		// full buffer nobody reads (the init holds the master too:
		// closing ours would hang up nothing).
		_, _ = io.Copy(io.Discard, readerOnly{c.pty}) // ends at EIO, once every slave end closed
	}()
}

// writeErr is a writer that keeps the error its writer returned.
type writeErr struct {
	w   io.Writer
	err error
}

func (w *writeErr) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if err != nil {
		w.err = err
	}
	return n, err
}

// waitExit reads the exit status, and kills the command when ctx ends.
func (c *Cmd) waitExit(ctx context.Context) {
	defer close(c.done)
	stop := context.AfterFunc(ctx, c.kill)
	defer stop()
	for {
		r, _, err := readReply(c.conn)
		if err != nil {
			c.exitCode = -1
			// The init drops a command's connection unanswered only as it
			// exits (the sandbox ended: its main command, a destroy, its
			// timeout), killing what still runs.
			why := fmt.Errorf("the sandbox ended before the command did: %w", c.sb.gone(err))
			if derr := c.sb.destroyedErr("the command", true); derr != nil {
				why = fmt.Errorf("%w (%v)", derr, err)
			}
			c.err = &ExecError{Sandbox: c.sb.name, Err: why}
			if ctx.Err() != nil {
				c.err = ctx.Err()
			}
			return
		}
		switch r.Type {
		case nsinit.ReplyStarted:
			// StartLate's command, from an init that predates NoStarted.
			c.pid.Store(int64(r.Pid))
		case nsinit.ReplyError:
			// StartLate's command could not start: Start's error.
			c.exitCode = -1
			c.err = &ExecError{Sandbox: c.sb.name, Err: ctxErr(ctx, startError(r))}
			return
		case nsinit.ReplyExit:
			if r.Pid != 0 {
				c.pid.Store(int64(r.Pid))
			}
			c.exitCode, c.signal, c.timedOut, c.destroyed = r.Code, syscall.Signal(r.Signal), r.TimedOut, r.Destroyed
			if ctx.Err() != nil && c.signal == unix.SIGKILL {
				c.err = ctx.Err()
			}
			return
		}
	}
}

// kill ends the command as its context ended. A workload's process
// group goes with it (a job in the background, the command a shell
// runs), or it would run on unseen and hold the command's stdout, so
// that Wait never returned: half-closing the connection tells the init
// that its client went away, and the init then kills the group
// (nsinit's client-gone path, which inits of every version have) and
// answers no more; the read in waitExit ends then. The main command's
// connection does not carry its life: it gets SIGKILL.
func (c *Cmd) kill() {
	if !c.main && c.conn.CloseWrite() == nil {
		return
	}
	_ = c.Signal(unix.SIGKILL) // fails when the command or its init is gone: the read in waitExit ends then
}

// Wait waits for the command to exit and for its output to be copied:
// until its streams end, or WaitDelay after it exited when a process it
// left behind holds them (what the command wrote is kept). A
// non-zero exit is an *ExitError; a command killed because its context
// ended returns the context's error; after StartLate, a command that
// could not start returns the error Start would have (Started is false).
func (c *Cmd) Wait() error {
	if c.done == nil {
		return errors.New("lightbox: Cmd not started")
	}
	c.waitOnce.Do(func() {
		<-c.done
		// The command has exited (or was killed). A process it left
		// behind may hold its stdout and stderr open for as long as it
		// runs: a background job (`sleep 100 & echo hi`), or one that
		// left its group and survived the kill. The command is answered
		// now, not when that process ends (as docker exec): its output
		// is waited for WaitDelay at most, then what the pipes hold is
		// copied (all the command wrote before it exited) and they are
		// closed, so that the process's later writes fail (EPIPE).
		if c.Tty && c.pty != nil {
			// The output is copied until the pty hangs up; closing the
			// master (closeOurs) ends the copy.
			waitOrTimeout(&c.copies, WaitDelay)
		} else if !waitOrTimeout(&c.copies, WaitDelay) {
			for _, f := range c.outs {
				_ = f.SetReadDeadline(time.Now()) // fails once the copy closed it, on a failed write: nothing to end then
			}
			c.copies.Wait()
		}
		c.closeOurs()
		c.waitErr = c.waitErrNoExit()
		if c.waitErr == nil && c.exitCode != 0 {
			ee := &ExitError{Code: c.exitCode, Signal: c.signal, TimedOut: c.timedOut, Destroyed: c.destroyed}
			if c.oomKnown {
				n, ok := c.sb.oomKills()
				ee.OOMKilled = ok && n > c.oomBase
			}
			c.waitErr = ee
		}
		if c.waitErr == nil {
			c.copyMu.Lock()
			c.waitErr = c.copyErr
			c.copyMu.Unlock()
		}
	})
	return c.waitErr
}

func (c *Cmd) waitErrNoExit() error { return c.err }

// waitOrTimeout waits for wg at most d, and reports whether wg was done.
func waitOrTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

func (c *Cmd) closeOurs() {
	for _, cl := range c.closers {
		_ = cl.Close() // the exec socket, a pty master, pipe ends, a pty's copy in stdout.log: the command has ended or never started
	}
	c.closers = nil
}

// Run starts the command and waits for it.
func (c *Cmd) Run() error {
	if err := c.StartLate(); err != nil {
		return err
	}
	return c.Wait()
}

// Output runs the command and returns its standard output.
func (c *Cmd) Output() ([]byte, error) {
	if c.Stdout != nil {
		return nil, errors.New("lightbox: Stdout already set")
	}
	var b bytesBuffer
	c.Stdout = &b
	err := c.Run()
	return b.Bytes(), err
}

// exited reports whether the command has exited (its status is known).
func (c *Cmd) exited() bool {
	if c.done == nil {
		return false
	}
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Pid returns the process's pid inside the sandbox (0 before Start; after
// StartLate, 0 until Wait returned).
func (c *Cmd) Pid() int { return int(c.pid.Load()) }

// Started reports whether the command started (after StartLate, known
// once Wait returned: false then means Wait's error is what Start's would
// have been).
func (c *Cmd) Started() bool { return c.pid.Load() != 0 }

// ExitCode returns the exit status (128+N when killed by signal N), -1
// before the command exited.
func (c *Cmd) ExitCode() int {
	if c.done == nil {
		return -1
	}
	select {
	case <-c.done:
		return c.exitCode
	default:
		return -1
	}
}

// Signal sends sig to the process. Once the process has exited (its
// status is known) it returns os.ErrProcessDone, as os.Process.Signal
// does.
func (c *Cmd) Signal(sig syscall.Signal) error {
	if c.conn == nil {
		return errors.New("lightbox: Cmd not started")
	}
	if c.exited() {
		return os.ErrProcessDone
	}
	err := sendRequest(c.conn, nsinit.Request{Op: nsinit.OpSignal, Signal: int(sig)}, nil)
	if err != nil && c.exited() {
		return os.ErrProcessDone // Wait closed the connection meanwhile
	}
	return err
}

// Resize sets the window size of the command's pty.
func (c *Cmd) Resize(rows, cols uint16) error {
	if c.pty == nil && c.ttyLog != nil && c.conn != nil {
		// The init holds the pty: it resizes it.
		return sendRequest(c.conn, nsinit.Request{Op: nsinit.OpResize, Rows: rows, Cols: cols}, nil)
	}
	if c.pty == nil {
		return errors.New("lightbox: Cmd has no pty")
	}
	// Through the file's raw conn, as os advises over Fd (which a
	// descriptor os made non-blocking itself turns blocking).
	rc, err := c.pty.SyscallConn()
	if err != nil {
		return err
	}
	if cerr := rc.Control(func(fd uintptr) {
		err = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}); cerr != nil {
		return cerr
	}
	return err
}

func sendRequest(c *net.UnixConn, r nsinit.Request, fds []int) error {
	return nsinit.WriteMsg(c, &r, fds)
}

// readReply reads one Reply; the descriptors it carried are the caller's.
func readReply(c *net.UnixConn) (nsinit.Reply, []int, error) {
	var r nsinit.Reply
	fds, err := nsinit.ReadMsg(c, make([]byte, 4096), nsinit.MaxMsgFDs, &r)
	return r, fds, err
}
