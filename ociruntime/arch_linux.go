package ociruntime

import goruntime "runtime"

// nativeArch is the seccomp architecture name of this build.
func nativeArch() string {
	switch goruntime.GOARCH {
	case "amd64":
		return "SCMP_ARCH_X86_64"
	case "arm64":
		return "SCMP_ARCH_AARCH64"
	case "386":
		return "SCMP_ARCH_X86"
	}
	return "SCMP_ARCH_" + goruntime.GOARCH
}
