package target_test

import (
	"testing"

	"github.com/strata-storage/strata/nvmeof/host"
)

// BenchmarkQD1Read4K is a 4 KiB read round trip over loopback through the
// Go host and the target on a RAM namespace: ns/op is the latency at queue
// depth 1, allocs/op the allocations of host and target together.
func BenchmarkQD1Read4K(b *testing.B) {
	t := &testing.T{}
	f := newFixture(t, nil)
	defer f.t.Close()
	c, err := host.Connect(ctx(t), f.addr, testNQN, host.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	l := &looper{q: c.IOQueues()[0], done: make(chan struct{}, 1)}
	l.req.Callback = l.callback
	l.req.SetRead(1, 8, 8, make([]byte, 4096))
	b.ReportAllocs()
	b.ResetTimer()
	l.left = b.N
	l.q.Submit(&l.req)
	<-l.done
}
