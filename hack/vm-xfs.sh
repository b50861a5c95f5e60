#!/bin/sh
# vm-xfs.sh: run the XFS project quota tests in the VM (as root) and show
# the guest's log: the backend conformance suite, two stores on one
# filesystem, and the kernel's own ENOSPC at each limit.
set -eu
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH" CGO_ENABLED=0
exec go test -count=1 -v -run '^TestXFSInVM$' ./volstore
