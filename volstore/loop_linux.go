package volstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/beamhop/lightbox/internal/sys"
)

// loopBackend keeps each volume in a sparse ext4 image (dataDir + ".img")
// loop-mounted on dataDir: the filesystem's size is the limit. The loop
// device is set up with LO_FLAGS_AUTOCLEAR, so it goes away with the last
// mount (or with the process, if it dies before mounting). Root only.
type loopBackend struct {
	mkfs string
}

// loopMinLimit is the smallest image mkfs.ext4 makes usable.
const loopMinLimit = 2 << 20

// loopJournalFrom: images at least this large get an ext4 journal; a
// journal costs at least 1024 blocks, too much of a small volume.
const loopJournalFrom = 256 << 20

// NewLoopBackend returns the "loop" backend, or an error saying what is
// missing (root, mkfs.ext4, loop devices).
func NewLoopBackend() (Backend, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("loop-mounted images need root")
	}
	mkfs, err := lookSbin("mkfs.ext4")
	if err != nil {
		return nil, fmt.Errorf("mkfs.ext4 not found (install e2fsprogs): %w", err)
	}
	fd, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("loop devices unavailable: %w", &os.PathError{Op: "open", Path: "/dev/loop-control", Err: err})
	}
	unix.Close(fd)
	return &loopBackend{mkfs: mkfs}, nil
}

func lookSbin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

func (b *loopBackend) Name() string { return "loop" }

// MinLimit is the smallest limit the backend accepts.
func (b *loopBackend) MinLimit() int64 { return loopMinLimit }

func (b *loopBackend) Create(ctx context.Context, dataDir string, limitBytes int64, uid, gid int, perm uint32) error {
	if limitBytes <= 0 {
		return errors.New("loop backend: a volume needs a size limit")
	}
	if limitBytes < loopMinLimit {
		return fmt.Errorf("loop backend: limit %d bytes is below the %d the filesystem needs for itself", limitBytes, loopMinLimit)
	}
	if b.mkfs == "" {
		var err error
		if b.mkfs, err = lookSbin("mkfs.ext4"); err != nil {
			return fmt.Errorf("mkfs.ext4 not found (install e2fsprogs): %w", err)
		}
	}
	img := dataDir + ".img"
	f, err := os.OpenFile(img, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(limitBytes)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	args := []string{"-q", "-F", "-m", "0", "-i", "16384", "-E", fmt.Sprintf("root_owner=%d:%d,nodiscard", uid, gid)}
	if limitBytes < loopJournalFrom {
		args = append(args, "-O", "^has_journal")
	}
	cmd := exec.CommandContext(ctx, b.mkfs, append(args, img)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4 %s: %w: %s", img, err, bytes.TrimSpace(out))
	}
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		return err
	}
	if err := loopMount(img, dataDir); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dataDir, "lost+found")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Lchown(dataDir, uid, gid); err != nil {
		return err
	}
	return os.Chmod(dataDir, sys.FileMode(perm))
}

func (b *loopBackend) Activate(ctx context.Context, dataDir string) error {
	mounted, err := isMountRoot(dataDir)
	if err != nil || mounted {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("the volume's image is not mounted (has the machine restarted?) and mounting it needs root")
	}
	return loopMount(dataDir+".img", dataDir)
}

func (b *loopBackend) Remove(ctx context.Context, dataDir string) error {
	img := dataDir + ".img"
	for i := 0; ; i++ {
		mounted, err := isMountRoot(dataDir)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return err
		}
		if !mounted {
			break
		}
		if i == 8 {
			return fmt.Errorf("unmount %s: still mounted", dataDir)
		}
		if err := unix.Unmount(dataDir, 0); err != nil {
			return &os.PathError{Op: "unmount", Path: dataDir, Err: err}
		}
	}
	if err := detachLoops(img); err != nil {
		return err
	}
	if err := os.RemoveAll(dataDir); err != nil {
		return err
	}
	if err := os.Remove(img); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (b *loopBackend) Usage(ctx context.Context, dataDir string) (int64, bool, error) {
	mounted, err := isMountRoot(dataDir)
	if err != nil || !mounted {
		return 0, false, err
	}
	var st unix.Statfs_t
	if err := statfs(dataDir, &st); err != nil {
		return 0, false, err
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize, true, nil
}

// loopMount attaches img to a free loop device (auto-clearing) and mounts
// it on dir.
func loopMount(img, dir string) error {
	ctl, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: "/dev/loop-control", Err: err}
	}
	defer unix.Close(ctl)
	imgfd, err := unix.Open(img, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: img, Err: err}
	}
	defer unix.Close(imgfd)
	var dev string
	dfd := -1
	for try := 0; dfd < 0; try++ {
		n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return &os.PathError{Op: "ioctl LOOP_CTL_GET_FREE", Path: "/dev/loop-control", Err: err}
		}
		dev = "/dev/loop" + strconv.Itoa(n)
		fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err == nil {
			cfg := unix.LoopConfig{Fd: uint32(imgfd), Info: unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR}}
			copy(cfg.Info.File_name[:], img)
			err = unix.IoctlLoopConfigure(fd, &cfg)
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY) {
				// Kernels before 5.8 have no LOOP_CONFIGURE.
				err = loopSetFD(fd, imgfd, &cfg.Info)
			}
			if err == nil {
				dfd = fd
				break
			}
			unix.Close(fd)
		}
		// Another process took the device between GET_FREE and
		// CONFIGURE, or its node is not there yet: try again.
		if try == 50 || !(errors.Is(err, unix.EBUSY) || errors.Is(err, unix.ENOENT)) {
			return &os.PathError{Op: "ioctl LOOP_CONFIGURE", Path: dev, Err: err}
		}
		time.Sleep(time.Millisecond)
	}
	defer unix.Close(dfd)
	if err := unix.Mount(dev, dir, "ext4", unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		_ = unix.IoctlSetInt(dfd, unix.LOOP_CLR_FD, 0) // the mount's error is returned; the device has autoclear, so closing dfd (deferred) releases it anyway
		return &os.PathError{Op: "mount " + dev, Path: dir, Err: err}
	}
	return nil
}

func loopSetFD(fd, imgfd int, info *unix.LoopInfo64) error {
	if err := unix.IoctlSetInt(fd, unix.LOOP_SET_FD, imgfd); err != nil {
		return err
	}
	if err := unix.IoctlLoopSetStatus64(fd, info); err != nil {
		_ = unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0) // the status's error is returned; a device left bound (no autoclear yet) is detachLoops' on the next attach of img
		return err
	}
	return nil
}

// detachLoops detaches every loop device still backed by img (one left
// by a process killed between attaching and mounting, without autoclear).
func detachLoops(img string) error {
	devs, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, p := range devs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		back := strings.TrimSuffix(strings.TrimSpace(string(data)), " (deleted)")
		if back != img {
			continue
		}
		dev := "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(p)))
		fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		err = unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
		unix.Close(fd)
		if err != nil && !errors.Is(err, unix.ENXIO) {
			return &os.PathError{Op: "ioctl LOOP_CLR_FD", Path: dev, Err: err}
		}
	}
	return nil
}
