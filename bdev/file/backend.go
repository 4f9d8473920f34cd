package file

import (
	"golang.org/x/sys/unix"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/reactor"
	"github.com/strata-storage/strata/reactor/uring"
)

// maxRetries bounds resubmissions after EAGAIN or EINTR completions.
const maxRetries = 8

// backend is one reactor's channel to the device. Reactor-owned.
type backend struct {
	d           *Device
	r           *reactor.Reactor
	slot        int32 // registered-file index in r's ring
	bs          uint64
	ops         []op
	free        []*op
	inflight    int
	pending     bdev.RequestQueue // requests waiting for an operation slot
	retry       retryTask
	retryQueued bool
}

// op is one request in flight; it is the reactor.Completer of its SQEs.
type op struct {
	b       *backend
	req     *bdev.Request
	done    uint64 // bytes transferred so far
	retries uint8
	// zeroMode is the strategy this write-zeroes or unmap issues with: its
	// own, since the device's may be demoted by another op meanwhile, and
	// its completion must be read by the strategy it was issued with.
	zeroMode int32
}

type retryTask struct{ b *backend }

// Run retries pending requests once the reactor has operation slots again.
func (t *retryTask) Run(*reactor.Reactor) {
	t.b.retryQueued = false
	t.b.startPending()
}

func (b *backend) Submit(req *bdev.Request) {
	if !b.pending.Empty() {
		b.enqueue(req)
		return
	}
	if !b.start(req) {
		b.enqueue(req)
	}
}

func (b *backend) enqueue(req *bdev.Request) {
	b.pending.Push(req)
	if b.inflight == 0 && !b.retryQueued {
		// No completion of ours will come to restart the queue: the slots
		// are held by other channels of this reactor. Retry next loop.
		b.retryQueued = true
		b.r.Defer(&b.retry)
	}
}

func (b *backend) startPending() {
	for req := b.pending.Peek(); req != nil; req = b.pending.Peek() {
		if !b.start(req) {
			if b.inflight == 0 && !b.retryQueued {
				b.retryQueued = true
				b.r.Defer(&b.retry)
			}
			return
		}
		b.pending.Pop()
	}
}

// start issues req's first operation; false means no slot was free.
func (b *backend) start(req *bdev.Request) bool {
	n := len(b.free)
	if n == 0 {
		return false
	}
	o := b.free[n-1]
	o.req, o.done, o.retries = req, 0, 0
	if req.Op == bdev.OpWriteZeroes || req.Op == bdev.OpUnmap {
		o.zeroMode = b.d.zeroMode[zeroKind(req.Op)].Load()
	}
	if !o.issue() {
		o.req = nil
		return false
	}
	b.free = b.free[:n-1]
	b.inflight++
	return true
}

// issue prepares the SQE for what remains of the request.
func (o *op) issue() bool {
	b := o.b
	sqe := b.r.Prep(o)
	if sqe == nil {
		return false
	}
	req := o.req
	off := req.LBA*b.bs + o.done
	switch req.Op {
	case bdev.OpRead, bdev.OpWrite:
		buf := req.Buf[o.done:]
		b.prepRW(sqe, req.Op == bdev.OpWrite, buf, off)
		if req.FUA && req.Op == bdev.OpWrite {
			sqe.SetRWFlags(unix.RWF_DSYNC)
		}
	case bdev.OpFlush:
		sqe.PrepFsync(b.slot, uring.FsyncDatasync)
		sqe.Flags |= uring.SQEFixedFile
	case bdev.OpWriteZeroes, bdev.OpUnmap:
		o.prepZero(sqe, off)
	}
	return true
}

func (b *backend) prepRW(sqe *uring.SQE, write bool, buf []byte, off uint64) {
	if write {
		sqe.PrepWrite(b.slot, buf, off)
	} else {
		sqe.PrepRead(b.slot, buf, off)
	}
	sqe.Flags |= uring.SQEFixedFile
}

// fallocate modes for each zeroing strategy of write-zeroes [0] and unmap [1].
var zeroModes = [2][2]uint32{
	{unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE, unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE},
	{unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE, unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE},
}

func zeroKind(op bdev.Op) int {
	if op == bdev.OpUnmap {
		return 1
	}
	return 0
}

func (o *op) prepZero(sqe *uring.SQE, off uint64) {
	b, req := o.b, o.req
	kind := zeroKind(req.Op)
	left := req.Bytes(uint32(b.bs)) - o.done
	switch o.zeroMode {
	case zeroByFallocate, zeroByOtherMode:
		sqe.PrepFallocate(b.slot, zeroModes[kind][o.zeroMode], off, left)
		sqe.Flags |= uring.SQEFixedFile
	default:
		b.prepRW(sqe, true, b.d.zeroBuf.Bytes()[:min(left, zeroChunk)], off)
	}
}

// Complete handles one CQE of the op's request.
func (o *op) Complete(res int32, _ uint32) {
	req := o.req
	if res < 0 {
		o.failed(unix.Errno(-res))
		return
	}
	switch req.Op {
	case bdev.OpRead, bdev.OpWrite:
		o.transferred(uint64(res))
	case bdev.OpWriteZeroes, bdev.OpUnmap:
		if o.zeroMode == zeroByWriting {
			o.transferred(uint64(res))
			return
		}
		o.finish(bdev.StatusOK, 0)
	default:
		o.finish(bdev.StatusOK, 0)
	}
}

// transferred accounts n bytes and resubmits the rest of a short transfer.
func (o *op) transferred(n uint64) {
	req := o.req
	if n == 0 {
		// No progress: a read past the end of a file shrunk under us, or a
		// write the file system cannot take.
		if req.Op == bdev.OpRead {
			o.finish(bdev.StatusReadError, 0)
		} else {
			o.finish(bdev.StatusWriteFault, 0)
		}
		return
	}
	o.done += n
	if o.done >= req.Bytes(uint32(o.b.bs)) {
		o.finish(bdev.StatusOK, 0)
		return
	}
	o.reissue()
}

func (o *op) failed(errno unix.Errno) {
	req := o.req
	switch {
	case errno == unix.EAGAIN || errno == unix.EINTR:
		if o.retries < maxRetries {
			o.retries++
			o.reissue()
			return
		}
	case (errno == unix.EOPNOTSUPP || errno == unix.EINVAL) && (req.Op == bdev.OpWriteZeroes || req.Op == bdev.OpUnmap):
		// This file system lacks the fallocate mode: demote for good, retry.
		// Ops issued with the same mode fail alike; the device moves on
		// from that mode once, not once per op (CompareAndSwap from it).
		if o.zeroMode < zeroByWriting {
			mode := &o.b.d.zeroMode[zeroKind(req.Op)]
			next := max(o.zeroMode+1, mode.Load())
			mode.CompareAndSwap(o.zeroMode, next)
			o.zeroMode = next
			o.reissue()
			return
		}
	}
	o.finish(bdev.StatusFromErrno(req.Op, errno), int32(errno))
}

// reissue submits the op again. It runs from Complete, after the reactor
// has freed this op's slot, so Prep cannot fail; were it ever to, the
// request fails rather than being lost.
func (o *op) reissue() {
	if !o.issue() {
		o.finish(bdev.StatusAborted, int32(unix.EBUSY))
	}
}

func (o *op) finish(st bdev.Status, errno int32) {
	b, req := o.b, o.req
	o.req = nil
	b.free = append(b.free, o)
	b.inflight--
	req.Errno = errno
	req.Complete(st)
	if !b.pending.Empty() {
		b.startPending()
	}
}

func (b *backend) Close() error {
	return b.r.UnregisterFile(b.slot)
}
