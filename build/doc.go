// Package build turns a recipe (a Dockerfile) into the steps of a
// snapshot build and runs them through a Backend it is given: the root
// package's, which launches sandboxes and commits layers. It never
// imports runtime, snapshot or volstore.
//
// The recipe is parsed by buildkit's own Dockerfile parser and its
// instructions package (github.com/moby/buildkit/frontend/dockerfile/...:
// the grammar, flags, heredocs and variable expansion of docker build,
// not a second reading of them); .dockerignore files are matched by
// github.com/moby/patternmatcher, docker's own matcher.
//
// Vocabulary. A recipe has stages (FROM … up to the next FROM); each
// instruction of a stage is a step. A step's result is an image, named by
// the backend's ID for it. Each step has a cache key: the SHA-256 of its
// parent image's ID, the instruction's text (with its heredocs), the
// build arguments in scope and, for COPY and ADD, the digest of what it
// copies (paths, modes, link targets and contents; not times). A step
// whose key the backend has cached is not run again (unless NoCache).
// Configuration steps (ENV, WORKDIR, USER, LABEL, EXPOSE, ENTRYPOINT,
// CMD, SHELL, ARG) change the image configuration only; RUN, COPY and ADD
// add one layer each.
//
// Supported: FROM (a snapshot or scratch, or an earlier stage), RUN
// (shell and exec forms, heredocs, --mount=type=cache|bind|tmpfs), SHELL,
// ENV, ARG, WORKDIR, USER, COPY and ADD from the context (--chown,
// --chmod, --exclude, globs, .dockerignore; ADD unpacks a local tar
// archive), COPY --from an earlier stage (by name or number) or a
// snapshot (owners kept unless --chown; patterns; a source that
// leaves the image's root through ".." or a symlink is an error), LABEL,
// EXPOSE, STOPSIGNAL, ENTRYPOINT, CMD. Options.Target stops after the
// named stage. Anything else — an instruction (ONBUILD, HEALTHCHECK,
// VOLUME, MAINTAINER), a flag (--link, --parents, ADD --checksum,
// RUN --network, --security, FROM --platform), a URL or a secret or ssh
// mount — is an error naming it and its line, before anything runs.
//
// A stage whose base sets no PATH (scratch, or an image without one) has
// the default PATH (/usr/local/sbin:…:/bin) in its configuration, as
// docker's buildkit and podman give it: ENV PATH=/x:$PATH keeps /bin.
//
// A COPY --from step's cache key holds, besides its parent and text, the
// source image's layer chain and the digest of the layer tar it copies.
// A stage's image is a build-cache entry like any step's: no stage but
// the one the build returns gets a name.
package build
