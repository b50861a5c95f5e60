//go:build linux

package volstore

import (
	"io/fs"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// struct fsxattr (linux/fs.h), for FS_IOC_FSGETXATTR/FS_IOC_FSSETXATTR.
type fsxattr struct {
	Xflags     uint32
	Extsize    uint32
	Nextents   uint32
	Projid     uint32
	Cowextsize uint32
	Pad        [8]byte
}

// struct fs_disk_quota (linux/dqblk_xfs.h), for Q_XGETQUOTA/Q_XSETQLIM.
// Block counts are in 512-byte basic blocks.
type fsDiskQuota struct {
	Version      int8
	Flags        int8
	Fieldmask    uint16
	ID           uint32
	BlkHardlimit uint64
	BlkSoftlimit uint64
	InoHardlimit uint64
	InoSoftlimit uint64
	Bcount       uint64
	Icount       uint64
	Itimer       int32
	Btimer       int32
	Iwarns       uint16
	Bwarns       uint16
	ItimerHi     int8
	BtimerHi     int8
	RtbtimerHi   int8
	Padding2     int8
	RtbHardlimit uint64
	RtbSoftlimit uint64
	Rtbcount     uint64
	Rtbtimer     int32
	Rtbwarns     uint16
	Padding3     int16
	Padding4     [8]byte
}

// struct fs_qfilestat and struct fs_quota_stat (linux/dqblk_xfs.h), for
// Q_XGETQSTAT.
type fsQfilestat struct {
	Ino      uint64
	Nblks    uint64
	Nextents uint32
	_        uint32
}

type fsQuotaStat struct {
	Version      int8
	_            int8
	Flags        uint16
	Pad          int8
	_            [3]byte
	Uquota       fsQfilestat
	Gquota       fsQfilestat
	Incoredqs    uint32
	Btimelimit   int32
	Itimelimit   int32
	Rtbtimelimit int32
	Bwarnlimit   uint16
	Iwarnlimit   uint16
	_            [4]byte
}

// The kernel's sizes on amd64 and arm64; a mismatch fails the build.
var (
	_ [28]byte  = [unsafe.Sizeof(fsxattr{})]byte{}
	_ [112]byte = [unsafe.Sizeof(fsDiskQuota{})]byte{}
	_ [80]byte  = [unsafe.Sizeof(fsQuotaStat{})]byte{}
	_ [8]byte   = [unsafe.Offsetof(fsQuotaStat{}.Uquota)]byte{}
	_ [72]byte  = [unsafe.Offsetof(fsDiskQuota{}.RtbHardlimit)]byte{}
)

const (
	fsIocFsgetxattr = 0x801c581f // _IOR('X', 31, struct fsxattr)
	fsIocFssetxattr = 0x401c5820 // _IOW('X', 32, struct fsxattr)

	fsXflagProjinherit = 0x00000200

	prjQuota       = 2 // PRJQUOTA
	qXGetQuota     = 0x5803
	qXSetQlim      = 0x5804
	qXGetQstat     = 0x5805
	fsDquotVersion = 1
	fsProjQuota    = 2      // FS_PROJ_QUOTA, in d_flags
	fsDqBsoft      = 1 << 2 // FS_DQ_BSOFT
	fsDqBhard      = 1 << 3 // FS_DQ_BHARD
	fsDqIsoft      = 1 << 0
	fsDqIhard      = 1 << 1

	fsQuotaPdqAcct = 1 << 4 // FS_QUOTA_PDQ_ACCT
	fsQuotaPdqEnfd = 1 << 5 // FS_QUOTA_PDQ_ENFD
)

func qcmd(cmd, typ int) int { return cmd<<8 | typ&0xff }

func ioctlRetry(fd uintptr, req uintptr, arg unsafe.Pointer) error {
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(arg))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
}

func getFsxattr(f *os.File) (fsxattr, error) {
	var a fsxattr
	if err := ioctlRetry(f.Fd(), fsIocFsgetxattr, unsafe.Pointer(&a)); err != nil {
		return a, &fs.PathError{Op: "ioctl FS_IOC_FSGETXATTR", Path: f.Name(), Err: err}
	}
	return a, nil
}

func setFsxattr(f *os.File, a fsxattr) error {
	if err := ioctlRetry(f.Fd(), fsIocFssetxattr, unsafe.Pointer(&a)); err != nil {
		return &fs.PathError{Op: "ioctl FS_IOC_FSSETXATTR", Path: f.Name(), Err: err}
	}
	return nil
}

// quotactlAt runs quotactl(2) on the filesystem holding dir: through
// quotactl_fd (Linux 5.14) on the directory, else through the block
// device found in /proc/self/mountinfo.
func quotactlAt(dir string, cmd int, id uint32, addr unsafe.Pointer) error {
	if !noQuotactlFd.Load() {
		f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }() // a directory opened read-only for quotactl_fd: nothing to flush
		for {
			_, _, errno := unix.Syscall6(unix.SYS_QUOTACTL_FD, f.Fd(), uintptr(cmd), uintptr(id), uintptr(addr), 0, 0)
			switch errno {
			case unix.EINTR:
				continue
			case 0:
				return nil
			case unix.ENOSYS:
				noQuotactlFd.Store(true)
			default:
				return errno
			}
			break
		}
	}
	dev, err := blockDevice(dir)
	if err != nil {
		return err
	}
	p, err := unix.BytePtrFromString(dev)
	if err != nil {
		return err
	}
	for {
		_, _, errno := unix.Syscall6(unix.SYS_QUOTACTL, uintptr(cmd), uintptr(unsafe.Pointer(p)), uintptr(id), uintptr(addr), 0, 0)
		switch errno {
		case unix.EINTR:
			continue
		case 0:
			return nil
		default:
			return errno
		}
	}
}

func quotaErr(op, dir string, err error) error {
	return &fs.PathError{Op: "quotactl " + op, Path: dir, Err: err}
}

// xfsGetQuota reads the project quota of id on dir's filesystem.
func xfsGetQuota(dir string, id uint32) (fsDiskQuota, error) {
	var q fsDiskQuota
	if err := quotactlAt(dir, qcmd(qXGetQuota, prjQuota), id, unsafe.Pointer(&q)); err != nil {
		return q, quotaErr("Q_XGETQUOTA", dir, err)
	}
	return q, nil
}

// xfsSetBlockLimit sets (0: clears) the block hard limit of project id and
// clears its other limits.
func xfsSetBlockLimit(dir string, id uint32, limitBytes int64) error {
	q := fsDiskQuota{
		Version:      fsDquotVersion,
		Flags:        fsProjQuota,
		Fieldmask:    fsDqBhard | fsDqBsoft | fsDqIhard | fsDqIsoft,
		ID:           id,
		BlkHardlimit: uint64((limitBytes + 511) / 512),
	}
	if err := quotactlAt(dir, qcmd(qXSetQlim, prjQuota), id, unsafe.Pointer(&q)); err != nil {
		return quotaErr("Q_XSETQLIM", dir, err)
	}
	return nil
}

// xfsQuotaFlags returns the FS_QUOTA_* state flags of dir's filesystem.
func xfsQuotaFlags(dir string) (uint16, error) {
	var st fsQuotaStat
	if err := quotactlAt(dir, qcmd(qXGetQstat, prjQuota), 0, unsafe.Pointer(&st)); err != nil {
		return 0, quotaErr("Q_XGETQSTAT", dir, err)
	}
	return st.Flags, nil
}
