#!/bin/sh
# debian-base.sh: a Debian bookworm root filesystem made with
# `debootstrap --variant=minbase` from Debian's packages, made once per
# machine and reused while it checks out.
#
#   debian-base.sh tree   DIR MIRROR           make (or check) the tree at DIR
#   debian-base.sh tar    DIR MIRROR           ... and DIR.tar (numeric owners,
#                                              xattrs); prints its path last
#   debian-base.sh import DIR MIRROR LIGHTBOX  ... and import the tree as the
#                                              snapshot "debian" (unless the
#                                              store has it; LIGHTBOX_ROOT
#                                              picks the store)
set -eu

if [ $# -lt 3 ]; then
	echo "usage: debian-base.sh tree|tar|import DIR MIRROR [LIGHTBOX]" >&2
	exit 2
fi
what=$1 dir=$2 mirror=$3
case $what in
tree | tar) ;;
import) [ $# -ge 4 ] || { echo "debian-base: import needs the lightbox binary" >&2; exit 2; } ;;
*) echo "debian-base: unknown action $what (tree, tar or import)" >&2; exit 2 ;;
esac
case $dir in
/*) ;;
*) echo "debian-base: DIR must be an absolute path, not $dir" >&2; exit 2 ;;
esac

# A parent made here is readable by everyone (the rootless tests import
# the tarball as another user); an existing one (/tmp, say) is left as it
# is.
if [ ! -d "$(dirname "$dir")" ]; then
	mkdir -p "$(dirname "$dir")"
	chmod 0755 "$(dirname "$dir")"
fi
# One of these at a time per DIR: two checkouts' `make test` on one
# machine share the tree, and a second debootstrap into $dir.tmp while the
# first runs fails both ("file already exists"). The lock is held until
# the script exits; the second waits and then reuses the first's tree.
exec 9>>"$dir.lock"
flock 9

checks_out() {
	[ -f "$dir.ok" ] &&
		grep -q '^12\.' "$dir/etc/debian_version" 2>/dev/null &&
		[ -x "$dir/usr/bin/apt-get" ] &&
		[ -u "$dir/usr/bin/su" ] &&
		grep -q "^_apt:" "$dir/etc/passwd"
}

if checks_out; then
	echo "debian-base: reusing $dir ($(cat "$dir.ok"))" >&2
else
	echo "debian-base: debootstrap --variant=minbase bookworm $dir (a minute or more)" >&2
	rm -rf "$dir" "$dir.tmp" "$dir.ok" "$dir.tar"
	start=$(date +%s)
	if ! debootstrap --variant=minbase bookworm "$dir.tmp" "$mirror" >"$dir.log" 2>&1; then
		tail -20 "$dir.log" >&2
		echo "debian-base: debootstrap failed (full log: $dir.log)" >&2
		exit 1
	fi
	mv "$dir.tmp" "$dir"
	echo "made $(date -u +%Y-%m-%dT%H:%M:%SZ) from $mirror in $(($(date +%s) - start)) s" >"$dir.ok"
	checks_out || {
		echo "debian-base: $dir does not check out after debootstrap" >&2
		exit 1
	}
fi

case $what in
tree) ;;
tar)
	if [ ! -f "$dir.tar" ] || [ "$dir.ok" -nt "$dir.tar" ]; then
		echo "debian-base: tar of $dir" >&2
		tar --numeric-owner --xattrs --xattrs-include='*' -C "$dir" -cf "$dir.tar.tmp" .
		chmod 0644 "$dir.tar.tmp"
		mv "$dir.tar.tmp" "$dir.tar"
	fi
	echo "$dir.tar"
	;;
import)
	lightbox=$4
	if "$lightbox" snapshot inspect debian >/dev/null 2>&1; then
		echo "debian-base: snapshot debian already in the store" >&2
	else
		"$lightbox" snapshot import debian "$dir"
	fi
	"$lightbox" snapshot ls
	;;
esac
