package target_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/nvmeof/host"
	"github.com/strata-storage/strata/reactor"
)

// TestIdleConnectionLetsReactorsSleep checks that an I/O queue's pending
// receive does not count as I/O in flight: with a connected host that has
// gone quiet, every reactor sleeps once Config.Spin is up, even though
// SpinIO would keep one spinning for an hour.
func TestIdleConnectionLetsReactorsSleep(t *testing.T) {
	f := newFixtureOn(t, reactor.Config{Spin: 50 * time.Microsecond, SpinIO: time.Hour}, nil)
	c := connect(t, f, host.Config{IOQueues: 2})
	for _, q := range c.IOQueues() {
		var req host.Request
		req.SetRead(1, 0, 8, make([]byte, 8*512))
		do(q, &req)
		require.NoError(t, req.Err)
		require.True(t, req.Status.OK(), "read: %v", req.Status)
	}
	time.Sleep(50 * time.Millisecond) // a thousand spins' worth
	for _, r := range f.g.Reactors() {
		before := r.Counters().Wakeups
		require.NoError(t, r.Call(func(*reactor.Reactor) error { return nil }))
		require.Greater(t, r.Counters().Wakeups, before, "reactor %d was still spinning", r.ID())
	}
}
