// Package apiserver serves lightbox's Go API as JSON-RPC 2.0 over a pair
// of byte streams, newline-delimited: `lightbox api` runs it on its stdin
// and stdout, so that programs in other languages (the TypeScript client
// in clients/typescript) launch sandboxes, exec in them and manage volumes
// through the same in-process API a Go program uses, with no daemon. The
// protocol — methods, parameters, results and error codes — is specified
// in docs/api-protocol.md; that document, not this package's Go names, is
// the stable interface.
//
// Why a package of its own: the server is a front end beside cmd/lightbox
// (it imports package lightbox, as the CLI does), not one of the leaves
// under internal/ that the root package composes; and cmd/lightbox holds
// flags and output only. It is internal because its Go API is not a
// contract: embedders talk the protocol, or call package lightbox.
//
// Lifecycle: Serve reads requests until its input ends (the client closed
// the pipe or died) or its context ends (a signal), answers each request
// from its own goroutine (so one slow exec never holds up another
// sandbox's), then destroys every sandbox it launched that was not
// detached, and returns. Sandboxes it only attached to are left alone.
// A streaming exec ("stream": true) also writes exec.output notifications
// of its command's output as it comes, all before its response
// (stream.go), and a streaming build (snapshot.build) build.step and
// build.output notifications of its steps and RUN output (build.go);
// every line, response or notification, is written whole under one lock.
// An interactive exec ("stdinStream": true, and "tty") takes its stdin
// from exec.input requests naming its id, and exec.resize and
// exec.signal act on it (input.go): these are carried out in the order
// their lines were read, and never wait on the command (its input is
// queued).
// A sandbox's main command after launch, by name (lifecycle.go):
// sandbox.wait, sandbox.logs (with follow, logs.output notifications of
// the same shape, until the sandbox stops running), sandbox.inspect,
// sandbox.remove (any sandbox of the store, as `lightbox rm`) and
// server.gc. A wait or a follow that is cancelled leaves the sandbox as
// it is.
// A warm pool (sandbox.prewarm) is the Runtime's, not the server's: the
// caller's Runtime.Close destroys it (cmd/lightbox closes it once Serve
// returns), and its sandboxes die with the process like any it launched.
//
// Vocabulary: an *owned* sandbox is one this server launched and has not
// detached; a *handle* is any sandbox the server holds by name (owned or
// attached). Requests name sandboxes; a request on a name the server holds
// no handle for attaches to it first.
package apiserver
