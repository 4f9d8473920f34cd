package engine

import (
	"errors"
	"fmt"
)

// Kinds of engine errors, matched with errors.Is. The control API maps each
// to an HTTP status; an error of no kind is an internal error.
var (
	// ErrInvalid: a request that can never succeed as written (a bad name,
	// size, NQN, address; shrinking a volume). HTTP 400.
	ErrInvalid = errors.New("engine: invalid request")
	// ErrNotFound: no object of that name. HTTP 404.
	ErrNotFound = errors.New("engine: not found")
	// ErrConflict: the request clashes with existing objects (the name
	// exists with another spec, the object is in use, a faulted pool).
	// HTTP 409.
	ErrConflict = errors.New("engine: conflict")
	// ErrNoSpace: the pool has no free extent large enough. HTTP 409.
	ErrNoSpace = errors.New("engine: no space")
	// ErrTargetUnavailable: shares need the NVMe-oF target, which is not
	// running in this daemon. HTTP 503.
	ErrTargetUnavailable = errors.New("engine: NVMe-oF target not available")
	// ErrDevice: a device could not be opened or failed an operation.
	// HTTP 422.
	ErrDevice = errors.New("engine: device error")
	// ErrExport: the exporter refused or failed a subsystem change. HTTP 502.
	ErrExport = errors.New("engine: export failed")
	// ErrCorruptState: the state file cannot be trusted. The daemon refuses
	// to start rather than reset it.
	ErrCorruptState = errors.New("engine: corrupt state file")
	// ErrFutureState: the state file was written by a newer Strata.
	ErrFutureState = errors.New("engine: state file from a newer version")
	// ErrInterrupted: the caller's context ended while it waited for device
	// work (clearing a volume's space); the error says whether the
	// operation goes on in the background (creating, resizing: it does) or
	// not. It also wraps the context's error. HTTP 504.
	ErrInterrupted = errors.New("engine: stopped waiting")
	// ErrClosed: the engine is shutting down. HTTP 503.
	ErrClosed = errors.New("engine: shutting down")
)

// kindError is an error of one kind whose message is only its own text
// (the kind is for errors.Is and the API's code, not for people).
type kindError struct {
	kind  error
	msg   string
	cause error
}

func (e *kindError) Error() string { return e.msg }

func (e *kindError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// errorf returns an error of kind with a formatted message; a %w verb in
// format also makes its operand matchable with errors.Is.
func errorf(kind error, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &kindError{kind: kind, msg: err.Error(), cause: errors.Unwrap(err)}
}

// hasKind reports an error that already carries a kind.
func hasKind(err error) bool {
	var ke *kindError
	return errors.As(err, &ke)
}
