#!/usr/bin/env bash
# make demo: the product's three flows, on snapshots made from Debian's
# busybox-static (no network needed). Run as root after `make deps build`.
set -euo pipefail
cd "$(dirname "$0")/.."
LB="$PWD/bin/lightbox"
export LIGHTBOX_ROOT="${LIGHTBOX_ROOT:-$PWD/.demo/store}"
work="$PWD/.demo/work"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

# Start from a clean demo store (it is the demo's own: .demo/).
if [ -d "$LIGHTBOX_ROOT" ]; then
	"$LB" gc >/dev/null 2>&1 || true
	for s in $("$LB" ps -a --format json 2>/dev/null | sed -n 's/.*"name": "\([^"]*\)".*/\1/p'); do "$LB" rm -f "$s" >/dev/null 2>&1 || true; done
	"$LB" volume rm -f npm-cache artifacts models >/dev/null 2>&1 || true
fi
rm -rf "$work"
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp" "$work/rootfs/root" "$work/my-project"

step "1. a snapshot from Debian's busybox-static"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$work/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$work/rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$work/rootfs/etc/group"
chmod 1777 "$work/rootfs/tmp"
show "$LB" snapshot import --replace busybox "$work/rootfs"
show "$LB" snapshot import --replace runtime "$work/rootfs"
show "$LB" snapshot ls

step "2. three sandboxes in parallel share a cache volume over a copy-on-write (:O) project"
echo '{"name": "my-project", "version": "1.0.0"}' > "$work/my-project/package.json"
cd "$work"
for i in 1 2 3; do
	"$LB" run --network none -v ./my-project:/work:O -v npm-cache:/root/.npm -w /work busybox \
		sh -c "echo job $i sees \$(cat package.json); echo cached-by-job-$i > /root/.npm/job$i" &
done
wait
show "$LB" run --network none -v npm-cache:/root/.npm busybox ls /root/.npm

step "3. a builder sandbox hands an artifact to a sandbox of another snapshot"
show "$LB" volume create --label flow=build artifacts
show "$LB" run --network none -v artifacts:/out busybox sh -c 'printf "#!/bin/sh\necho hello from the artifact\n" > /out/app && chmod +x /out/app'
show "$LB" run --network none -v artifacts:/app:ro runtime /app/app

step "4. a primed volume, then detached workers that all see it"
show "$LB" run --network none -v models:/models busybox sh -c 'echo weights-v1 > /models/weights'
workers=()
for i in 1 2 3; do
	workers+=("$("$LB" run -d --network none --name "worker-$i" -v models:/models:ro busybox)")
done
show "$LB" ps
for w in "${workers[@]}"; do show "$LB" exec "$w" cat /models/weights; done
show "$LB" rm -f "${workers[@]}"
cd - >/dev/null

step "what is left: the volumes, and no sandbox"
show "$LB" volume ls
show "$LB" ps -a
