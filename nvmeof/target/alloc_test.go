package target_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/nvmeof/host"
)

// looper resubmits one preallocated request n times and signals when done,
// so the only allocations counted are the host's and the target's.
type looper struct {
	q    *host.Queue
	req  host.Request
	left int
	done chan struct{}
	bad  int
}

func (l *looper) callback(r *host.Request) {
	if r.Err != nil || !r.Status.OK() {
		l.bad++
	}
	l.left--
	if l.left == 0 {
		l.done <- struct{}{}
		return
	}
	l.q.Submit(&l.req)
}

// The target's read and write paths (io_uring socket receives and sends,
// reactor, bdev) allocate nothing per command: the allocations of
// 2000 commands are no more than those of 200.
func TestDataPathAllocatesNothingPerCommand(t *testing.T) {
	f := newFixture(t, nil)
	c := connect(t, f, host.Config{})
	for _, write := range []bool{false, true} {
		l := &looper{q: c.IOQueues()[0], done: make(chan struct{}, 1)}
		l.req.Callback = l.callback
		buf := make([]byte, 4096)
		if write {
			l.req.SetWrite(1, 8, 8, false, buf)
		} else {
			l.req.SetRead(1, 8, 8, buf)
		}
		run := func(n int) float64 {
			return testing.AllocsPerRun(3, func() {
				l.left = n
				l.q.Submit(&l.req)
				<-l.done
			})
		}
		run(100) // warm up buffers and pools
		small, large := run(200), run(2000)
		require.Zero(t, l.bad)
		require.LessOrEqual(t, large-small, 20.0, "write=%v: %v allocations for 200 commands, %v for 2000", write, small, large)
	}
}
