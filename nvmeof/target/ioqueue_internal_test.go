package target

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/reactor/mpsc"
)

// A reader waiting for a command slot sleeps until the reactor frees one,
// and no free is missed: each round leaves the reader waiting on an empty
// queue while another goroutine frees the slot at about the same moment. A
// lost wake-up shows as a fatal error after slotWaitLimit.
func TestTakeSlotWaitsForFree(t *testing.T) {
	const slots = 4
	free, err := mpsc.New[uint16](slots)
	require.NoError(t, err)
	q := &ioQueue{c: &conn{sqsize: slots / 2}, cmds: make([]command, slots), free: free, slotFreed: make(chan struct{}, 1)}
	for i := range q.cmds {
		q.cmds[i].q, q.cmds[i].idx = q, uint16(i)
		free.Push(uint16(i))
	}
	var held []*command
	for range slots {
		cmd, err := q.takeSlot()
		require.NoError(t, err)
		held = append(held, cmd)
	}
	for round := range 2000 {
		cmd := held[round%slots]
		freed := make(chan struct{})
		go func() {
			if round%2 == 0 {
				time.Sleep(10 * time.Microsecond) // after the reader started waiting, often
			}
			q.freeSlot(cmd)
			close(freed)
		}()
		got, err := q.takeSlot()
		require.NoError(t, err, "round %d", round)
		require.Same(t, cmd, got)
		<-freed
	}
	require.EqualValues(t, slots, q.outstanding.Load())
}
