package apiserver

import (
	"context"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/beamhop/lightbox"
)

// JSON-RPC 2.0's own error codes.
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
	codeMethodNotFound = -32601
	codeInvalidParams  = -32602
)

// Kind is the stable string in an error's data.code that clients match
// on; each has a fixed JSON-RPC error code (docs/api-protocol.md).
type Kind string

// Error kinds. The first five are lightbox's sentinel errors.
const (
	KindNotFound         Kind = "not_found"         // lightbox.ErrNotFound
	KindExists           Kind = "exists"            // lightbox.ErrExists
	KindInUse            Kind = "in_use"            // lightbox.ErrInUse
	KindInvalidName      Kind = "invalid_name"      // lightbox.ErrInvalidName
	KindQuotaUnsupported Kind = "quota_unsupported" // lightbox.ErrQuotaUnsupported
	KindExit             Kind = "exit"              // *lightbox.ExitError: data has the result
	KindCommandNotFound  Kind = "command_not_found" // lightbox.ErrCommandNotFound
	KindNotExecutable    Kind = "not_executable"    // lightbox.ErrNotExecutable
	KindNotRunning       Kind = "not_running"       // lightbox.ErrNotRunning
	KindNoCommand        Kind = "no_command"        // lightbox.ErrNoCommand
	KindTruncated        Kind = "output_truncated"  // output past lightbox.OutputLimit: data has the result
	KindCanceled         Kind = "canceled"          // the server is shutting down or a timeout passed: data has a command's result
	KindInvalidParams    Kind = "invalid_params"
	KindMethodNotFound   Kind = "method_not_found"
	KindInvalidRequest   Kind = "invalid_request"
	KindParseError       Kind = "parse_error"
	KindError            Kind = "error" // anything else: the message says what
)

// rpcCode is each kind's JSON-RPC error code.
var rpcCode = map[Kind]int{
	KindError:            -32000,
	KindNotFound:         -32001,
	KindExists:           -32002,
	KindInUse:            -32003,
	KindInvalidName:      -32004,
	KindQuotaUnsupported: -32005,
	KindExit:             -32006,
	KindCommandNotFound:  -32007,
	KindNotExecutable:    -32008,
	KindNotRunning:       -32009,
	KindTruncated:        -32010,
	KindCanceled:         -32011,
	KindNoCommand:        -32012,
	KindInvalidParams:    codeInvalidParams,
	KindMethodNotFound:   codeMethodNotFound,
	KindInvalidRequest:   codeInvalidRequest,
	KindParseError:       codeParseError,
}

// rpcError is a JSON-RPC error object.
type rpcError struct {
	Code    int       `json:"code"`
	Message string    `json:"message"`
	Data    errorData `json:"data"`
}

// errorData is an error's data member: the stable kind and, for exit,
// output_truncated and a command's canceled, the command's result
// (writeJSON writes it).
type errorData struct {
	Code Kind `json:"code"`
	*ExecResult
}

// requestError is an error the server made itself (bad params, unknown
// method), with its kind.
type requestError struct {
	kind Kind
	msg  string
}

func (e *requestError) Error() string { return e.msg }

func invalidParams(msg string) error { return &requestError{KindInvalidParams, msg} }

// errTruncated: a command wrote more than lightbox.OutputLimit bytes to
// a stream; the result holds the first OutputLimit bytes of each.
var errTruncated = errors.New("output truncated")

// resultError carries a command's result with the error its exec returned.
type resultError struct {
	err error
	res *ExecResult
}

func (e *resultError) Error() string { return e.err.Error() }
func (e *resultError) Unwrap() error { return e.err }

// KindOf maps err to its kind; the order matters where one error wraps
// several sentinels (a command's exit before all else).
func KindOf(err error) Kind {
	var re *requestError
	var ee *lightbox.ExitError
	switch {
	case errors.As(err, &re):
		return re.kind
	case errors.As(err, &ee):
		return KindExit
	case errors.Is(err, lightbox.ErrInvalidName):
		return KindInvalidName
	case errors.Is(err, lightbox.ErrQuotaUnsupported):
		return KindQuotaUnsupported
	case errors.Is(err, lightbox.ErrCommandNotFound):
		return KindCommandNotFound
	case errors.Is(err, lightbox.ErrNotExecutable):
		return KindNotExecutable
	case errors.Is(err, lightbox.ErrNotRunning):
		return KindNotRunning
	case errors.Is(err, lightbox.ErrNoCommand):
		return KindNoCommand
	case errors.Is(err, lightbox.ErrNotFound):
		return KindNotFound
	case errors.Is(err, lightbox.ErrExists):
		return KindExists
	case errors.Is(err, lightbox.ErrInUse):
		return KindInUse
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return KindCanceled
	case errors.Is(err, errTruncated):
		return KindTruncated
	}
	return KindError
}

// toRPCError turns err into the error object of a response.
func toRPCError(err error) *rpcError {
	k := KindOf(err)
	e := &rpcError{Code: rpcCode[k], Message: err.Error(), Data: errorData{Code: k}}
	var re *resultError
	if errors.As(err, &re) && (k == KindExit || k == KindTruncated || k == KindCanceled) {
		e.Data.ExecResult = re.res
	}
	if !utf8.ValidString(e.Message) {
		e.Message = strings.ToValidUTF8(e.Message, "\uFFFD")
	}
	return e
}
