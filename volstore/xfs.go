package volstore

// XFSOptions configures an XFS backend; the zero value is the default.
type XFSOptions struct {
	// ProjectsFile and ProjidFile are the machine's registries of XFS
	// project ids ("id:path" and "name:id" lines, shared with xfs_quota
	// and any other tool); "" means /etc/projects and /etc/projid.
	ProjectsFile string
	ProjidFile   string
	// MinProjectID is the lowest project id allocated; 0 means 100000
	// (above the small ids tools such as docker hand out).
	MinProjectID uint32
}

// MinXFSLimit is the smallest limit the XFS backend sets: 1 MiB, the unit
// of the API's quotas (XFS itself would count single blocks).
const MinXFSLimit = 1 << 20

// The XFS backend is a Backend.
var _ Backend = (*XFSBackend)(nil)
