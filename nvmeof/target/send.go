package target

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/strata-storage/strata/nvmeof/pdu"
	"github.com/strata-storage/strata/reactor"
)

// outQueue batches a queue's outgoing PDUs into io_uring SENDMSGs on the
// socket, one in flight at a time so the byte stream stays in order.
// Reactor-owned.
//
// A batch goes through three stages: commands wait in the pending list
// (head..tail); flush moves all of them into the staged batch (segs,
// batch); submit hands the staged batch to the ring (busy). When the ring
// has no operation slot free, the staged batch stays staged and submit is
// retried on the next loop iteration: nothing is built twice, and commands
// pushed meanwhile wait in the pending list for the next batch.
type outQueue struct {
	q          *ioQueue
	head, tail *command // pending: waiting to be batched
	batch      []*command
	r2ts       []*command   // R2Ts in the staged batch, not yet submitted
	segs       [][]byte     // the bytes of the batch still to send, a window of segBuf
	segBuf     [][]byte     // backing array of segs, allocated once
	iov        []unix.Iovec // segs as the kernel reads them
	msg        unix.Msghdr  // points at iov
	staged     bool         // segs and batch hold a batch not yet submitted
	busy       bool         // a SENDMSG is in flight
	scheduled  bool         // a flush is deferred to the next loop iteration
	flushTask  flushTask
	closeAfter bool // a TermReq went out: close when written
}

// zeroPad is where the padding up to a C2HData PDU's PDO comes from: any
// HPDA up to 31 (128-byte alignment) a host may ask for. The kernel only
// reads it.
var zeroPad [pdu.MaxPadLen]byte

type flushTask struct{ o *outQueue }

func (t *flushTask) Run(*reactor.Reactor) {
	t.o.scheduled = false
	if t.o.staged {
		t.o.submit()
		return
	}
	t.o.flush()
}

// Up to four iovecs a command: header, padding, data, digest; plus the
// response capsule.
const iovPerCommand = 5

func (o *outQueue) init(q *ioQueue, slots int) {
	o.q = q
	o.iov = make([]unix.Iovec, 0, iovPerCommand*(slots+1))
	o.segBuf = make([][]byte, 0, iovPerCommand*(slots+1))
	o.batch = make([]*command, 0, slots+1)
	o.r2ts = make([]*command, 0, slots)
	o.flushTask.o = o
}

func (o *outQueue) push(cmd *command, kind uint8) {
	cmd.outKind, cmd.nextOut = kind, nil
	if o.tail == nil {
		o.head = cmd
	} else {
		o.tail.nextOut = cmd
	}
	o.tail = cmd
	if !o.busy && !o.staged && !o.scheduled {
		// Write after the rest of this loop iteration's completions: one
		// SENDMSG carries them all.
		o.scheduled = true
		o.q.r.Defer(&o.flushTask)
	}
}

func appendSeg(segs [][]byte, b []byte) [][]byte {
	if len(b) == 0 {
		return segs
	}
	return append(segs, b)
}

// flush stages every pending command as one batch and submits it.
func (o *outQueue) flush() {
	if o.busy || o.staged || o.head == nil {
		o.q.maybeFinalize()
		return
	}
	segs, batch := o.segBuf[:0], o.batch[:0]
	for cmd := o.head; cmd != nil; cmd = cmd.nextOut {
		segs = appendSeg(segs, cmd.hdr[:cmd.hdrLen])
		if cmd.outKind == outResponse && cmd.hdrLen > 0 { // C2HData
			segs = appendSeg(segs, zeroPad[:cmd.pad])
			segs = appendSeg(segs, cmd.buf[:cmd.dataLen])
			if o.q.c.ddgst {
				segs = appendSeg(segs, cmd.ddgst[:])
			}
		}
		if cmd.outKind == outResponse {
			segs = appendSeg(segs, cmd.resp[:cmd.respLen])
		}
		if cmd.outKind == outR2T {
			o.r2ts = append(o.r2ts, cmd) // nothing to do once sent
		} else {
			batch = append(batch, cmd)
		}
	}
	o.head, o.tail = nil, nil
	o.segs, o.batch, o.staged = segs, batch, true
	o.submit()
}

// submit hands the staged batch (or what a short write left of it) to the
// ring; with no operation slot free it stays staged for the next loop.
func (o *outQueue) submit() {
	sqe := o.q.r.Prep(o)
	if sqe == nil { // every operation slot of the reactor is busy
		if !o.scheduled {
			o.scheduled = true
			o.q.r.Defer(&o.flushTask)
		}
		return
	}
	o.staged, o.busy = false, true
	for _, cmd := range o.r2ts {
		// From now on the host may have the R2T: its data is welcome.
		if cmd.state == stR2TQueued {
			cmd.state = stWaitData
		}
	}
	o.r2ts = o.r2ts[:0]
	o.iov = o.iov[:0]
	for _, b := range o.segs {
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		o.iov = append(o.iov, v)
	}
	o.msg.Iov = &o.iov[0]
	o.msg.SetIovlen(len(o.iov))
	sqe.PrepSendmsg(int32(o.q.fd), &o.msg, unix.MSG_NOSIGNAL)
}

// Complete handles the SENDMSG's completion.
func (o *outQueue) Complete(res int32, _ uint32) {
	q := o.q
	if res < 0 {
		o.busy = false
		o.finishBatch()
		o.dropPending()
		q.end(fmt.Errorf("target: send: %w", unix.Errno(-res)))
		q.maybeFinalize()
		return
	}
	// A short write: continue from where it stopped.
	n := int(res)
	for len(o.segs) > 0 && n >= len(o.segs[0]) {
		n -= len(o.segs[0])
		o.segs = o.segs[1:]
	}
	if len(o.segs) > 0 {
		o.segs[0] = o.segs[0][n:]
		o.busy, o.staged = false, true
		o.submit()
		return
	}
	o.busy = false
	o.finishBatch()
	if o.closeAfter { // nothing goes out after a TermReq
		o.dropPending()
	}
	if o.head != nil && !o.scheduled {
		o.flush()
	}
	q.maybeFinalize()
}

// finishBatch frees the slots whose responses were written.
func (o *outQueue) finishBatch() {
	for _, cmd := range o.batch {
		switch cmd.outKind {
		case outResponse:
			o.q.freeSlot(cmd)
		case outTermReq:
			o.closeAfter = true
		}
	}
	o.batch = o.batch[:0]
}

// dropPending frees commands whose output will never be written.
func (o *outQueue) dropPending() {
	for cmd := o.head; cmd != nil; {
		next := cmd.nextOut
		if cmd.outKind == outResponse {
			o.q.freeSlot(cmd)
		}
		cmd = next
	}
	o.head, o.tail = nil, nil
}
