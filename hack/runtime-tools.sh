#!/bin/sh
# runtime-tools.sh builds opencontainers/runtime-tools v0.9.0's validation
# suite (from the Go module proxy) into $1 (default bin/runtime-tools):
# runtimetest, the 58 validation/<name>/<name>.t programs and the busybox
# rootfs tarball they unpack. The module has no go.mod (Godeps): this
# writes one pinning Godeps.json's revisions (satori/go.uuid stays
# v1.1.0; selinux's pinned commit is not on the proxy, v1.6.0 works).
set -eu
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
out=$(realpath -m "${1:-bin/runtime-tools}")
if [ -x "$out/runtimetest" ] && [ -f "$out/.built" ]; then
	exit 0
fi
src=$(cd /tmp && go mod download -json github.com/opencontainers/runtime-tools@v0.9.0 | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
rm -rf "$out"
mkdir -p "$out"
cp -r "$src"/. "$out"
chmod -R u+w "$out"
cd "$out"
rm -rf Godeps
cat > go.mod <<'MOD'
module github.com/opencontainers/runtime-tools

go 1.21
MOD
GOFLAGS=-mod=mod go get \
	github.com/blang/semver@b38d23b8782a487059e8fc8773e9a5b228a77cb6 \
	github.com/hashicorp/go-multierror@886a7fbe3eb1c874d46f623bfa70af45f425b3d1 \
	github.com/hashicorp/errwrap@7554cd9344cec97297fa6649b055a8c98c2a1e55 \
	github.com/mndrix/tap-go@629fa407e90bbf3781e448e8e9b8931523ec823c \
	github.com/mrunalp/fileutils@4ee1cc9a80582a0c75febdd5cfa779ee4361cbca \
	github.com/opencontainers/runtime-spec@1722abf79c2f8f2675f47367f827c6491472cf27 \
	github.com/opencontainers/selinux@v1.6.0 \
	github.com/satori/go.uuid@v1.1.0 \
	github.com/sirupsen/logrus@v1.0.2 \
	github.com/stretchr/testify@v1.1.4 \
	github.com/syndtr/gocapability@db04d3cc01c8b54962a58ec7e491717d06cfcc16 \
	github.com/urfave/cli@v1.19.1 \
	github.com/xeipuuv/gojsonschema@0c8571ac0ce161a5feb57375a9cdf148c98c0f70 \
	github.com/xeipuuv/gojsonpointer@6fe8760cad3569743d51ddbb243b26f8456742dc \
	github.com/xeipuuv/gojsonreference@e02fc20de94c78484cd5ffb007f8af96be030a45 \
	github.com/davecgh/go-spew@v1.1.0 github.com/pmezard/go-difflib@v1.0.0 \
	golang.org/x/sys@v0.50.0 >/dev/null 2>&1 || true
GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || true
export CGO_ENABLED=0 GOFLAGS=-mod=mod
go build -o runtimetest ./cmd/runtimetest
for d in validation/*/; do
	n=$(basename "$d")
	go build -o "validation/$n/$n.t" "./validation/$n"
done
touch .built
