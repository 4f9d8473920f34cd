package bdev

import (
	"errors"
	"strconv"

	"golang.org/x/sys/unix"
)

// Status is the outcome of a request. The NVMe layer translates it (see the
// comment on each value).
type Status uint8

const (
	StatusOK Status = iota
	// StatusInvalidRange: the LBA span lies (partly) beyond the device's end.
	// NVMe: LBA Out of Range.
	StatusInvalidRange
	// StatusInvalidRequest: a malformed request (no blocks, a buffer of the
	// wrong size or alignment, too large). NVMe: Invalid Field in Command.
	StatusInvalidRequest
	// StatusUnsupported: the device cannot do this operation. NVMe: Invalid
	// Opcode.
	StatusUnsupported
	// StatusNoSpace: the backing store is full (ENOSPC, EDQUOT). NVMe:
	// Capacity Exceeded.
	StatusNoSpace
	// StatusReadError: the medium failed a read (EIO). NVMe: Unrecovered
	// Read Error.
	StatusReadError
	// StatusWriteFault: the medium failed a write, flush or zeroing (EIO).
	// NVMe: Write Fault.
	StatusWriteFault
	// StatusNotReady: the device is closed or going away. NVMe: Namespace
	// Not Ready.
	StatusNotReady
	// StatusAborted: the request was cancelled. NVMe: Command Abort
	// Requested.
	StatusAborted
	// StatusInternal: anything else. NVMe: Internal Error.
	StatusInternal
	// StatusTimeout: the device did not finish the request within its
	// timeout and the request was aborted. NVMe: Command Abort Requested.
	StatusTimeout
	numStatus
)

var statusNames = [numStatus]string{
	StatusOK: "ok", StatusInvalidRange: "lba out of range", StatusInvalidRequest: "invalid request",
	StatusUnsupported: "unsupported operation", StatusNoSpace: "no space", StatusReadError: "read error",
	StatusWriteFault: "write fault", StatusNotReady: "not ready", StatusAborted: "aborted",
	StatusInternal: "internal error", StatusTimeout: "timed out",
}

func (s Status) String() string {
	if s < numStatus {
		return statusNames[s]
	}
	return "status(" + strconv.Itoa(int(s)) + ")"
}

// Err returns nil for StatusOK and an error wrapping ErrStatus otherwise,
// for control paths that want an error value (it allocates).
func (s Status) Err() error {
	if s == StatusOK {
		return nil
	}
	return &StatusError{s}
}

// ErrStatus matches every StatusError with errors.Is.
var ErrStatus = errors.New("bdev: request failed")

// StatusError carries a failed request's Status as an error.
type StatusError struct{ Status Status }

func (e *StatusError) Error() string        { return "bdev: " + e.Status.String() }
func (e *StatusError) Is(target error) bool { return target == ErrStatus }

// StatusFromErrno maps a failed system call of operation op to a Status.
func StatusFromErrno(op Op, errno unix.Errno) Status {
	switch errno {
	case 0:
		return StatusOK
	case unix.ENOSPC, unix.EDQUOT, unix.EFBIG:
		return StatusNoSpace
	case unix.EIO, unix.ENODATA, unix.EBADMSG:
		if op == OpRead {
			return StatusReadError
		}
		return StatusWriteFault
	case unix.EOPNOTSUPP:
		return StatusUnsupported
	case unix.EINVAL:
		return StatusInvalidRequest
	case unix.ECANCELED:
		return StatusAborted
	case unix.ENODEV, unix.ENXIO, unix.EBADF, unix.ESHUTDOWN:
		return StatusNotReady
	}
	return StatusInternal
}
