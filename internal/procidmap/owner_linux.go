package procidmap

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// nsGetOwnerUID is NS_GET_OWNER_UID, _IO(0xb7, 0x4).
const nsGetOwnerUID = 0xb704

// Owner returns the host uid that owns process pid's user namespace (the
// effective uid of whoever made it), which has every capability in that
// namespace.
func Owner(pid int) (int, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/user")
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }() // read-only, only asked by ioctl
	var uid uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), nsGetOwnerUID, uintptr(unsafe.Pointer(&uid))); e != 0 {
		return 0, fmt.Errorf("owner of %s: %w", f.Name(), e)
	}
	return int(uid), nil
}
