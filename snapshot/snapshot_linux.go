package snapshot

// checkPlatform is Open's first check: nil on Linux (see snapshot_other.go).
func checkPlatform() error { return nil }
