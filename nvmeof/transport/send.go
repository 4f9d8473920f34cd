package transport

import (
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/strata-storage/strata/nvmeof/pdu"
	"github.com/strata-storage/strata/reactor"
)

// MaxSegments is the most byte slices one Out carries: a data PDU's
// header, padding, data and digest, and a response capsule after them.
const MaxSegments = 5

// Out is output for the connection: up to MaxSegments byte slices written
// in order, one PDU or a few. Whoever pushes it owns it again once the
// handler's Sent has it back; until then it and the bytes it names must
// not change.
type Out struct {
	segs  [MaxSegments][]byte
	nsegs int
	// Last: nothing goes out after it (a TermReq); what is queued behind it
	// is dropped, and so is everything pushed once it is written.
	Last bool
	// Tag is the owner's, for its handler to tell its Outs apart.
	Tag  uint32
	next *Out
}

// Reset empties o of segments.
func (o *Out) Reset() {
	clear(o.segs[:o.nsegs])
	o.nsegs, o.Last = 0, false
}

// Add appends b to o's bytes (an empty b adds nothing).
func (o *Out) Add(b []byte) {
	if len(b) > 0 {
		o.segs[o.nsegs] = b
		o.nsegs++
	}
}

// Pad returns n zero bytes, for the padding up to a PDU's PDO: any PDA up
// to 31 (128-byte alignment) a peer may ask for. The kernel only reads it.
func Pad(n int) []byte { return zeroPad[:n] }

var zeroPad [pdu.MaxPadLen]byte

// sender batches a connection's Outs into io_uring SENDMSGs, one in flight
// at a time so the byte stream stays in order.
//
// A batch goes through three stages: Outs wait in the queue (head..tail);
// flush moves all of them into the staged batch (segs, batch); submit
// hands the staged batch to the ring (busy). When the ring has no
// operation slot free, the staged batch stays staged and submit is retried
// on the next loop iteration: nothing is built twice, and Outs pushed
// meanwhile wait in the queue for the next batch.
type sender struct {
	c          *Conn
	head, tail *Out // queued: waiting to be batched
	batch      []*Out
	segs       [][]byte     // the bytes of the batch still to send, a window of segBuf
	segBuf     [][]byte     // backing array of segs, allocated once
	iov        []unix.Iovec // segs as the kernel reads them
	msg        unix.Msghdr  // points at iov
	staged     bool         // segs and batch hold a batch not yet submitted
	busy       bool         // a SENDMSG is in flight
	scheduled  bool         // a flush is deferred to the next loop iteration
	handed     bool         // the staged batch's Outs were told Handed
	closed     bool         // a Last went out, or Close: nothing more is written
	flushTask  flushTask
	writes     atomic.Uint64 // SENDMSGs, for Conn.Writes
}

type flushTask struct{ tx *sender }

func (t *flushTask) Run(*reactor.Reactor) {
	tx := t.tx
	tx.scheduled = false
	if tx.staged {
		tx.submit()
		return
	}
	tx.flush()
}

func (tx *sender) init(c *Conn, maxOuts int) {
	tx.c = c
	tx.iov = make([]unix.Iovec, 0, MaxSegments*maxOuts)
	tx.segBuf = make([][]byte, 0, MaxSegments*maxOuts)
	tx.batch = make([]*Out, 0, maxOuts)
	tx.flushTask.tx = tx
}

func (tx *sender) push(o *Out) {
	if tx.closed {
		tx.c.h.Sent(o, false)
		return
	}
	o.next = nil
	if tx.tail == nil {
		tx.head = o
	} else {
		tx.tail.next = o
	}
	tx.tail = o
	if !tx.busy && !tx.staged && !tx.scheduled {
		// Write after the rest of this loop iteration's completions: one
		// SENDMSG carries them all.
		tx.scheduled = true
		tx.c.r.Defer(&tx.flushTask)
	}
}

func (tx *sender) close() {
	tx.closed = true
	tx.dropQueued()
}

// flush stages every queued Out as one batch and submits it.
func (tx *sender) flush() {
	if tx.busy || tx.staged || tx.head == nil {
		tx.c.h.Idle()
		return
	}
	segs, batch := tx.segBuf[:0], tx.batch[:0]
	o := tx.head
	for ; o != nil; o = o.next {
		segs = append(segs, o.segs[:o.nsegs]...)
		batch = append(batch, o)
		if o.Last {
			o = o.next
			break
		}
	}
	tx.head, tx.tail = o, nil
	tx.segs, tx.batch, tx.staged, tx.handed = segs, batch, true, false
	if o != nil { // behind a Last: never written
		tx.closed = true
		tx.dropQueued()
	}
	tx.submit()
}

// submit hands the staged batch (or what a short write left of it) to the
// ring; with no operation slot free it stays staged for the next loop.
func (tx *sender) submit() {
	sqe := tx.c.r.Prep(tx)
	if sqe == nil { // every operation slot of the reactor is busy
		if !tx.scheduled {
			tx.scheduled = true
			tx.c.r.Defer(&tx.flushTask)
		}
		return
	}
	tx.staged, tx.busy = false, true
	if !tx.handed {
		tx.handed = true
		for _, o := range tx.batch {
			tx.c.h.Handed(o)
		}
	}
	tx.iov = tx.iov[:0]
	for _, b := range tx.segs {
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		tx.iov = append(tx.iov, v)
	}
	tx.msg.Iov = &tx.iov[0]
	tx.msg.SetIovlen(len(tx.iov))
	sqe.PrepSendmsg(int32(tx.c.fd), &tx.msg, unix.MSG_NOSIGNAL)
	tx.writes.Add(1)
}

// Complete handles the SENDMSG's completion.
func (tx *sender) Complete(res int32, _ uint32) {
	h := tx.c.h
	if res < 0 {
		tx.busy, tx.closed = false, true
		tx.finishBatch(false)
		h.End(fmt.Errorf("transport: send: %w", unix.Errno(-res)))
		h.Idle()
		return
	}
	// A short write: continue from where it stopped.
	n := int(res)
	for len(tx.segs) > 0 && n >= len(tx.segs[0]) {
		n -= len(tx.segs[0])
		tx.segs = tx.segs[1:]
	}
	if len(tx.segs) > 0 {
		tx.segs[0] = tx.segs[0][n:]
		tx.busy, tx.staged = false, true
		tx.submit()
		return
	}
	tx.busy = false
	tx.finishBatch(true)
	if tx.head != nil && !tx.scheduled {
		tx.flush()
		return
	}
	h.Idle()
}

// finishBatch hands the batch's Outs back, and once the connection is
// closed for writing, the queued ones too.
func (tx *sender) finishBatch(written bool) {
	batch := tx.batch
	tx.batch = tx.batch[:0]
	for i, o := range batch {
		if o.Last {
			tx.closed = true
		}
		batch[i] = nil
		tx.c.h.Sent(o, written)
	}
	if tx.closed {
		tx.dropQueued()
	}
}

// dropQueued hands back the queued Outs unwritten.
func (tx *sender) dropQueued() {
	o := tx.head
	tx.head, tx.tail = nil, nil
	for o != nil {
		next := o.next
		o.next = nil
		tx.c.h.Sent(o, false)
		o = next
	}
}
