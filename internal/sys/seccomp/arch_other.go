//go:build linux && !amd64 && !arm64

package seccomp

const (
	auditArch = 0 // no profile: Program returns ErrUnsupported
	x32Bit    = 0
)

var denied, archDenied []uint32
