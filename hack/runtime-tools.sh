#!/bin/sh
# runtime-tools.sh builds opencontainers/runtime-tools v0.9.0's validation
# suite (from the Go module proxy) into $1 (default bin/runtime-tools):
# runtimetest, the 58 validation/<name>/<name>.t programs and the busybox
# rootfs tarball they unpack. The module has no go.mod (Godeps): this
# uses hack/runtime-tools/go.mod: Godeps.json's revisions where the proxy
# has them, else the nearest release (satori/go.uuid v1.1.0, selinux
# v1.6.0, runtime-spec v1.0.2).
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)
export PATH="/usr/local/go/bin:$PATH"
out=$(realpath -m "${1:-bin/runtime-tools}")
# A build is reused while its stamp (this script and the pinned go.mod
# and go.sum) matches: the tests keep one per machine.
stamp=$(cat hack/runtime-tools.sh hack/runtime-tools/go.mod hack/runtime-tools/go.sum | sha256sum | cut -c1-16)
if [ -x "$out/runtimetest" ] && [ "$(cat "$out/.built" 2>/dev/null)" = "$stamp" ]; then
	exit 0
fi
src=$(cd /tmp && go mod download -json github.com/opencontainers/runtime-tools@v0.9.0 | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
rm -rf "$out"
mkdir -p "$out"
cp -r "$src"/. "$out"
chmod -R u+w "$out"
cd "$out"
rm -rf Godeps
cp "$repo/hack/runtime-tools/go.mod" "$repo/hack/runtime-tools/go.sum" .
export CGO_ENABLED=0 GOFLAGS=-mod=mod
go build -o runtimetest ./cmd/runtimetest
for d in validation/*/; do
	n=$(basename "$d")
	go build -o "validation/$n/$n.t" "./validation/$n"
done
echo "$stamp" >.built
