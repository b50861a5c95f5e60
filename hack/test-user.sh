#!/bin/sh
# test-user.sh USER: make sure the unprivileged user that runs the rootless
# pass of `make test` exists, with a home dir and a 65536-id range in both
# /etc/subuid and /etc/subgid (added only when the user has none; the
# range starts past every range already listed, so none overlap).
set -eu

user=${1:-lbtest}

if ! id -u "$user" >/dev/null 2>&1; then
	# A home left by an earlier user of that name is reused as it is.
	useradd --create-home --shell /bin/sh "$user"
	echo "test-user: created user $user"
fi
uid=$(id -u "$user")
home=$(getent passwd "$user" | cut -d: -f6)
if [ ! -d "$home" ]; then
	mkdir -p "$home"
fi
chown "$user:" "$home"

has_range() { # FILE
	[ -f "$1" ] && grep -q -E "^($user|$uid):[0-9]+:[0-9]+" "$1"
}

# First id past every range in both files, at least 100000.
next_start() {
	cat /etc/subuid /etc/subgid 2>/dev/null |
		awk -F: 'BEGIN { m = 100000 } NF >= 3 && $2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/ { e = $2 + $3; if (e > m) m = e } END { print m }'
}

for f in /etc/subuid /etc/subgid; do
	if ! has_range "$f"; then
		start=$(next_start)
		echo "$user:$start:65536" >>"$f"
		echo "test-user: added $user:$start:65536 to $f"
	fi
done

for tool in newuidmap newgidmap; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "test-user: $tool missing: install Debian's uidmap (make deps)" >&2
		exit 1
	fi
done
