package bdevtest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/reactor"
)

// submitter is a preallocated task that submits its request; the callback
// signals a preallocated channel. Nothing here allocates per I/O, so any
// allocation counted is the device's or the reactor's.
type submitter struct {
	ch   *bdev.Channel
	req  bdev.Request
	done chan bdev.Status
}

func (s *submitter) Run(*reactor.Reactor)     { s.ch.Submit(&s.req) }
func (s *submitter) callback(r *bdev.Request) { s.done <- r.Status }

// RequireNoAllocs checks that each of ops, blocks blocks at a time through
// c (with buf for reads and writes), allocates nothing per I/O. Successive
// I/Os move through the first span blocks of the device.
func RequireNoAllocs(t *testing.T, c *Client, ops []bdev.Op, blocks uint32, span uint64, buf []byte) {
	t.Helper()
	s := &submitter{ch: c.Ch, done: make(chan bdev.Status, 1)}
	s.req = bdev.Request{Blocks: blocks, Buf: buf, Callback: s.callback}
	for _, op := range ops {
		s.req.Op = op
		n := uint64(0)
		allocs := testing.AllocsPerRun(300, func() {
			s.req.LBA = n * uint64(blocks) % span
			n++
			c.Ch.Reactor().Send(s)
			if st := <-s.done; st != bdev.StatusOK {
				panic(op.String() + ": " + st.String())
			}
		})
		require.Zero(t, allocs, "%v allocates per I/O", op)
	}
}
