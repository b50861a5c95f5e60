# lightbox: build, test, demo and benchmark entry points.
# Run as root on Debian 12 from a fresh clone: `make test`, `make demo`.

export PATH := /usr/local/go/bin:$(PATH)
export CGO_ENABLED := 0

GO        ?= go
BIN       := bin/lightbox
# The tags every build of the lightbox binary gets (hack/test.sh and
# bench/run.sh use the same). urfave_cli_no_docs leaves out urfave/cli's
# man-page and markdown generators (and blackfriday's init tables): the
# CLI never calls them. `go install` without it builds the same CLI.
export LIGHTBOX_TAGS ?= urfave_cli_no_docs
# Where `make debian-base` and `make test` keep the debootstrap tree (and
# its tarball) between runs: once per machine, reused while it checks out.
export DEBIAN_BASE_DIR ?= /var/cache/lightbox/debian-bookworm
export DEBIAN_MIRROR ?= http://deb.debian.org/debian

.PHONY: all deps generate build test e2e demo bench debian-base clean

all: build

## deps: install the Debian packages, the Go modules and the device modes
## the tests and the demo need (fast when all is already there).
deps:
	@hack/deps.sh

## generate: the lean sandbox init carried inside the binary
## (internal/initbin; rewritten only when nsinit or its leaves changed).
generate:
	@cd internal/initbin && $(GO) generate

## build: the static binary bin/lightbox, a copy of what the linker wrote
## (bin/lightbox.link): the linker writes through a shared mapping, which
## leaves the file's page cache in small pages, and every start of such a
## file faults more until those pages are dropped (`lightbox version`
## 2.96 ms against 2.49 for a copy: bench/NOTES.md, 2026-12-01). A copy is
## what install(1), dpkg or a container image leave.
build: generate
	@mkdir -p bin
	$(GO) build -trimpath -tags '$(LIGHTBOX_TAGS)' -o $(BIN).link ./cmd/lightbox
	@cp $(BIN).link $(BIN).tmp && mv -f $(BIN).tmp $(BIN)

## test: go vet, then every package's tests as root and as the
## unprivileged user lbtest (strict mode with LIGHTBOX_TEST_STRICT=1).
## PKGS=./overlay limits the packages. Knobs (hack/test.sh):
## LIGHTBOX_TEST_PASSES=root|rootless, LIGHTBOX_TEST_RUN=regexp,
## LIGHTBOX_TEST_COUNT=N (each test N times: proof a flaky test is fixed),
## LIGHTBOX_TEST_TIMEOUT=seconds per test binary (times N),
## LIGHTBOX_TEST_SERIAL=1 (the root and rootless passes one after the
## other, not at once).
test: deps generate
	@hack/test.sh $(PKGS)

## e2e: the README's first flow for real (network needed): node-ci built
## FROM debian with apt through cache volumes, three parallel npm ci &&
## npm test on a :O project with a shared npm-cache volume (cold, warm,
## offline), then gcc in a builder handing a binary to a busybox runtime.
## Its store (.e2e/store) is kept: a rerun reuses its caches.
e2e: deps build
	@bash hack/e2e.sh

## demo: what a newcomer runs first.
demo: deps build
	@bash hack/demo.sh

## bench: lightbox beside runc, crun, bubblewrap and podman (issue 8).
bench: deps build
	@bash bench/run.sh

## debian-base: a debootstrap --variant=minbase bookworm tree, made once
## and reused while it checks out, imported as the snapshot "debian".
debian-base: deps build
	@hack/debian-base.sh import "$(DEBIAN_BASE_DIR)" "$(DEBIAN_MIRROR)" "$(CURDIR)/$(BIN)"

clean:
	rm -rf bin bench/work
