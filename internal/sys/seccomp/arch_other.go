//go:build linux && !amd64 && !arm64

package seccomp

const (
	auditArch = 0 // no profile: Program returns ErrUnsupported
	x32Bit    = 0
)

var denied, archDenied []uint32

// archSyscall knows no call here: the package has no table.
func archSyscall(string) (uint32, bool) { return 0, false }
