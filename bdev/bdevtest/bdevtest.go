// Package bdevtest is the conformance suite every block device passes, and
// the helpers to drive a device from a test.
package bdevtest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/internal/iomem"
	"github.com/strata-storage/strata/reactor"
)

// Client drives one channel from test goroutines: each call hands the
// request to the channel's reactor and waits for its callback.
type Client struct {
	Ch *bdev.Channel
}

// Open opens a channel to dev on r, closed at the end of the test.
func Open(t testing.TB, dev bdev.Device, r *reactor.Reactor) *Client {
	t.Helper()
	ch, err := bdev.Open(dev, r)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, r.Call(func(*reactor.Reactor) error { return ch.Close() }))
	})
	return &Client{Ch: ch}
}

// call is one synchronous request; it is a reactor.Task.
type call struct {
	ch   *bdev.Channel
	req  bdev.Request
	done chan struct{}
	// inSubmit is set while Submit runs: a callback seeing it broke the
	// "never complete inside Submit" rule.
	inSubmit     bool
	calledInside bool
}

func (c *call) Run(*reactor.Reactor) {
	c.inSubmit = true
	c.ch.Submit(&c.req)
	c.inSubmit = false
}

func (c *call) callback(*bdev.Request) {
	c.calledInside = c.inSubmit
	close(c.done)
}

// Do runs one request and returns its status. It fails the test if the
// device called back from inside Submit.
func (cl *Client) Do(t testing.TB, op bdev.Op, lba uint64, blocks uint32, buf []byte) bdev.Status {
	t.Helper()
	req := cl.Start(op, lba, blocks, buf)
	return req.Wait(t)
}

// waitLimit bounds Wait: no request of a test device takes a minute.
const waitLimit = time.Minute

// Pending is a request started by Start.
type Pending struct{ c *call }

// Start submits a request without waiting for it.
func (cl *Client) Start(op bdev.Op, lba uint64, blocks uint32, buf []byte) Pending {
	c := &call{ch: cl.Ch, done: make(chan struct{})}
	c.req = bdev.Request{Op: op, LBA: lba, Blocks: blocks, Buf: buf, Callback: c.callback}
	if err := cl.Ch.Reactor().Post(c); err != nil {
		panic(err)
	}
	return Pending{c}
}

// StartFUA is Start for a write with FUA set.
func (cl *Client) StartFUA(lba uint64, blocks uint32, buf []byte) Pending {
	c := &call{ch: cl.Ch, done: make(chan struct{})}
	c.req = bdev.Request{Op: bdev.OpWrite, LBA: lba, Blocks: blocks, Buf: buf, FUA: true, Callback: c.callback}
	if err := cl.Ch.Reactor().Post(c); err != nil {
		panic(err)
	}
	return Pending{c}
}

// Wait waits for the request and returns its status.
func (p Pending) Wait(t testing.TB) bdev.Status {
	t.Helper()
	select {
	case <-p.c.done:
	case <-time.After(waitLimit):
		// A request that never finishes is a bug of its own; failing here
		// names it instead of leaving the test binary's timeout to.
		t.Fatalf("%v of %d blocks at LBA %d did not finish in %v", p.c.req.Op, p.c.req.Blocks, p.c.req.LBA, waitLimit)
	}
	require.False(t, p.c.calledInside, "callback ran inside Submit")
	return p.c.req.Status
}

// Done is closed once the request has finished.
func (p Pending) Done() <-chan struct{} { return p.c.done }

// Request returns the finished request (after Wait).
func (p Pending) Request() *bdev.Request { return &p.c.req }

// Buffers returns n bytes of aligned memory outside the Go heap, freed at the
// end of the test.
func Buffers(t testing.TB, n int) []byte {
	t.Helper()
	r, err := iomem.Map(n)
	require.NoError(t, err)
	t.Cleanup(func() { r.Unmap() })
	return r.Bytes()[:n]
}

// Reactors starts a group of reactors for the test, one per allowed core.
func Reactors(t testing.TB) *reactor.Group {
	t.Helper()
	g, err := reactor.StartGroup(nil, reactor.Config{})
	require.NoError(t, err)
	t.Cleanup(g.Stop)
	return g
}

// Fill writes a pattern that identifies seed and each byte's position.
func Fill(b []byte, seed uint64) {
	x := seed*0x9E3779B97F4A7C15 + 1
	for i := 0; i+8 <= len(b); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i], b[i+1], b[i+2], b[i+3] = byte(x), byte(x>>8), byte(x>>16), byte(x>>24)
		b[i+4], b[i+5], b[i+6], b[i+7] = byte(x>>32), byte(x>>40), byte(x>>48), byte(x>>56)
	}
}
