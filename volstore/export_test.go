package volstore

// SetTestHookBeforeRename sets the hook that runs when a new volume is
// complete in TmpDir and about to be renamed into place.
func SetTestHookBeforeRename(f func()) { testHookBeforeRename = f }
