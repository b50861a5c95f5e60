#!/usr/bin/env bash
# bench/run.sh: `make bench` (issue 8). Installs the peers from Debian's
# packages, makes sure the unprivileged user exists, builds the instrument
# (bench/lbbench) and the Go API benchmarks (bench/api), and runs them as
# root in a private mount namespace without the hybrid cgroup2 mount
# (crun refuses "cgroups in hybrid mode"; see shared/notes/machine-quirks.md).
#
# Knobs: BENCH_USER (default lbtest), BENCH_ARGS (extra lbbench flags, e.g.
# "-rounds 2 -runs 3" for a quick look, -keep to keep the work dir).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
export PATH="/usr/local/go/bin:$PATH"
export CGO_ENABLED=0

if [ "$(id -u)" != 0 ]; then
	echo "bench: run as root (make bench): rootless rows run as \$BENCH_USER through runuser" >&2
	exit 1
fi

peers="runc crun bubblewrap podman hyperfine busybox-static uidmap util-linux"
missing=
for p in $peers; do
	dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "bench: installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

user=${BENCH_USER:-lbtest}
hack/test-user.sh "$user"

mkdir -p bin
[ -x bin/lightbox ] || go build -trimpath -tags "${LIGHTBOX_TAGS-urfave_cli_no_docs}" -o bin/lightbox ./cmd/lightbox
go build -o bin/lbbench ./bench/lbbench
api=bin/lbapi.test
if ! go test -c -o "$api" ./bench/api 2>bin/lbapi.err; then
	echo "bench: the Go API benchmarks do not build (their rows will be n/a):" >&2
	sed 's/^/    /' bin/lbapi.err >&2
	api=
fi

# shellcheck disable=SC2086
exec unshare --mount --propagation private sh -c '
	if [ "$(stat -f -c %T /sys/fs/cgroup)" != cgroup2fs ] && mountpoint -q /sys/fs/cgroup/unified; then
		umount /sys/fs/cgroup/unified
	fi
	exec "$@"' sh bin/lbbench -lightbox bin/lightbox -api "$api" -user "$user" -out bench/results.json ${BENCH_ARGS:-}
