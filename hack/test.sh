#!/usr/bin/env bash
# test.sh [PKG...]: lightbox's test harness (`make test`, `.ci/run`).
#
#  1. gofmt and go vet over the module, the darwin cross-build
#     (GOOS=darwin go build and go vet) and errcheck;
#  2. compiles every package's test binary once (bin/tests/<pkg>.test) and
#     the static bin/lightbox;
#  3. root pass: runs each test binary as root in its package directory
#     with LIGHTBOX_TEST_ROOT=1;
#  4. rootless pass: makes sure the unprivileged user (lbtest) exists with
#     a /etc/subuid and /etc/subgid range, copies the sources, the test
#     binaries and bin/lightbox into a scratch dir it owns, and runs every
#     test binary again as that user with LIGHTBOX_TEST_ROOTLESS=1;
#  5. runs the two passes at once (LIGHTBOX_TEST_SERIAL=1: one after
#     the other), each pass's packages in turn;
#  6. prints which package failed in which pass and exits non-zero if any
#     step failed.
#
# Every test binary gets LIGHTBOX_BIN (absolute path of the lightbox binary
# it may drive), -test.count=N (LIGHTBOX_TEST_COUNT, default 1) and a
# timeout. LIGHTBOX_TEST_STRICT is passed
# through (CI sets it to 1: a skip for a missing capability fails).
#
# Tests that ask for a real Debian (LIGHTBOX_DEBIAN_TAR) get a tarball of
# a debootstrap'd bookworm made once per machine (hack/debian-base.sh).
#
# Knobs: LIGHTBOX_TEST_SERIAL=1 (the passes one after the other),
# LIGHTBOX_TEST_TIMEOUT (seconds per test binary, default 900),
# LIGHTBOX_TEST_USER (default lbtest), LIGHTBOX_TEST_RUN (-test.run regexp),
# LIGHTBOX_TEST_PASSES ("root rootless" by default; "root" or "rootless"),
# LIGHTBOX_TEST_COUNT (runs each test N times in one go, -test.count=N, to
# prove a fix of a flaky test: LIGHTBOX_TEST_COUNT=30 make test PKGS=./pkg;
# the timeout per test binary grows with it).
# Full verbose logs: bin/tests/logs/<pkg>.<pass>.log.
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo" || exit 2
export PATH="/usr/local/go/bin:$PATH"
export CGO_ENABLED=0

timeout_s=${LIGHTBOX_TEST_TIMEOUT:-900}
test_user=${LIGHTBOX_TEST_USER:-lbtest}
passes=${LIGHTBOX_TEST_PASSES:-root rootless}
strict=${LIGHTBOX_TEST_STRICT:-}
run_re=${LIGHTBOX_TEST_RUN:-}
test_count=${LIGHTBOX_TEST_COUNT:-1}
if ! [[ $test_count =~ ^[1-9][0-9]*$ ]]; then
	echo "LIGHTBOX_TEST_COUNT=$test_count: want a positive number of runs" >&2
	exit 2
fi
# The timeout is per test binary: N runs get N times as long.
timeout_s=$((timeout_s * test_count))

bindir=$repo/bin
testdir=$bindir/tests
logdir=$testdir/logs
lightbox_bin=$bindir/lightbox

failures=()   # "what: why"
results=()    # summary lines
oddskips=()   # skips other than root-only/rootless-only by design

now_ms() { date +%s%3N; }
secs() { printf '%d.%01ds' $(($1 / 1000)) $((($1 % 1000) / 100)); }
t_start=$(now_ms)
say() { printf '%s\n' "$*"; }
hdr() { printf '\n==> %s\n' "$*"; }

# Filtered view of a verbose test log for a failure report: drop the
# RUN/PAUSE/CONT/PASS chatter, keep everything else (failures, logs,
# panics), at most the last 400 lines.
show_log() {
	grep -v -E '^(=== (RUN|PAUSE|CONT|NAME)|[[:space:]]*--- PASS)' "$1" | tail -n 400 | sed 's/^/    /'
}

# What each failed test said, for the summary's FAILED section (CI keeps
# only a log's head and tail, so the failure must be there): a verbose log
# interleaves tests under "=== RUN/CONT/NAME" headers; this keeps each
# test's own lines and prints, for each test marked "--- FAIL", its last
# 15 (where a failure's message is; a parent whose subtest failed prints
# nothing of its own if it said nothing).
failed_digest() {
	awk '
		/^=== (RUN|CONT|NAME|PAUSE) / { cur = $3; next }
		/^[[:space:]]*--- FAIL: / { failed[++nf] = $3; next }
		/^[[:space:]]*--- (PASS|SKIP): / { next }
		/^(PASS|FAIL|ok)/ { next }
		cur != "" { n[cur]++; line[cur, n[cur] % 15] = $0 }
		END {
			for (i = 1; i <= nf; i++) {
				t = failed[i]
				if (!(t in n) && i < nf && index(failed[i+1], t "/") == 1)
					continue
				printf "  %s:\n", t
				for (j = (n[t] > 15 ? n[t] - 14 : 1); j <= n[t]; j++)
					printf "        %s\n", line[t, j % 15]
			}
		}
	' "$1"
}

count() { # count PATTERN FILE
	local n
	n=$(grep -c -E "$1" "$2" 2>/dev/null) || true
	echo "${n:-0}"
}

# ---------------------------------------------------------------- checks
hdr "gofmt, go vet, darwin cross-build, errcheck"
t=$(now_ms)
mapfile -t gofiles < <(git ls-files -co --exclude-standard -- '*.go' 2>/dev/null)
if [ ${#gofiles[@]} -eq 0 ]; then
	mapfile -t gofiles < <(find . -name '*.go' -not -path './.cache/*' -not -path './bin/*' -not -path './bench/work/*')
fi
unformatted=$(gofmt -l "${gofiles[@]}" 2>&1)
if [ -n "$unformatted" ]; then
	say "gofmt: not formatted (run gofmt -w):"
	say "$unformatted" | sed 's/^/    /'
	failures+=("gofmt: $(echo "$unformatted" | wc -l) file(s) not formatted")
fi
if ! go vet ./... 2>&1 | sed 's/^/    /'; then
	failures+=("go vet: reports problems (see above)")
fi
# It builds where it does not run: tools that embed lightbox must compile
# on a Mac (the !linux stubs return errors wrapping errors.ErrUnsupported).
if ! { GOOS=darwin go build ./... && GOOS=darwin go vet ./...; } 2>&1 | sed 's/^/    /'; then
	failures+=("GOOS=darwin go build/vet: the cross-build fails (see above)")
fi
# Every discarded error is handled or says why (`_ = f.Close() // read-only`):
# errcheck, pinned in go.mod's tool directives, with the idioms of
# hack/errcheck.exclude, on every package.
mapfile -t ecpkgs < <(go list ./...)
if ! go tool errcheck -ignoretests -exclude hack/errcheck.exclude "${ecpkgs[@]}" 2>&1 | sed 's/^/    /'; then
	failures+=("errcheck: discarded errors without a reason (see above)")
fi
say "checks took $(secs $(($(now_ms) - t)))"

# ---------------------------------------------------------------- compile
hdr "compile test binaries and bin/lightbox"
t=$(now_ms)
module=$(go list -m)
mapfile -t pkgs < <(go list -e -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' "${@:-./...}" | grep -v '^$')
rm -rf "$testdir"
mkdir -p "$testdir" "$logdir"

declare -A relof nameof labelof
built=()
for ip in "${pkgs[@]}"; do
	rel=${ip#"$module"}
	rel=${rel#/}
	[ -n "$rel" ] || rel=.
	if [ "$rel" = . ]; then name=lightbox; else name=${rel//\//_}; fi
	relof[$ip]=$rel
	labelof[$ip]=$rel
	[ "$rel" = . ] && labelof[$ip]="lightbox (.)"
	nameof[$ip]=$name
	tc=$(now_ms)
	if out=$(go test -c -vet=off -o "$testdir/$name.test" "./$rel" 2>&1); then
		if [ -x "$testdir/$name.test" ]; then
			built+=("$ip")
			say "    built $name.test ($(secs $(($(now_ms) - tc))))"
		else
			say "    $rel: no test binary (no tests for this platform?)"
		fi
	else
		say "    $rel: compile FAILED:"
		say "$out" | sed 's/^/        /'
		failures+=("$rel: test binary does not compile")
		results+=("$(printf '%-28s %-9s %s' "$rel" compile FAIL)")
	fi
done
if out=$(go build -trimpath -tags "${LIGHTBOX_TAGS-urfave_cli_no_docs}" -o "$lightbox_bin" ./cmd/lightbox 2>&1); then
	say "    built bin/lightbox"
else
	say "    bin/lightbox: build FAILED:"
	say "$out" | sed 's/^/        /'
	failures+=("bin/lightbox: does not build")
	rm -f "$lightbox_bin"
fi
say "compile took $(secs $(($(now_ms) - t)))"

# ---------------------------------------------------------------- run
# run_one PASS IP DIR BIN LIGHTBOX_BIN [runuser prefix...]
run_one() {
	local pass=$1 ip=$2 dir=$3 bin=$4 lbbin=$5
	shift 5
	local rel=${labelof[$ip]} name=${nameof[$ip]}
	local log=$logdir/$name.$pass.log
	local args=("-test.count=$test_count" -test.v "-test.timeout=$((timeout_s - 30))s")
	[ -n "$run_re" ] && args+=("-test.run=$run_re")
	local tr rc
	tr=$(now_ms)
	(cd "$dir" && "$@" timeout -k 30 "$timeout_s" "$bin" "${args[@]}") >"$log" 2>&1
	rc=$?
	local el=$(($(now_ms) - tr))
	local np nf ns
	np=$(count '^[[:space:]]*--- PASS' "$log")
	nf=$(count '^[[:space:]]*--- FAIL' "$log")
	ns=$(count '^[[:space:]]*--- SKIP' "$log")
	local status=ok why=
	if [ $rc -ne 0 ]; then
		status=FAIL
		case $rc in
		124 | 137) why="timed out after ${timeout_s}s" ;;
		*) why="exit status $rc" ;;
		esac
		[ "$nf" -gt 0 ] && why="$nf failed"
		failures+=("$rel ($pass pass): $why")
		local d
		while IFS= read -r d; do
			failures+=("$d")
		done < <(failed_digest "$log")
	fi
	# A skip's reason is the last log line of the test before its
	# "--- SKIP" line.
	# Tests skipped for one reason are counted on one line.
	local sk
	while IFS= read -r sk; do
		oddskips+=("$rel ($pass pass): $sk")
	done < <(awk '
		/^[[:space:]]+[^[:space:]]+\.go:[0-9]+: / { sub(/^[[:space:]]+[^[:space:]]+\.go:[0-9]+: /, ""); msg = $0; next }
		/^[[:space:]]*--- SKIP: / {
			if (msg !~ /^(root-only|rootless-only) test:/) {
				if (!(msg in n)) order[++k] = msg
				if (!(msg in first)) first[msg] = $3
				n[msg]++
			}
			msg = ""
		}
		END { for (i = 1; i <= k; i++) { m = order[i]; print (n[m] > 1 ? first[m] " and " n[m]-1 " more" : first[m]) ": " m } }
	' "$log")
	local line
	line=$(printf '%-28s %-9s %-5s %7s  %3d passed %3d skipped %3d failed' \
		"$rel" "$pass" "$status" "$(secs $el)" "$np" "$ns" "$nf")
	results+=("$line")
	say "    $line"
	[ -z "${live:-}" ] || printf '    %s\n' "$line" >&3
	if [ $status = FAIL ]; then
		say "    --- log of $rel, $pass pass ($log):"
		show_log "$log"
	fi
	# What the kernel answered at a quota's limit (the XFS tests in the
	# QEMU guest, loop-backed volumes): shown on success too.
	grep -h -E 'the kernel said|No space left on device' "$log" 2>/dev/null | sort -u | head -8 | sed 's/^[[:space:]]*/      kernel: /'
}

base_env=(LIGHTBOX_TEST_STRICT="$strict" LIGHTBOX_TEST_RUNID="$$")

if [ "$(id -u)" != 0 ]; then
	say
	say "note: not root: running every test binary once as $(id -un) (rootless pass only)"
	passes=rootless
	as_self=1
else
	as_self=0
fi

# Fixtures both passes need, made as root once: the unprivileged user (the
# root pass's admin test creates a volume for it) and a debootstrap'd
# Debian as a tarball (LIGHTBOX_DEBIAN_TAR) for the real-distribution tests,
# made once per machine and reused while it checks out (hack/debian-base.sh;
# DEBIAN_BASE_DIR or LIGHTBOX_DEBIAN_DIR, DEBIAN_MIRROR). A LIGHTBOX_DEBIAN_TAR
# already set is used as it is.
if [ $as_self = 0 ]; then
	hdr "fixtures: test user, Debian base"
	t=$(now_ms)
	"$repo/hack/test-user.sh" "$test_user" || failures+=("fixtures: could not set up user $test_user")
	base_env+=(LIGHTBOX_TEST_USER="$test_user")
	debian_dir=${LIGHTBOX_DEBIAN_DIR:-${DEBIAN_BASE_DIR:-/var/cache/lightbox/debian-bookworm}}
	if [ -n "${LIGHTBOX_DEBIAN_TAR:-}" ]; then
		base_env+=(LIGHTBOX_DEBIAN_TAR="$LIGHTBOX_DEBIAN_TAR")
	elif tarpath=$("$repo/hack/debian-base.sh" tar "$debian_dir" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" | tail -n 1) &&
		[ -f "$tarpath" ]; then
		base_env+=(LIGHTBOX_DEBIAN_TAR="$tarpath")
		say "    LIGHTBOX_DEBIAN_TAR=$tarpath"
	else
		failures+=("fixtures: could not make the Debian base tarball (hack/debian-base.sh; the tests that need it say so)")
	fi
	say "fixtures took $(secs $(($(now_ms) - t)))"
elif [ -n "${LIGHTBOX_DEBIAN_TAR:-}" ]; then
	base_env+=(LIGHTBOX_DEBIAN_TAR="$LIGHTBOX_DEBIAN_TAR")
fi
# run_pass PASS: every test binary in one pass, its results, failures
# and skips added to the arrays.
run_pass() {
	local pass=$1
	case $pass in
	root)
		hdr "root pass (LIGHTBOX_TEST_ROOT=1)"
		t=$(now_ms)
		for ip in "${built[@]}"; do
			run_one root "$ip" "$repo/${relof[$ip]}" "$testdir/${nameof[$ip]}.test" "$lightbox_bin" \
				env -u LIGHTBOX_ROOT -u LIGHTBOX_TEST_ROOTLESS "${base_env[@]}" \
				LIGHTBOX_TEST_ROOT=1 LIGHTBOX_BIN="$lightbox_bin"
		done
		say "root pass took $(secs $(($(now_ms) - t)))"
		;;
	rootless)
		if [ $as_self = 1 ]; then
			hdr "rootless pass as $(id -un) (LIGHTBOX_TEST_ROOTLESS=1)"
			t=$(now_ms)
			for ip in "${built[@]}"; do
				run_one rootless "$ip" "$repo/${relof[$ip]}" "$testdir/${nameof[$ip]}.test" "$lightbox_bin" \
					env -u LIGHTBOX_ROOT -u LIGHTBOX_TEST_ROOT "${base_env[@]}" \
					LIGHTBOX_TEST_ROOTLESS=1 LIGHTBOX_BIN="$lightbox_bin"
			done
			say "rootless pass took $(secs $(($(now_ms) - t)))"
			return
		fi
		hdr "rootless pass as $test_user (LIGHTBOX_TEST_ROOTLESS=1)"
		t=$(now_ms)
		if ! "$repo/hack/test-user.sh" "$test_user"; then
			failures+=("rootless pass: could not set up user $test_user")
			return
		fi
		uid=$(id -u "$test_user")
		home=$(getent passwd "$test_user" | cut -d: -f6)
		# The checkout may sit where the user cannot read (/root): give it
		# a copy of the sources (tests read testdata relative to their
		# package dir) and of the binaries in a scratch dir it owns.
		scratch=$(mktemp -d /tmp/lightbox-rootless.XXXXXX)
		chmod 0755 "$scratch"
		mkdir -p "$scratch/src" "$scratch/bin"
		tar -C "$repo" --exclude=./.git --exclude=./bin --exclude=./.cache --exclude=./bench/work -cf - . |
			tar -C "$scratch/src" -xf -
		for ip in "${built[@]}"; do cp "$testdir/${nameof[$ip]}.test" "$scratch/bin/"; done
		[ -f "$lightbox_bin" ] && cp "$lightbox_bin" "$scratch/bin/lightbox"
		chown -R "$test_user:" "$scratch"
		chmod 0755 "$scratch"/bin/*
		# What a login session gives the user (pam_systemd): a private
		# runtime dir.
		rtdir=/run/user/$uid
		if [ ! -d "$rtdir" ]; then
			mkdir -p "$rtdir" && chown "$test_user:" "$rtdir" && chmod 0700 "$rtdir"
		fi
		for ip in "${built[@]}"; do
			run_one rootless "$ip" "$scratch/src/${relof[$ip]}" "$scratch/bin/${nameof[$ip]}.test" "$scratch/bin/lightbox" \
				runuser -u "$test_user" -- env -i \
				PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/go/bin" \
				HOME="$home" USER="$test_user" LOGNAME="$test_user" LANG=C.UTF-8 \
				XDG_RUNTIME_DIR="$rtdir" "${base_env[@]}" \
				LIGHTBOX_TEST_ROOTLESS=1 LIGHTBOX_BIN="$scratch/bin/lightbox"
		done
		# Tests may leave files owned by subordinate ids; root removes
		# them. --one-file-system: never descend into a leftover mount.
		if ! rm -rf --one-file-system "$scratch" 2>/dev/null; then
			say "    warning: could not remove all of $scratch (a leftover mount?)"
		fi
		say "rootless pass took $(secs $(($(now_ms) - t)))"
		;;
	*)
		say "unknown pass $pass in LIGHTBOX_TEST_PASSES"
		exit 2
		;;
	esac
}

for pass in $passes; do
	case $pass in
	root | rootless) ;;
	*)
		say "unknown pass $pass in LIGHTBOX_TEST_PASSES"
		exit 2
		;;
	esac
done
# The root and rootless passes run at once unless LIGHTBOX_TEST_SERIAL=1:
# they share no store, user or file, and a pass leaves the CPUs idle
# ~40% of its time (integration, root: 57% busy of two), waiting on
# kernels, timeouts and children. Each pass's output goes to
# $logdir/pass.PASS.out and is shown whole once both ended; a line per
# package is shown as it finishes (fd 3).
exec 3>&1
npasses=$(wc -w <<<"$passes")
if [ -z "${LIGHTBOX_TEST_SERIAL:-}" ] && [ "$npasses" -gt 1 ]; then
	hdr "$passes passes at once (LIGHTBOX_TEST_SERIAL=1: one after the other); a line per package as it ends:"
	live=1
	for pass in $passes; do
		(
			results=() failures=() oddskips=()
			run_pass "$pass"
			printf '%s\n' "${results[@]}" >"$logdir/pass.$pass.results"
			printf '%s\n' "${failures[@]}" >"$logdir/pass.$pass.failures"
			printf '%s\n' "${oddskips[@]}" >"$logdir/pass.$pass.oddskips"
		) >"$logdir/pass.$pass.out" 2>&1 &
	done
	wait
	live=
	for pass in $passes; do
		cat "$logdir/pass.$pass.out"
		for a in results failures oddskips; do
			f=$logdir/pass.$pass.$a
			[ -f "$f" ] || {
				failures+=("$pass pass: ended without its results")
				continue
			}
			while IFS= read -r line; do
				[ -n "$line" ] || continue
				case $a in
				results) results+=("$line") ;;
				failures) failures+=("$line") ;;
				oddskips) oddskips+=("$line") ;;
				esac
			done <"$f"
		done
	done
else
	for pass in $passes; do
		run_pass "$pass"
	done
fi

# ---------------------------------------------------------------- summary
hdr "summary ($(secs $(($(now_ms) - t_start))) in all; strict mode: ${strict:-off}; each test run $test_count time(s))"
printf '    %s\n' "${results[@]}"
if [ ${#built[@]} -eq 0 ]; then
	say "    (no package has tests)"
fi
if [ ${#oddskips[@]} -gt 0 ]; then
	say
	say "skipped, other than root-only/rootless-only tests by design:"
	printf '    %s\n' "${oddskips[@]}"
fi
if [ ${#failures[@]} -gt 0 ]; then
	say
	say "FAILED:"
	printf '    %s\n' "${failures[@]}"
	exit 1
fi
say
say "PASS"
