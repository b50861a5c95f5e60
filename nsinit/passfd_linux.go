package nsinit

import (
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// received are the descriptors the runtime sent (Config.Passed), by
// PassedFD: received[i-1] is PassedFD i. See "Descriptors from the host
// side" in proto.go.
type received []int

// receiveFDs reads cfg.Passed descriptors from the Passer socket
// (close-on-exec) and closes the socket.
func receiveFDs(cfg *Config) (received, error) {
	if cfg.Passed == 0 {
		return nil, nil
	}
	if cfg.FDs.Passer < 0 {
		return nil, fmt.Errorf("receive descriptors: %d announced, no socket", cfg.Passed)
	}
	defer unix.Close(cfg.FDs.Passer)
	fds, err := ReceiveFDs(cfg.FDs.Passer, cfg.Passed)
	return received(fds), err
}

// fd returns the descriptor p names, -1 for none.
func (r received) fd(p PassedFD) (int, error) {
	if p == 0 {
		return -1, nil
	}
	if int(p) < 0 || int(p) > len(r) {
		return -1, fmt.Errorf("descriptor %d named, %d received", p, len(r))
	}
	return r[p-1], nil
}

// resolve replaces the overlay parameters the runtime opened for us by
// /proc/self/fd paths.
func (r received) resolve(cfg *Config) error {
	for i, p := range cfg.Root.ParamFDs {
		fd, err := r.fd(p)
		if err != nil {
			return err
		}
		if i < 0 || i >= len(cfg.Root.Params) || fd < 0 {
			return fmt.Errorf("overlay parameter %d: no such parameter or descriptor", i)
		}
		cfg.Root.Params[i].Value = "/proc/self/fd/" + strconv.Itoa(fd)
	}
	return nil
}

// closeAll closes every received descriptor not yet consumed (a bind's
// descriptor is closed once moved: see attach).
func (r received) closeAll(used map[int]bool) {
	for _, fd := range r {
		if !used[fd] {
			unix.Close(fd)
		}
	}
}
