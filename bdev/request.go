package bdev

import (
	"time"

	"github.com/strata-storage/strata/reactor"
)

// Op is a block operation.
type Op uint8

const (
	OpRead Op = iota
	OpWrite
	OpFlush
	// OpWriteZeroes makes the span read back as zeroes; space may stay
	// allocated.
	OpWriteZeroes
	// OpUnmap deallocates the span; it reads back as zeroes afterwards (every
	// Strata device guarantees that, so the NVMe layer can say so in DLFEAT).
	OpUnmap
	numOps
)

var opNames = [numOps]string{"read", "write", "flush", "write-zeroes", "unmap"}

func (o Op) String() string {
	if o < numOps {
		return opNames[o]
	}
	return "op?"
}

// MaxIOBytes bounds one read or write; larger transfers are split above.
const MaxIOBytes = 32 << 20

// Request is one block I/O. The caller owns it and may reuse it once its
// Callback has run.
type Request struct {
	Op     Op
	LBA    uint64
	Blocks uint32 // 1-based count; unused by flush
	// Buf holds Blocks*BlockSize bytes for reads and writes, aligned to the
	// device's Info.BufAlign. The device owns it from Submit to Callback.
	Buf []byte
	// FUA makes a write durable before it completes (write-through).
	FUA bool
	// Callback is called on the channel's reactor when the request is done.
	Callback func(*Request)
	// Tag is the caller's, untouched by the device.
	Tag uint64

	// Set by the device before Callback.
	Status Status
	Errno  int32 // the system error behind Status, when there is one

	ch *Channel
	// The clock readings of a stack: the root's start, shared by its
	// children, and the end of the child that finished its parent last.
	startNs, endNs int64
	// Next links requests in backend queues (a backend's to use while it
	// owns the request).
	Next *Request

	// A child request (see Children) completes into parent, which has
	// pending children not yet finished.
	parent  *Request
	pending int32

	// On a channel with a timeout: the list of requests in flight, oldest
	// first, and whether the request is being aborted for its age.
	prevOld, nextOld *Request
	timedOut         bool
}

// Run completes the request on its reactor; backends hand it to
// reactor.Defer to complete outside Submit.
func (req *Request) Run(*reactor.Reactor) { req.ch.finish(req) }

// Complete records st and finishes the request now: for backends, from a
// completion handler (never from inside Submit).
func (req *Request) Complete(st Status) {
	req.Status = st
	req.ch.finish(req)
}

// Bytes returns the request's length in bytes for a device of blockSize.
func (req *Request) Bytes(blockSize uint32) uint64 { return uint64(req.Blocks) * uint64(blockSize) }

func nowNs() int64 { return time.Now().UnixNano() }

// RequestQueue is a FIFO of requests linked through Request.Next, for a
// backend holding requests back (no free slot yet). The zero value is
// empty; it belongs to the backend's reactor.
type RequestQueue struct{ head, tail *Request }

// Empty reports whether the queue holds no request.
func (q *RequestQueue) Empty() bool { return q.head == nil }

// Push appends req.
func (q *RequestQueue) Push(req *Request) {
	req.Next = nil
	if q.tail == nil {
		q.head = req
	} else {
		q.tail.Next = req
	}
	q.tail = req
}

// Peek returns the oldest request without removing it, or nil.
func (q *RequestQueue) Peek() *Request { return q.head }

// Pop removes and returns the oldest request, or nil.
func (q *RequestQueue) Pop() *Request {
	req := q.head
	if req == nil {
		return nil
	}
	q.head = req.Next
	if q.head == nil {
		q.tail = nil
	}
	req.Next = nil
	return req
}

// Remove takes req out of the queue wherever it is (an abort of a request
// still held); false if it is not there.
func (q *RequestQueue) Remove(req *Request) bool {
	var prev *Request
	for r := q.head; r != nil; prev, r = r, r.Next {
		if r != req {
			continue
		}
		if prev == nil {
			q.head = r.Next
		} else {
			prev.Next = r.Next
		}
		if q.tail == r {
			q.tail = prev
		}
		r.Next = nil
		return true
	}
	return false
}

// Children is a layer's stock of child requests on one channel: how a
// device stacked on others passes a request down (one child, its span
// moved), splits it (several children over parts of its span) or fans it
// out (one child per device below). A child completes into its parent:
// the parent finishes once all its children have, with the first error
// any of them had. The stock grows to the most children in flight at once
// and stays there: nothing allocates per request once warm.
//
// Children are submitted to the channels below with Channel.Submit; they
// skip the validation their parent passed (the layer answers for their
// spans) and share its clock readings. Reactor-owned, like the channel.
type Children struct {
	free []*Request
	done func(*Request)
	// OnDone, when set, sees each child as it finishes, before it folds
	// into its parent (a fault injector corrupts data there).
	OnDone func(child *Request)
}

// Get returns a child of parent with nothing set but its link to parent:
// fill Op, LBA, Blocks, Buf and FUA, then submit it. Every child got must
// be submitted before the layer's Submit returns, or be Finished later.
func (cs *Children) Get(parent *Request) *Request {
	var c *Request
	if n := len(cs.free); n > 0 {
		c = cs.free[n-1]
		cs.free = cs.free[:n-1]
	} else {
		if cs.done == nil {
			cs.done = cs.childDone // one method value for the stock's life
		}
		c = &Request{Callback: cs.done}
	}
	c.parent = parent
	parent.pending++
	return c
}

// Finish completes child c with st without a device below: for a layer
// that serves part of a request itself (a volume store's segment handled
// on its metadata reactor, or answered from its tables). Call it on the
// channel's reactor, never inside the layer's Submit, in place of
// submitting c.
func (cs *Children) Finish(c *Request, st Status) {
	c.Status, c.Errno = st, 0
	cs.childDone(c)
}

// childDone folds a finished child into its parent and takes it back.
func (cs *Children) childDone(c *Request) {
	if cs.OnDone != nil {
		cs.OnDone(c)
	}
	p := c.parent
	if c.Status != StatusOK && p.Status == StatusOK {
		p.Status, p.Errno = c.Status, c.Errno
	}
	c.parent, c.Buf = nil, nil // the buffer is the parent's caller's
	cs.free = append(cs.free, c)
	if p.pending--; p.pending == 0 {
		p.endNs = c.endNs // one clock reading per stack at either end
		p.ch.finish(p)
	}
}
