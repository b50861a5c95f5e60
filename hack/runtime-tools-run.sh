#!/bin/sh
# runtime-tools-run.sh RUNTIME [DIR]: runs every validation program built
# by runtime-tools.sh in DIR (default bin/runtime-tools) against RUNTIME
# and prints "pass|fail NAME" lines, then "passed N of M". A program
# passes when it exits 0 and prints no "not ok" line and no "1..0" plan
# beside an "error" diagnostic (how the hook programs report a failure;
# a plan of 0 alone is a part that found nothing to check on this host,
# as linux_cgroups_cpus's second part without /sys/fs/cgroup/cpu,cpuacct);
# *_fail programs print nothing when the runtime refuses the config,
# which passes. validation/util is a library, not a program.
set -u
rt=$(command -v "$1" || echo "$1")
case $rt in /*) ;; *) rt=$(realpath -s "$rt") ;; esac
dir=${2:-$(dirname "$0")/../bin/runtime-tools}
cd "$dir" || exit 1
tmp=$(mktemp -d /tmp/rtv.XXXXXX)
chmod 0755 "$tmp"
pass=0 total=0
for t in validation/*/*.t; do
	n=$(basename "$t" .t)
	[ "$n" = util ] && continue
	total=$((total + 1))
	out=$(RUNTIME="$rt" TMPDIR="$tmp" timeout 120 "./$t" 2>&1)
	rc=$?
	if [ $rc -eq 0 ] && ! printf '%s\n' "$out" | grep -q '^not ok' &&
		! { printf '%s\n' "$out" | grep -qx '1\.\.0' && printf '%s\n' "$out" | grep -q '^ *"error":'; }; then
		pass=$((pass + 1))
		echo "pass $n"
	else
		echo "fail $n"
		printf '%s\n' "$out" | grep -E '^not ok|error|1\.\.0' | head -3 | sed 's/^/    /'
	fi
done
rm -rf "$tmp"
echo "passed $pass of $total"
