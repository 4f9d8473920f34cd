package status

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/nvmeof/nvme"
)

// Every outcome has a status of its own, which reads back as the same
// outcome, but for a timeout: hosts hear an abort.
func TestRoundTrip(t *testing.T) {
	seen := map[nvme.Status]bdev.Status{}
	for o := bdev.StatusOK; o <= bdev.StatusTimeout; o++ {
		st := ToNVMe(o)
		want := o
		if o == bdev.StatusTimeout {
			want = bdev.StatusAborted
		}
		require.Equal(t, want, FromNVMe(bdev.OpUnmap, st), "%v -> %v", o, st)
		if prev, dup := seen[st]; dup && o != bdev.StatusTimeout {
			t.Fatalf("%v and %v both answer %v", prev, o, st)
		}
		seen[st] = o
	}
}

func TestTable(t *testing.T) {
	for _, c := range []struct {
		op   bdev.Op
		st   nvme.Status
		want bdev.Status
	}{
		{bdev.OpRead, nvme.Success, bdev.StatusOK},
		{bdev.OpRead, nvme.LBAOutOfRange, bdev.StatusInvalidRange},
		{bdev.OpRead, nvme.MakeStatus(nvme.SCTGeneric, 0x80), bdev.StatusInvalidRange}, // without DNR
		{bdev.OpWrite, nvme.CapacityExceeded, bdev.StatusNoSpace},
		{bdev.OpWrite, nvme.DataSGLLengthInvalid, bdev.StatusInvalidRequest},
		{bdev.OpRead, nvme.InvalidNamespace, bdev.StatusNotReady},
		{bdev.OpRead, nvme.AbortSQDeleted, bdev.StatusAborted},
		{bdev.OpRead, nvme.DataTransferError, bdev.StatusReadError},
		{bdev.OpWrite, nvme.DataTransferError, bdev.StatusWriteFault},
		{bdev.OpFlush, nvme.AccessDenied, bdev.StatusWriteFault},
		{bdev.OpUnmap, nvme.CommandSequenceError, bdev.StatusInternal},
	} {
		require.Equal(t, c.want, FromNVMe(c.op, c.st), "%v %v", c.op, c.st)
	}
	require.Equal(t, nvme.InternalError, ToNVMe(bdev.Status(200)))
}
