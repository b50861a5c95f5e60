// Package sys wraps the raw Linux syscalls of the launch path once: each
// wrapper retries on EINTR and returns an error that carries the operation
// and the path and unwraps to the errno (errors.Is(err, unix.EINVAL)).
package sys

// Param is one fsconfig(2) parameter: a string when Value is set, a flag
// when it is empty.
type Param struct {
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
}
