//go:build linux

package volstore

import "os"

// Hooks for the XFS tests of package volstore_test.

// ForceQuotactlDevice makes quotactl go through the block device (as on
// kernels without quotactl_fd) until restore is called.
func ForceQuotactlDevice() (restore func()) {
	old := noQuotactlFd.Load()
	noQuotactlFd.Store(true)
	return func() { noQuotactlFd.Store(old) }
}

// XFSProject is the project id of dir (0: none).
func XFSProject(dir string) (uint32, error) { return dirProject(dir) }

// XFSQuota returns the block hard limit and the use, in bytes, and the
// inode count of project id on dir's filesystem.
func XFSQuota(dir string, id uint32) (limit, used int64, inodes uint64, err error) {
	q, err := xfsGetQuota(dir, id)
	return int64(q.BlkHardlimit) * 512, int64(q.Bcount) * 512, q.Icount, err
}

// SetXFSLimit sets the block hard limit of project id directly.
func SetXFSLimit(dir string, id uint32, limit int64) error { return xfsSetBlockLimit(dir, id, limit) }

// StatfsUsage is what Usage reports when Q_XGETQUOTA is refused (rootless).
func StatfsUsage(root, dir string) (int64, bool, error) { return statfsUsage(root, dir) }

// SetXFSProject gives dir project id (with PROJINHERIT) without any
// registration or limit.
func SetXFSProject(dir string, id uint32) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	a, err := getFsxattr(f)
	if err != nil {
		return err
	}
	a.Projid = id
	a.Xflags |= fsXflagProjinherit
	return setFsxattr(f, a)
}
