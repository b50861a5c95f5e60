//go:build !linux

package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/beamhop/lightbox/internal/idmap"
)

// errPlatform is what Open and every method return off Linux: a sandbox
// is a set of Linux namespaces.
var errPlatform = fmt.Errorf("sandboxes: %w: need Linux", errors.ErrUnsupported)

// Manager is unsupported off Linux: Open returns an error wrapping
// errors.ErrUnsupported.
type Manager struct{}

// Open returns an error wrapping errors.ErrUnsupported off Linux.
func Open(opts Options) (*Manager, error) { return nil, errPlatform }

func (m *Manager) Close() error                                            { return errPlatform }
func (m *Manager) Launch(ctx context.Context, spec Spec) (*Sandbox, error) { return nil, errPlatform }
func (m *Manager) Attach(ctx context.Context, name string) (*Sandbox, error) {
	return nil, errPlatform
}
func (m *Manager) List(ctx context.Context) ([]Info, error)        { return nil, errPlatform }
func (m *Manager) GC(ctx context.Context) error                    { return errPlatform }
func (m *Manager) Collect(ctx context.Context) (*Collected, error) { return nil, errPlatform }

// Sandbox is unsupported off Linux.
type Sandbox struct{}

func (s *Sandbox) Name() string     { return "" }
func (s *Sandbox) Pid() int         { return 0 }
func (s *Sandbox) InitExited() bool { return false }
func (s *Sandbox) Command(name string, arg ...string) *Cmd {
	return &Cmd{CmdSpec: CmdSpec{Path: name, Args: arg}}
}
func (s *Sandbox) CommandContext(ctx context.Context, name string, arg ...string) *Cmd {
	return s.Command(name, arg...)
}
func (s *Sandbox) MainCommand() *Cmd                            { return nil }
func (s *Sandbox) Info(ctx context.Context) (Info, error)       { return Info{}, errPlatform }
func (s *Sandbox) Status(ctx context.Context) (Info, error)     { return Info{}, errPlatform }
func (s *Sandbox) UpperDir(ctx context.Context) (string, error) { return "", errPlatform }
func (s *Sandbox) WritableDir() (string, error)                 { return "", errPlatform }
func (s *Sandbox) Detach() error                                { return errPlatform }
func (s *Sandbox) Wait(ctx context.Context) (int, error)        { return -1, errPlatform }
func (s *Sandbox) Signal(ctx context.Context, sig syscall.Signal) error {
	return errPlatform
}
func (s *Sandbox) Stop(ctx context.Context, grace time.Duration) error { return errPlatform }
func (s *Sandbox) Destroy(ctx context.Context) error                   { return errPlatform }
func (s *Sandbox) DestroyGrace(ctx context.Context, grace time.Duration) error {
	return errPlatform
}
func (s *Sandbox) Freeze(ctx context.Context) (thaw func() error, err error) {
	return nil, errPlatform
}
func (s *Sandbox) Logs(ctx context.Context, follow bool, stdout, stderr io.Writer) error {
	return errPlatform
}

// Cmd is unsupported off Linux: Start returns an error wrapping
// errors.ErrUnsupported.
type Cmd struct {
	CmdSpec
}

func (c *Cmd) Start() error                    { return errPlatform }
func (c *Cmd) StartLate() error                { return errPlatform }
func (c *Cmd) Started() bool                   { return false }
func (c *Cmd) Wait() error                     { return errPlatform }
func (c *Cmd) Run() error                      { return errPlatform }
func (c *Cmd) Output() ([]byte, error)         { return nil, errPlatform }
func (c *Cmd) Pid() int                        { return 0 }
func (c *Cmd) ExitCode() int                   { return -1 }
func (c *Cmd) Signal(sig syscall.Signal) error { return errPlatform }
func (c *Cmd) Resize(rows, cols uint16) error  { return errPlatform }

// CheckLimits returns an error wrapping errors.ErrUnsupported off Linux.
func CheckLimits(l Limits) error { return errPlatform }

// OwnerExtents is unsupported off Linux: it returns nil.
func OwnerExtents(base, owner uint32) []idmap.Range { return nil }

// CanTakeMounts reports false off Linux.
func CanTakeMounts() bool { return false }

// Take fails off Linux.
func (s *Sandbox) Take(ctx context.Context, t TakeSpec) error { return errPlatform }

// Unpool fails off Linux.
func (s *Sandbox) Unpool() error { return errPlatform }
