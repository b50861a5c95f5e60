#!/bin/sh
# runtime-tools-run.sh RUNTIME [DIR]: runs every validation program built
# by runtime-tools.sh in DIR (default bin/runtime-tools) against RUNTIME
# and prints "pass|fail NAME" lines (in name order), then "passed N of M".
# A program passes when it exits 0 and prints no "not ok" line and no
# "1..0" plan beside an "error" diagnostic (how the hook programs report a
# failure; a plan of 0 alone is a part that found nothing to check on this
# host, as linux_cgroups_cpus's second part without
# /sys/fs/cgroup/cpu,cpuacct); *_fail programs print nothing when the
# runtime refuses the config, which passes. validation/util is a library,
# not a program.
#
# RT_JOBS (default 4) programs run at once: most of the suite's time is
# its own one-second polls. The programs that use its fixed cgroup paths
# (linux_cgroups_*, delete_*resources) run one after the other in one
# lane. A program's full
# output is in $RT_LOGS/NAME.log when RT_LOGS names a directory.
set -u
self=$(realpath "$0")

# one NAME...: runs the programs NAME... in turn (from DIR, with RUNTIME
# and RT_TMP set), each verdict in $RT_TMP/out/NAME.
one() {
	for n in "$@"; do
		out=$(TMPDIR="$RT_TMP" timeout 120 "./validation/$n/$n.t" 2>&1)
		rc=$?
		if [ -n "${RT_LOGS:-}" ]; then
			printf '%s\n' "$out" >"$RT_LOGS/$n.log"
		fi
		if [ $rc -eq 0 ] && ! printf '%s\n' "$out" | grep -q '^not ok' &&
			! { printf '%s\n' "$out" | grep -qx '1\.\.0' && printf '%s\n' "$out" | grep -q '^ *"error":'; }; then
			echo "pass $n" >"$RT_TMP/out/$n"
		else
			{
				echo "fail $n"
				printf '%s\n' "$out" | grep -E '^not ok|error|1\.\.0' | head -3 | sed 's/^/    /'
			} >"$RT_TMP/out/$n"
		fi
	done
}

if [ "${1:-}" = --lane ]; then
	# shellcheck disable=SC2086 # a lane is a list of names
	one $2
	exit 0
fi

rt=$(command -v "$1" || echo "$1")
case $rt in /*) ;; *) rt=$(realpath -s "$rt") ;; esac
dir=${2:-$(dirname "$0")/../bin/runtime-tools}
jobs=${RT_JOBS:-4}
cd "$dir" || exit 1
tmp=$(mktemp -d /tmp/rtv.XXXXXX)
chmod 0755 "$tmp"
mkdir "$tmp/out"
export RUNTIME="$rt" RT_TMP="$tmp"

names=$(for t in validation/*/*.t; do basename "$t" .t; done | grep -vx util)
# The programs that use the suite's fixed cgroup paths share one lane.
cg=$(for n in $names; do
	grep -lqE 'cgrouptest|CgroupPath|/sys/fs/cgroup' "validation/$n"/*.go && echo "$n"
done)
{
	echo "$cg" | tr '\n' ' '
	echo
	printf '%s\n' "$names" | grep -vxF "$cg"
} | while read -r lane; do
	printf '%s\0' "$lane"
done | xargs -0 -P "$jobs" -n 1 "$self" --lane
pass=0 total=0
for n in $names; do
	total=$((total + 1))
	if [ -f "$tmp/out/$n" ]; then
		cat "$tmp/out/$n"
		head -1 "$tmp/out/$n" | grep -q '^pass' && pass=$((pass + 1))
	else
		echo "fail $n"
		echo "    (no verdict)"
	fi
done
rm -rf "$tmp"
echo "passed $pass of $total"
