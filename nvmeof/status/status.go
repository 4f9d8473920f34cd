// Package status translates between block-device outcomes (bdev.Status)
// and NVMe statuses, both ways, from one table: the target answers a
// host's command with the NVMe status of its device's outcome, and the
// devices that talk NVMe (a drive through VFIO, a remote namespace) turn
// a controller's answer back into an outcome. One table keeps the two
// directions from drifting.
package status

import (
	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/nvmeof/nvme"
)

// pairs maps each outcome to the status a target answers with (the
// comments on bdev.Status name them). Read backwards, the first pair with
// a status gives its outcome.
var pairs = []struct {
	outcome bdev.Status
	status  nvme.Status
}{
	{bdev.StatusOK, nvme.Success},
	{bdev.StatusInvalidRange, nvme.LBAOutOfRange},
	{bdev.StatusInvalidRequest, nvme.InvalidField},
	{bdev.StatusUnsupported, nvme.InvalidOpcode},
	{bdev.StatusNoSpace, nvme.CapacityExceeded},
	{bdev.StatusReadError, nvme.UnrecoveredRead},
	{bdev.StatusWriteFault, nvme.WriteFault},
	{bdev.StatusNotReady, nvme.NamespaceNotReady},
	{bdev.StatusAborted, nvme.AbortRequested},
	{bdev.StatusTimeout, nvme.AbortRequested}, // a host knows no timeout of ours
	{bdev.StatusInternal, nvme.InternalError},
}

// received are statuses a controller may answer with that no outcome of
// ours is sent as, by kind.
var received = map[nvme.Status]bdev.Status{
	nvme.DataSGLLengthInvalid.Kind(): bdev.StatusInvalidRequest,
	nvme.InvalidNamespace.Kind():     bdev.StatusNotReady, // detached under us
	nvme.AbortSQDeleted.Kind():       bdev.StatusAborted,
}

// ToNVMe returns the NVMe status a target answers outcome with.
func ToNVMe(outcome bdev.Status) nvme.Status {
	for _, p := range pairs {
		if p.outcome == outcome {
			return p.status
		}
	}
	return nvme.InternalError
}

// FromNVMe returns the outcome of an op a controller answered with st.
// Only the status's kind counts (not DNR or More: controllers set them
// as they judge). A status of no known kind on a read is a read error, on
// a write or flush a write fault (the medium's outcome is unknown, so the
// data is not there), and an internal error on anything else.
func FromNVMe(op bdev.Op, st nvme.Status) bdev.Status {
	k := st.Kind()
	for _, p := range pairs {
		if p.status.Kind() == k {
			return p.outcome
		}
	}
	if o, ok := received[k]; ok {
		return o
	}
	switch op {
	case bdev.OpRead:
		return bdev.StatusReadError
	case bdev.OpWrite, bdev.OpFlush:
		return bdev.StatusWriteFault
	}
	return bdev.StatusInternal
}
