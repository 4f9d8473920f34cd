package nvmf

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/nvmeof/host"
	"github.com/strata-storage/strata/nvmeof/status"
	"github.com/strata-storage/strata/reactor"
)

// Reconnect backoff of a channel's queue.
const (
	reconnectMin = 50 * time.Millisecond
	reconnectMax = 5 * time.Second
)

// errTimedOut resets a queue whose command timed out.
var errTimedOut = errors.New("nvmf: a command timed out: queue reset")

// backend is one channel's path to the remote namespace: its own I/O
// queue on the channel's reactor. Reactor-owned but for stop.
type backend struct {
	d   *Device
	r   *reactor.Reactor
	qid uint16
	bs  uint64

	q       *host.Queue // nil while (re)connecting
	waiting bdev.RequestQueue
	cmds    []cmd
	free    []*cmd
	closed  bool
	stop    atomic.Bool // Close was called: a connect in progress gives up
	faulted faultTask   // the device is faulted: fail what waits
}

// faultTask fails a faulted device's waiting requests on the channel's
// reactor.
type faultTask struct{ b *backend }

func (t *faultTask) Run(*reactor.Reactor) {
	b := t.b
	for req := b.waiting.Pop(); req != nil; req = b.waiting.Pop() {
		req.Complete(bdev.StatusNotReady)
	}
}

// cmd carries one bdev request to the queue, as one host command or, past
// a command's limits (MDTS, NLB), several in turn.
type cmd struct {
	b       *backend
	hr      host.Request
	req     *bdev.Request
	q       *host.Queue // the queue it went to
	lba     uint64
	left    uint32 // blocks still to do, this command's included
	off     uint64 // bytes of the buffer done
	n       uint32 // blocks of the command in flight
	aborted bool
	dsm     [host.DSMRangeSize]byte
}

func newBackend(d *Device, r *reactor.Reactor, qid uint16) *backend {
	b := &backend{d: d, r: r, qid: qid, bs: uint64(d.Info().BlockSize), cmds: make([]cmd, d.opts.QueueDepth)}
	b.faulted.b = b
	for i := range b.cmds {
		c := &b.cmds[i]
		c.b = b
		c.hr.Callback = b.done
		c.hr.Tag = uint64(i)
		b.free = append(b.free, c)
	}
	return b
}

// connect connects the channel's queue, again and again with a backoff
// until it works, the channel closes or the device faults, and hands it to
// the reactor.
func (b *backend) connect() {
	delay := reconnectMin
	for !b.stop.Load() {
		if b.d.Err() != nil {
			b.r.Post(&b.faulted) // what waited for this queue
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
		q, err := b.d.connectQueue(ctx, b.r, b.qid)
		cancel()
		if err == nil {
			if b.r.Post(reactor.TaskFunc(func(*reactor.Reactor) { b.ready(q) })) != nil {
				q.Close() // the reactor is gone
			}
			return
		}
		time.Sleep(delay)
		delay = min(2*delay, reconnectMax)
	}
}

// ready takes a connected queue and starts the requests that waited.
func (b *backend) ready(q *host.Queue) {
	if b.closed {
		q.Shutdown(host.ErrClosed)
		return
	}
	b.q = q
	b.startWaiting()
}

// lost drops a queue that ended and connects another.
func (b *backend) lost(q *host.Queue) {
	if b.q != q || b.closed {
		return
	}
	b.q = nil
	go b.connect()
}

func (b *backend) Submit(req *bdev.Request) {
	if b.d.faultErr.Load() != nil {
		req.Status = bdev.StatusNotReady
		b.r.Defer(req) // never complete inside Submit
		return
	}
	if b.q != nil && b.q.Ended() {
		b.lost(b.q)
	}
	if b.q == nil || len(b.free) == 0 || !b.waiting.Empty() {
		b.waiting.Push(req)
		return
	}
	b.start(req)
}

func (b *backend) startWaiting() {
	for b.q != nil && len(b.free) > 0 && !b.waiting.Empty() {
		if b.q.Ended() {
			b.lost(b.q)
			return
		}
		b.start(b.waiting.Pop())
	}
}

func (b *backend) start(req *bdev.Request) {
	n := len(b.free)
	c := b.free[n-1]
	b.free = b.free[:n-1]
	c.req, c.q, c.aborted = req, b.q, false
	c.lba, c.left, c.off = req.LBA, req.Blocks, 0
	b.issue(c)
}

// issue sends c's next command.
func (b *backend) issue(c *cmd) {
	req, nsid := c.req, b.d.opts.NSID
	switch req.Op {
	case bdev.OpRead, bdev.OpWrite:
		c.n = min(c.left, b.d.maxBlocks)
		buf := req.Buf[c.off : c.off+uint64(c.n)*b.bs]
		if req.Op == bdev.OpRead {
			c.hr.SetRead(nsid, c.lba, c.n, buf)
		} else {
			c.hr.SetWrite(nsid, c.lba, c.n, req.FUA, buf)
		}
	case bdev.OpWriteZeroes:
		c.n = min(c.left, 1<<16)
		c.hr.SetWriteZeroes(nsid, c.lba, c.n)
	case bdev.OpUnmap:
		c.n = c.left // one range carries 2^32-1 blocks
		c.hr.SetDeallocate(nsid, []host.Range{{LBA: c.lba, Blocks: c.n}}, c.dsm[:])
	case bdev.OpFlush:
		c.n = c.left
		c.hr.SetFlush(nsid)
	}
	c.q.Start(&c.hr)
}

// done is every command's callback, on the reactor.
func (b *backend) done(hr *host.Request) {
	c := &b.cmds[hr.Tag]
	if hr.Err != nil {
		// The queue ended: what this command did is unknown.
		st := bdev.StatusNotReady
		if c.aborted {
			st = bdev.StatusAborted
		}
		b.lost(c.q)
		b.finish(c, st)
		return
	}
	st := status.FromNVMe(c.req.Op, hr.Status)
	if st == bdev.StatusOK && c.left > c.n {
		c.lba += uint64(c.n)
		c.off += uint64(c.n) * b.bs
		c.left -= c.n
		b.issue(c)
		return
	}
	b.finish(c, st)
}

func (b *backend) finish(c *cmd, st bdev.Status) {
	req := c.req
	c.req, c.q = nil, nil
	b.free = append(b.free, c)
	req.Complete(st)
	b.startWaiting()
}

// Timeout bounds each request (bdev.Aborter).
func (b *backend) Timeout() time.Duration { return b.d.opts.Timeout }

// Abort ends a request past its timeout (bdev.Aborter). One still waiting
// finishes at once. One on the wire cannot be taken back on its own: the
// queue is reset, as Linux's host does, and every command on it finishes
// once the queue has given it back (this one StatusAborted, the others
// StatusNotReady); the channel then connects a new queue.
func (b *backend) Abort(req *bdev.Request) {
	if b.waiting.Remove(req) {
		req.Complete(bdev.StatusAborted)
		return
	}
	for i := range b.cmds {
		if c := &b.cmds[i]; c.req == req {
			c.aborted = true
			c.q.Shutdown(errTimedOut)
			return
		}
	}
}

// Close closes the channel's queue; nothing is in flight.
func (b *backend) Close() error {
	b.closed = true
	b.stop.Store(true)
	if b.q != nil {
		b.q.Shutdown(host.ErrClosed)
		b.q = nil
	}
	b.d.releaseQID(b.qid)
	return nil
}
