#!/bin/sh
# deps.sh installs what lightbox's tests, demo and build need on a Debian 12
# machine, as root. Idempotent: when every package is already installed it
# only checks (no apt-get update), so `make test` stays fast on a warm machine.
#
# The package list is hack/packages.txt plus any hack/vm-*.packages and
# hack/net-*.packages (one package a line, # comments), so the owners of
# those harnesses can add what they need without editing this script.
# Extra packages for one run: DEPS_EXTRA="pkg1 pkg2" hack/deps.sh.
set -eu

cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

if [ "$(id -u)" != 0 ]; then
	echo "deps: not root: skipping package installation (run 'make deps' as root)" >&2
	exit 0
fi

pkgs=$(cat hack/packages.txt hack/vm-*.packages hack/net-*.packages 2>/dev/null |
	sed -e 's/#.*//' | tr -s ' \t' '\n\n' | grep -v '^$' | sort -u)
pkgs="$pkgs ${DEPS_EXTRA:-}"
# The TypeScript client's tests (integration/typescript_test.go) need node
# and npm. Machines of this kind may ship a newer Node.js than Debian's
# (not as Debian's package): Debian's nodejs and npm only when a command is
# missing.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	pkgs="$pkgs nodejs npm"
fi

missing=
for p in $pkgs; do
	st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
	case "$st" in
	ii*) ;;
	*) missing="$missing $p" ;;
	esac
done

if [ -n "$missing" ]; then
	echo "deps: installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# Rootless user-mode networking (pasta/slirp4netns) opens /dev/net/tun
# inside the user's own namespaces; this kind of machine ships it 0600.
if [ -c /dev/net/tun ]; then
	chmod 0666 /dev/net/tun
fi

if command -v go >/dev/null 2>&1; then
	go mod download
else
	echo "deps: no Go toolchain in PATH or /usr/local/go/bin: install Go 1.26 first" >&2
	exit 1
fi
