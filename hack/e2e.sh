#!/bin/bash
# e2e.sh: the README's first flow, for real, with npm, apt and gcc from
# their registries (network needed). Run as root from `make e2e`, after
# `make deps build`; its store is .e2e/store (LIGHTBOX_E2E_ROOT to choose),
# kept between runs so that the apt cache volumes and the build cache make
# a rerun fast. Every step is strict; the network steps retry (apt's
# Acquire::Retries, npm's fetch-retries) so a slow registry is no red CI.
#
#   1. the snapshot debian (hack/debian-base.sh), then node-ci and
#      c-builder built FROM it with `apt-get install` through cache volumes
#   2. three sandboxes in parallel, each `npm ci && npm test` on
#      hack/e2e/project mounted copy-on-write (:O) at /work, with a shared
#      npm-cache volume: a cold round (every fetch a cache miss), then a
#      warm one (no fetch leaves the cache), then `npm ci --offline` with
#      --network none, which only the warm volume makes work
#   3. producer/consumer: a c-builder sandbox compiles hack/e2e/hello into
#      a volume, a minimal-runtime (busybox) sandbox runs it
#   4. rootless: as the unprivileged user lbtest (LIGHTBOX_E2E_USER;
#      hack/test-user.sh makes it) with a store of its own in its home
#      (kept between runs too): debian imported from the debian-base
#      tarball, node-ci built, and three npm ci && npm test in parallel on
#      the project mounted :O with a new shared npm-cache volume
#
# npm reaches the registry over TLS, which on some hosts only works
# through the host's own trust (a TLS-intercepting proxy): every npm run
# uses --ca-certs host, and the builds get the host's proxy variables.
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$PWD
LB="$repo/bin/lightbox"
export LIGHTBOX_ROOT="${LIGHTBOX_E2E_ROOT:-$repo/.e2e/store}"
work="$repo/.e2e/work"
: "${DEBIAN_BASE_DIR:=/var/cache/lightbox/debian-bookworm}"
: "${DEBIAN_MIRROR:=http://deb.debian.org/debian}"
e2e_user=${LIGHTBOX_E2E_USER:-lbtest}

t0=$(date +%s)
step() { printf '\n==> [%ss] %s\n' "$(($(date +%s) - t0))" "$*"; }
fail() { printf 'e2e: FAIL: %s\n' "$*" >&2; exit 1; }
show() { printf '$ %s\n' "$*"; "$@"; }

mkdir -p "$LIGHTBOX_ROOT" "$work"
"$LB" gc -q
# What an interrupted run left: its sandboxes, and the volumes each run
# starts without (the apt caches stay: they are what makes a rerun fast).
for s in $("$LB" ps -a --format json | sed -n 's/.*"name": *"\(e2e-[^"]*\)".*/\1/p'); do "$LB" rm -f -q "$s"; done
"$LB" volume rm -f -q npm-cache npm-cache-cold e2e-artifacts >/dev/null 2>&1 || true

step "1. snapshots: debian, then node-ci and c-builder built FROM it through the apt cache volumes"
hack/debian-base.sh import "$DEBIAN_BASE_DIR" "$DEBIAN_MIRROR" "$LB" >/dev/null
show "$LB" snapshot build --replace --ca-certs host -t node-ci hack/e2e/node-ci
show "$LB" snapshot build --replace -t c-builder hack/e2e/c-builder
rm -rf "$work/minimal-runtime"
mkdir -p "$work/minimal-runtime"
cp hack/e2e/minimal-runtime/Dockerfile /bin/busybox "$work/minimal-runtime/"
show "$LB" snapshot build --replace -q -t minimal-runtime "$work/minimal-runtime"
show "$LB" volume ls

project_state() { (cd hack/e2e/project && find . -printf '%p %M %s\n' | sort && cat package.json package-lock.json | sha256sum); }
before=$(project_state)

# npm_round NAME ARGS...: three sandboxes in parallel, each `npm ci ARGS
# && npm test` on the project mounted copy-on-write, sharing npm-cache;
# each job's output is in $work/NAME-<i>.log.
npm_round() {
	local name=$1
	shift
	local pids=() i
	for i in 1 2 3; do
		"$LB" run --name "e2e-$name-$i" --ca-certs host -w /work \
			-v "$repo/hack/e2e/project:/work:O" -v npm-cache:/root/.npm node-ci \
			sh -c "npm ci $* --loglevel=http && npm test" >"$work/$name-$i.log" 2>&1 &
		pids+=($!)
	done
	for i in 1 2 3; do
		if ! wait "${pids[$((i - 1))]}"; then
			cat "$work/$name-$i.log" >&2
			fail "$name: job $i failed"
		fi
		grep -q '^tests passed' "$work/$name-$i.log" || fail "$name: job $i: no 'tests passed'"
	done
}
# fetches LOG: npm's own count of registry fetches, by how the cache served them.
fetches() { grep -o '(cache [a-z]*)' "$1" | sort | uniq -c | tr -s ' \n' ' '; }

step "2a. cold: three sandboxes in parallel, npm ci && npm test, project at /work:O, npm-cache at /root/.npm"
s=$(date +%s%N)
npm_round cold --prefer-offline
cold_ms=$((($(date +%s%N) - s) / 1000000))
for i in 1 2 3; do
	echo "job $i: $(grep '^added' "$work/cold-$i.log"); npm fetches: $(fetches "$work/cold-$i.log")"
done
grep -q '(cache miss)' "$work/cold-1.log" "$work/cold-2.log" "$work/cold-3.log" || fail "cold round: no fetch went to the registry"

step "2b. warm: the same three jobs, served from the npm-cache volume"
s=$(date +%s%N)
npm_round warm --prefer-offline
warm_ms=$((($(date +%s%N) - s) / 1000000))
for i in 1 2 3; do
	log="$work/warm-$i.log"
	echo "job $i: $(grep '^added' "$log"); npm fetches: $(fetches "$log")"
	if grep -E '\(cache (miss|updated|revalidated)\)' "$log"; then
		fail "warm round: job $i went to the registry"
	fi
	grep -qE '\(cache (hit|stale)\)' "$log" || fail "warm round: job $i read nothing from the cache"
done
echo "round times: cold ${cold_ms} ms, warm ${warm_ms} ms (three jobs in parallel, launch included)"

step "2c. npm ci --offline with --network none: only the warm volume makes it work"
show "$LB" run --name e2e-offline --network none -w /work -v "$repo/hack/e2e/project:/work:O" -v npm-cache:/root/.npm node-ci \
	sh -c 'npm ci --offline && npm test'
if "$LB" run --name e2e-offline-cold --network none -w /work -v "$repo/hack/e2e/project:/work:O" -v npm-cache-cold:/root/.npm node-ci \
	sh -c 'npm ci --offline' >"$work/offline-cold.log" 2>&1; then
	fail "npm ci --offline worked with an empty cache volume: the warm one proves nothing"
fi
echo "with an empty cache volume instead: $(grep -m1 -o 'ENOTCACHED.*\|code E[A-Z]*' "$work/offline-cold.log" || tail -1 "$work/offline-cold.log")"
"$LB" volume rm -q npm-cache-cold

[ "$(project_state)" = "$before" ] || fail "the host's project changed (node_modules or edits leaked out of :O)"
echo "hack/e2e/project on the host: unchanged (no node_modules)"

step "3. producer/consumer: c-builder compiles into a volume, minimal-runtime runs it"
show "$LB" run --name e2e-producer --network none -v "$repo/hack/e2e/hello:/src:ro" -v e2e-artifacts:/out c-builder \
	gcc -O2 -static -o /out/hello /src/hello.c
out=$(show "$LB" run --name e2e-consumer --network none -v e2e-artifacts:/app:ro minimal-runtime /app/hello)
echo "$out"
case $out in *"hello from a static C program, running on Linux in e2e-consumer"*) ;; *) fail "the consumer printed: $out" ;; esac
if "$LB" run --network none minimal-runtime sh -c 'command -v gcc' >/dev/null; then
	fail "minimal-runtime has a compiler"
fi
echo "minimal-runtime has no gcc: the artifact came through the volume"

step "what is left: no sandbox, the volumes"
show "$LB" ps -a
[ -z "$("$LB" ps -a --format json | grep '"name"' || true)" ] || fail "sandboxes left behind"
show "$LB" volume ls
"$LB" volume rm -q e2e-artifacts

step "4. rootless, as $e2e_user with a store of its own: node-ci built FROM debian, three npm ci && npm test in parallel on :O with a shared npm-cache volume"
[ "$(id -u)" = 0 ] || fail "the rootless part switches to $e2e_user: run make e2e as root"
hack/test-user.sh "$e2e_user" >/dev/null
uid=$(id -u "$e2e_user")
home=$(getent passwd "$e2e_user" | cut -d: -f6)
# The user gets copies of the binary and the fixtures in a directory of
# its own (the checkout may sit where it cannot read); its store there is
# kept between runs, as root's is.
rl=$home/lightbox-e2e
mkdir -p "$rl"
rm -rf "$rl/node-ci" "$rl/project" "$rl/logs"
cp "$LB" "$rl/lightbox"
cp -r hack/e2e/node-ci hack/e2e/project "$rl/"
mkdir "$rl/logs"
chown "$e2e_user:" "$rl"
chown -R "$e2e_user:" "$rl/lightbox" "$rl/node-ci" "$rl/project" "$rl/logs"
# What a login session gives the user (pam_systemd): a private runtime dir.
rtdir=/run/user/$uid
if [ ! -d "$rtdir" ]; then
	mkdir -p "$rtdir" && chown "$e2e_user:" "$rtdir" && chmod 0700 "$rtdir"
fi
proxy_env=()
for v in HTTP_PROXY http_proxy HTTPS_PROXY https_proxy NO_PROXY no_proxy ALL_PROXY all_proxy FTP_PROXY ftp_proxy; do
	if [ -n "${!v:-}" ]; then proxy_env+=("$v=${!v}"); fi
done
as_user() {
	runuser -u "$e2e_user" -- env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME="$home" USER="$e2e_user" LOGNAME="$e2e_user" LANG=C.UTF-8 XDG_RUNTIME_DIR="$rtdir" \
		LIGHTBOX_ROOT="$rl/store" ${proxy_env[@]+"${proxy_env[@]}"} "$@"
}
RLB=$rl/lightbox
as_user "$RLB" gc -q
for s in $(as_user "$RLB" ps -a --format json | sed -n 's/.*"name": *"\(e2e-[^"]*\)".*/\1/p'); do as_user "$RLB" rm -f -q "$s"; done
as_user "$RLB" volume rm -f -q npm-cache >/dev/null 2>&1 || true
if ! as_user "$RLB" snapshot inspect debian >/dev/null 2>&1; then
	debtar=$(hack/debian-base.sh tar "$DEBIAN_BASE_DIR" "$DEBIAN_MIRROR" | tail -1)
	show as_user "$RLB" snapshot import debian "$debtar"
fi
show as_user "$RLB" snapshot build --replace --ca-certs host -t node-ci "$rl/node-ci"
rl_before=$(cd "$rl/project" && find . -printf '%p %M %s\n' | sort)
s=$(date +%s%N)
pids=()
for i in 1 2 3; do
	as_user "$RLB" run --name "e2e-rootless-$i" --ca-certs host -w /work \
		-v "$rl/project:/work:O" -v npm-cache:/root/.npm node-ci \
		sh -c "npm ci --prefer-offline --loglevel=http && npm test" >"$rl/logs/rootless-$i.log" 2>&1 &
	pids+=($!)
done
for i in 1 2 3; do
	log="$rl/logs/rootless-$i.log"
	if ! wait "${pids[$((i - 1))]}"; then
		cat "$log" >&2
		fail "rootless: job $i failed"
	fi
	grep -q '^tests passed' "$log" || fail "rootless: job $i: no 'tests passed'"
	echo "job $i: $(grep '^added' "$log"); npm fetches: $(fetches "$log")"
done
echo "rootless round: $((($(date +%s%N) - s) / 1000000)) ms (three jobs in parallel, launch included)"
grep -q '(cache miss)' "$rl/logs/rootless-1.log" "$rl/logs/rootless-2.log" "$rl/logs/rootless-3.log" ||
	fail "rootless round: no fetch went to the registry (the npm-cache volume was not new)"
[ "$(cd "$rl/project" && find . -printf '%p %M %s\n' | sort)" = "$rl_before" ] || fail "rootless: the project changed on the host (node_modules leaked out of :O)"
echo "the project on the host: unchanged"
as_user "$RLB" volume rm -q npm-cache
[ -z "$(as_user "$RLB" ps -a --format json | grep '"name"' || true)" ] || fail "rootless: sandboxes left behind"
echo
echo "e2e: ok in $(($(date +%s) - t0)) s"
