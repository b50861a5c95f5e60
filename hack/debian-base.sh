#!/bin/sh
# debian-base.sh DIR MIRROR LIGHTBOX: make a Debian bookworm root filesystem
# with `debootstrap --variant=minbase` into DIR (once: a tree that checks
# out is reused) and import it as the snapshot "debian" with LIGHTBOX
# (unless the store already has it; LIGHTBOX_ROOT picks the store).
# With --tar as LIGHTBOX it imports nothing and writes DIR.tar instead
# (numeric owners kept, readable by everyone): what `make test` hands the
# integration tests, so an unprivileged user can import it too.
set -eu

dir=$1 mirror=$2 lightbox=$3

checks_out() {
	[ -f "$dir.ok" ] &&
		grep -q '^12\.' "$dir/etc/debian_version" 2>/dev/null &&
		[ -x "$dir/usr/bin/apt-get" ] &&
		[ -u "$dir/usr/bin/su" ] &&
		grep -q "^_apt:" "$dir/etc/passwd"
}

if checks_out; then
	echo "debian-base: reusing $dir ($(cat "$dir.ok"))"
else
	echo "debian-base: debootstrap --variant=minbase bookworm $dir (about a minute)"
	rm -rf "$dir" "$dir.tmp" "$dir.ok"
	mkdir -p "$(dirname "$dir")"
	start=$(date +%s)
	if ! debootstrap --variant=minbase bookworm "$dir.tmp" "$mirror" >"$dir.log" 2>&1; then
		tail -20 "$dir.log" >&2
		echo "debian-base: debootstrap failed (full log: $dir.log)" >&2
		exit 1
	fi
	mv "$dir.tmp" "$dir"
	echo "made $(date -u +%Y-%m-%dT%H:%M:%SZ) from $mirror in $(($(date +%s) - start)) s" >"$dir.ok"
	checks_out || { echo "debian-base: $dir does not check out after debootstrap" >&2; exit 1; }
fi

if [ "$lightbox" = --tar ]; then
	if [ ! -f "$dir.tar" ] || [ "$dir.ok" -nt "$dir.tar" ]; then
		tar -C "$dir" --numeric-owner --xattrs --xattrs-include='*' -cf "$dir.tar.tmp" .
		chmod 0644 "$dir.tar.tmp"
		mv "$dir.tar.tmp" "$dir.tar"
	fi
	echo "debian-base: $dir.tar"
	exit 0
fi

if "$lightbox" snapshot inspect debian >/dev/null 2>&1; then
	echo "debian-base: snapshot debian already in the store"
else
	"$lightbox" snapshot import debian "$dir"
fi
"$lightbox" snapshot ls
