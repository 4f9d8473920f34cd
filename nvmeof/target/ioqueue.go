package target

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/internal/iomem"
	"github.com/strata-storage/strata/nvmeof/nvme"
	"github.com/strata-storage/strata/nvmeof/pdu"
	"github.com/strata-storage/strata/reactor"
	"github.com/strata-storage/strata/reactor/mpsc"
)

// slotsPerEntry is how many command slots a queue has per SQ entry. A slot
// is freed when the reactor reaps the completion of the write that carried
// its response, but the host may reuse the command ID as soon as the bytes
// arrive: until the reactor gets to that completion, up to SQSIZE more
// commands can be on their way. Twice SQSIZE (as Linux's nvmet-tcp
// allocates) keeps a busy reactor from ever making the reader wait; the
// buffers are reserved address space, touched only when used.
const slotsPerEntry = 2

// slotWaitLimit bounds how long the reader waits for a free slot before it
// declares the host in breach of its queue size. A variable for tests.
var slotWaitLimit = 5 * time.Second

// What the reader asks the reactor to do with a command.
const (
	actExec uint8 = iota
	actR2T
	actFail // respond with cmd.status without executing
)

// Where a command's data stands (reader-owned).
const (
	stIdle uint8 = iota
	stWaitData
	stQueued
)

// command is one slot of an I/O queue. The reader goroutine fills it and
// hands it to the reactor (a reactor.Task); from then on the reactor owns it
// until it frees the slot, and the MPSC queues between them order every
// access.
type command struct {
	q   *ioQueue
	idx uint16
	sqe [nvme.CommandSize]byte
	buf []byte // MaxTransferBytes, off-heap

	// Reader-owned while the command is being received.
	state uint8
	// action is written by the reader and read by the reactor in Run. The
	// reader writes it again for a command whose R2T the reactor sent; that
	// order runs through the socket and the host, which the race detector
	// cannot see, so the field is atomic.
	action   atomic.Uint32
	dataLen  uint32 // bytes of data the command moves
	received uint32 // H2C bytes received so far
	ns       *nsState

	// Reactor-owned once handed over.
	req     bdev.Request
	status  nvme.Status
	dsmLeft []byte // Dataset Management ranges still to deallocate
	outKind uint8
	nextOut *command
	hdr     [pdu.MaxHeaderSize]byte // C2HData or R2T header
	resp    [pdu.CapsuleRespHLen + pdu.DigestSize]byte
	ddgst   [pdu.DigestSize]byte
	hdrLen  int
	respLen int
	pad     int
}

const (
	outR2T uint8 = iota
	outResponse
	outTermReq
)

func (cmd *command) Run(*reactor.Reactor) {
	q := cmd.q
	switch uint8(cmd.action.Load()) {
	case actR2T:
		q.queueR2T(cmd)
	case actFail:
		q.respond(cmd, cmd.status)
	default:
		q.execute(cmd)
	}
}

// ioQueue is an I/O queue bound to one reactor.
type ioQueue struct {
	c    *conn
	ctrl *Controller
	r    *reactor.Reactor
	rid  int
	fd   int
	mem  *iomem.Region
	cmds []command
	free *mpsc.Queue[uint16] // freed by the reactor, taken by the reader
	// slotWanted is set by a reader with no free slot before it blocks on
	// slotFreed; the reactor signals after it frees one.
	slotWanted atomic.Bool
	slotFreed  chan struct{}
	// outstanding counts slots taken and not yet freed.
	outstanding atomic.Int32
	sqhd        atomic.Uint32 // commands fetched, for SQHD

	// Reactor-owned.
	out       outQueue
	dead      bool
	finalized bool
	closed    chan struct{}
	term      command // carries a C2HTermReq
	termLen   int
}

func newIOQueue(c *conn, ctrl *Controller) (*ioQueue, error) {
	n := int(c.sqsize) * slotsPerEntry
	mem, err := iomem.Reserve(n * MaxTransferBytes)
	if err != nil {
		return nil, err
	}
	free, err := mpsc.New[uint16](nextPow2(n))
	if err != nil {
		mem.Unmap()
		return nil, err
	}
	var fd int
	rc, err := c.nc.SyscallConn()
	if err == nil {
		err = rc.Control(func(f uintptr) { fd = int(f) })
	}
	if err != nil {
		mem.Unmap()
		return nil, fmt.Errorf("target: socket fd: %w", err)
	}
	rid := int(c.qid-1) % c.t.g.Len()
	q := &ioQueue{
		c: c, ctrl: ctrl, r: c.t.g.Get(rid), rid: rid, fd: fd, mem: mem,
		cmds: make([]command, n), free: free, slotFreed: make(chan struct{}, 1), closed: make(chan struct{}),
	}
	for i := range q.cmds {
		cmd := &q.cmds[i]
		cmd.q, cmd.idx = q, uint16(i)
		cmd.buf = mem.Bytes()[i*MaxTransferBytes : (i+1)*MaxTransferBytes : (i+1)*MaxTransferBytes]
		cmd.req.Callback = q.ioDone
		cmd.req.Tag = uint64(i)
		free.Push(uint16(i))
	}
	q.term.q = q
	q.out.init(q, n)
	return q, nil
}

func nextPow2(n int) int {
	p := 2
	for p < n {
		p <<= 1
	}
	return p
}

// release frees a queue that never started.
func (q *ioQueue) release() { q.mem.Unmap() }

// takeSlot returns a free slot for a new command. With none free it
// sleeps until the reactor frees one: spinning would take the CPU from the
// very reactor that frees slots when the two share a core.
func (q *ioQueue) takeSlot() (*command, error) {
	idx, ok := q.free.Pop()
	if !ok {
		var err error
		if idx, err = q.waitSlot(); err != nil {
			return nil, err
		}
	}
	q.outstanding.Add(1)
	cmd := &q.cmds[idx]
	cmd.state, cmd.received, cmd.ns = stIdle, 0, nil
	return cmd, nil
}

// waitSlot blocks until a slot is freed, or fails the connection after
// slotWaitLimit: a host that keeps that many commands outstanding breaks
// its queue size.
func (q *ioQueue) waitSlot() (uint16, error) {
	timeout := time.NewTimer(slotWaitLimit)
	defer timeout.Stop()
	for {
		q.slotWanted.Store(true)
		// Re-check after announcing the wait: a slot freed before the
		// reactor could see slotWanted sends no signal.
		if idx, ok := q.free.Pop(); ok {
			q.slotWanted.Store(false)
			return idx, nil
		}
		select {
		case <-q.slotFreed:
		case <-timeout.C:
			q.slotWanted.Store(false)
			return 0, &pdu.FatalError{Status: pdu.FatalSequence, Reason: fmt.Sprintf("more than %d commands outstanding", q.c.sqsize)}
		}
		if idx, ok := q.free.Pop(); ok {
			return idx, nil
		}
	}
}

// readLoop is the reader goroutine of an I/O queue.
func (q *ioQueue) readLoop() error {
	c := q.c
	c.rd.SetConfig(pdu.Config{Accept: hostToController, HeaderDigest: c.hdgst, DataDigest: c.ddgst, MaxData: MaxH2CData})
	for {
		h, err := c.rd.ReadHeader()
		if err != nil {
			return err
		}
		switch h.Type() {
		case pdu.TypeCapsuleCmd:
			err = q.receiveCommand(h)
		case pdu.TypeH2CData:
			err = q.receiveData(pdu.Data(h))
		case pdu.TypeH2CTermReq:
			return fmt.Errorf("target: host terminated the connection: %s", pdu.TermReq(h).FES())
		}
		if err != nil {
			return err
		}
	}
}

func (q *ioQueue) receiveCommand(h pdu.Header) error {
	c := q.c
	if c.rd.DataLen() > InCapsuleBytes {
		return &pdu.FatalError{Status: pdu.FatalDataLimitExceeded, Reason: fmt.Sprintf("%d bytes in capsule, more than %d", c.rd.DataLen(), InCapsuleBytes), Header: h}
	}
	cmd, err := q.takeSlot()
	if err != nil {
		return err
	}
	copy(cmd.sqe[:], pdu.CapsuleCmd(h).SQE())
	q.sqhd.Add(1)
	inCapsule := c.rd.DataLen()
	st, dir := q.prepare(cmd)
	switch {
	case !st.OK():
		if err := c.rd.Discard(); err != nil {
			return err
		}
		return q.dispatch(cmd, actFail, st)
	case inCapsule > 0:
		if dir != dirHostToController || inCapsule != cmd.dataLen {
			c.rd.Discard()
			return q.dispatch(cmd, actFail, nvme.DataSGLLengthInvalid)
		}
		err := c.rd.ReadData(cmd.buf[:inCapsule])
		if errors.Is(err, pdu.ErrDataDigest) {
			return q.dispatch(cmd, actFail, transientTransportError)
		}
		if err != nil {
			return err
		}
		return q.dispatch(cmd, actExec, nvme.Success)
	case dir == dirHostToController:
		if nvme.Command(cmd.sqe[:]).SGL().ID() != nvme.SGLTransportDataBlock {
			return q.dispatch(cmd, actFail, nvme.SGLDescriptorTypeInvalid)
		}
		cmd.state = stWaitData
		return q.dispatch(cmd, actR2T, nvme.Success)
	}
	return q.dispatch(cmd, actExec, nvme.Success)
}

// transientTransportError is the status of a command whose data digest did
// not match (TP 8000, 3.6.2.x): SCT Path Related, SC 22h... reported as a
// retryable transport error.
var transientTransportError = nvme.MakeStatus(nvme.SCTGeneric, 0x22)

func (q *ioQueue) dispatch(cmd *command, action uint8, st nvme.Status) error {
	if action != actR2T {
		cmd.state = stQueued
	}
	cmd.action.Store(uint32(action))
	cmd.status = st
	if err := q.r.Post(cmd); err != nil {
		return fmt.Errorf("target: reactor: %w", err)
	}
	return nil
}

func (q *ioQueue) receiveData(d pdu.Data) error {
	c := q.c
	ttag := d.TTAG()
	if int(ttag) >= len(q.cmds) || q.cmds[ttag].state != stWaitData {
		return &pdu.FatalError{Status: pdu.FatalInvalidHeader, FEI: 10, Reason: fmt.Sprintf("H2CData for unknown transfer tag %d", ttag), Header: d}
	}
	cmd := &q.cmds[ttag]
	if d.CCCID() != nvme.Command(cmd.sqe[:]).CID() {
		return &pdu.FatalError{Status: pdu.FatalInvalidHeader, FEI: 8, Reason: "H2CData CCCID does not match the transfer tag", Header: d}
	}
	off, n := d.Offset(), c.rd.DataLen()
	if off != cmd.received || n != d.Length() || uint64(off)+uint64(n) > uint64(cmd.dataLen) || n == 0 {
		return &pdu.FatalError{Status: pdu.FatalDataOutOfRange, Reason: fmt.Sprintf("H2CData offset %d length %d, expected offset %d of %d", off, d.Length(), cmd.received, cmd.dataLen), Header: d}
	}
	err := c.rd.ReadData(cmd.buf[off : off+n])
	if errors.Is(err, pdu.ErrDataDigest) {
		cmd.status = transientTransportError
	} else if err != nil {
		return err
	}
	cmd.received += n
	if cmd.received < cmd.dataLen {
		return nil
	}
	if !cmd.status.OK() {
		return q.dispatch(cmd, actFail, cmd.status)
	}
	return q.dispatch(cmd, actExec, nvme.Success)
}

type direction uint8

const (
	dirNone direction = iota
	dirHostToController
	dirControllerToHost
)

// prepare validates a command on the reader side and works out its data
// transfer.
func (q *ioQueue) prepare(cmd *command) (nvme.Status, direction) {
	sqe := nvme.Command(cmd.sqe[:])
	cmd.status = nvme.Success
	op := sqe.Opcode()
	if op == nvme.OpcodeFabrics {
		return nvme.InvalidOpcode, dirNone
	}
	if sqe.Flags()&0xc0 == 0 || sqe.Flags()&0x03 != 0 {
		return nvme.InvalidField, dirNone // PRPs or fused commands on fabrics
	}
	ns := q.ctrl.sub.namespace(sqe.NSID())
	if ns == nil && op != nvme.IOFlush {
		return nvme.InvalidNamespace, dirNone
	}
	cmd.ns = ns
	sgl := sqe.SGL().Length()
	switch op {
	case nvme.IORead, nvme.IOWrite, nvme.IOCompare:
		bytes := uint64(sqe.Blocks()) * uint64(ns.Device.Info().BlockSize)
		if bytes > MaxTransferBytes || op == nvme.IOCompare && bytes > MaxTransferBytes/2 {
			return nvme.InvalidField, dirNone
		}
		if uint64(sgl) != bytes {
			return nvme.DataSGLLengthInvalid, dirNone
		}
		cmd.dataLen = uint32(bytes)
		if op == nvme.IORead {
			return nvme.Success, dirControllerToHost
		}
		return nvme.Success, dirHostToController
	case nvme.IODatasetMgmt:
		// NR+1 16-byte ranges; hosts may send a larger buffer (Linux sends a
		// whole page when its range allocation falls back), so only its
		// first NR+1 entries count.
		ranges := uint32(sqe.CDW(10)&0xff) + 1
		if sgl < ranges*16 || sgl > MaxTransferBytes {
			return nvme.DataSGLLengthInvalid, dirNone
		}
		cmd.dataLen = sgl
		return nvme.Success, dirHostToController
	case nvme.IOFlush, nvme.IOWriteZeroes:
		cmd.dataLen = 0
		if sgl != 0 {
			return nvme.DataSGLLengthInvalid, dirNone
		}
		if ns == nil && sqe.NSID() != 0xffffffff {
			return nvme.InvalidNamespace, dirNone
		}
		return nvme.Success, dirNone
	}
	return nvme.InvalidOpcode, dirNone
}

// execute runs a command on the reactor.
func (q *ioQueue) execute(cmd *command) {
	if q.dead {
		q.freeSlot(cmd)
		return
	}
	sqe := nvme.Command(cmd.sqe[:])
	req := &cmd.req
	req.FUA = false
	switch sqe.Opcode() {
	case nvme.IORead:
		req.Op = bdev.OpRead
		req.Buf = cmd.buf[:cmd.dataLen]
	case nvme.IOCompare:
		req.Op = bdev.OpRead
		req.Buf = cmd.buf[MaxTransferBytes/2 : MaxTransferBytes/2+cmd.dataLen]
	case nvme.IOWrite:
		req.Op = bdev.OpWrite
		req.Buf = cmd.buf[:cmd.dataLen]
		req.FUA = sqe.FUA()
	case nvme.IOWriteZeroes:
		req.Op = bdev.OpWriteZeroes
		req.Buf = nil
	case nvme.IOFlush:
		if cmd.ns == nil { // all namespaces: flush the first, the rest follow in ioDone
			ids := q.ctrl.sub.namespaceIDs()
			if len(ids) == 0 {
				q.respond(cmd, nvme.Success)
				return
			}
			cmd.ns = q.ctrl.sub.namespace(ids[0])
		}
		req.Op = bdev.OpFlush
		req.Buf = nil
	case nvme.IODatasetMgmt:
		if sqe.CDW(11)&(1<<2) == 0 { // not a deallocate: hints only
			q.respond(cmd, nvme.Success)
			return
		}
		cmd.dsmLeft = cmd.buf[:16*(sqe.CDW(10)&0xff+1)]
		q.nextDeallocate(cmd)
		return
	}
	if req.Op == bdev.OpRead || req.Op == bdev.OpWrite || req.Op == bdev.OpWriteZeroes {
		req.LBA, req.Blocks = sqe.SLBA(), sqe.Blocks()
	}
	q.submit(cmd)
}

// submit sends cmd.req to its namespace's channel on this reactor, moving
// to the namespace's current device if the one looked up was replaced.
func (q *ioQueue) submit(cmd *command) {
	if cmd.ns.retired.Load() {
		if ns := q.ctrl.sub.namespace(cmd.ns.ID); ns != nil {
			cmd.ns = ns
		}
	}
	cmd.ns.inflight[q.rid]++
	cmd.ns.channels[q.rid].Submit(&cmd.req)
}

// nextDeallocate unmaps the next DSM range (16-byte entries: attributes,
// length in blocks, starting LBA; NVM Command Set 1.0, Figure 39).
func (q *ioQueue) nextDeallocate(cmd *command) {
	for len(cmd.dsmLeft) >= 16 {
		r := cmd.dsmLeft[:16]
		cmd.dsmLeft = cmd.dsmLeft[16:]
		blocks := binary.LittleEndian.Uint32(r[4:])
		if blocks == 0 {
			continue
		}
		cmd.req.Op, cmd.req.Buf = bdev.OpUnmap, nil
		cmd.req.LBA, cmd.req.Blocks = binary.LittleEndian.Uint64(r[8:]), blocks
		q.submit(cmd)
		return
	}
	q.respond(cmd, nvme.Success)
}

// ioDone is every command's bdev callback, on the reactor.
func (q *ioQueue) ioDone(req *bdev.Request) {
	cmd := &q.cmds[req.Tag]
	cmd.ns.inflight[q.rid]--
	st := statusOf(req)
	sqe := nvme.Command(cmd.sqe[:])
	switch {
	case !st.OK():
	case sqe.Opcode() == nvme.IODatasetMgmt && len(cmd.dsmLeft) > 0:
		q.nextDeallocate(cmd)
		return
	case sqe.Opcode() == nvme.IOCompare:
		if string(cmd.buf[:cmd.dataLen]) != string(req.Buf) {
			st = nvme.CompareFailure
		}
	case sqe.Opcode() == nvme.IOFlush && sqe.NSID() == 0xffffffff:
		if next := q.nextNamespace(cmd.ns.ID); next != nil {
			cmd.ns = next
			q.submit(cmd)
			return
		}
	}
	q.respond(cmd, st)
}

func (q *ioQueue) nextNamespace(after uint32) *nsState {
	for _, id := range q.ctrl.sub.namespaceIDs() {
		if id > after {
			return q.ctrl.sub.namespace(id)
		}
	}
	return nil
}

// statusOf translates a block device outcome to an NVMe status.
func statusOf(req *bdev.Request) nvme.Status {
	switch req.Status {
	case bdev.StatusOK:
		return nvme.Success
	case bdev.StatusInvalidRange:
		return nvme.LBAOutOfRange
	case bdev.StatusInvalidRequest:
		return nvme.InvalidField
	case bdev.StatusUnsupported:
		return nvme.InvalidOpcode
	case bdev.StatusNoSpace:
		return nvme.CapacityExceeded
	case bdev.StatusReadError:
		return nvme.UnrecoveredRead
	case bdev.StatusWriteFault:
		return nvme.WriteFault
	case bdev.StatusNotReady:
		return nvme.NamespaceNotReady
	case bdev.StatusAborted:
		return nvme.AbortRequested
	}
	return nvme.InternalError
}

// respond queues the command's response: for a successful read, C2HData
// with the data first.
func (q *ioQueue) respond(cmd *command, st nvme.Status) {
	q.c.t.countStatus(st)
	if q.dead {
		q.freeSlot(cmd)
		return
	}
	c := q.c
	sqe := nvme.Command(cmd.sqe[:])
	cmd.hdrLen, cmd.respLen, cmd.pad = 0, 0, 0
	skipResp := false
	if st.OK() && sqe.Opcode() == nvme.IORead {
		flags := uint8(pdu.FlagLastPDU)
		if c.sqFlowOff {
			flags |= pdu.FlagSuccess // no response capsule (TP 8000, 3.6.2.7)
			skipResp = true
		}
		n, pdo := pdu.EncodeData(cmd.hdr[:], pdu.TypeC2HData, flags, sqe.CID(), 0, 0, cmd.dataLen, c.hdgst, c.ddgst, c.hostAlign)
		cmd.hdrLen, cmd.pad = n, pdo-n
		if c.ddgst {
			pdu.PutDigest(cmd.ddgst[:], cmd.buf[:cmd.dataLen])
		}
	}
	if !skipResp {
		sqhd := uint16(0xffff)
		if !c.sqFlowOff {
			sqhd = uint16(q.sqhd.Load() % c.sqsize)
		}
		pdu.CapsuleResp(cmd.resp[:]).CQE().Set(0, 0, sqhd, c.qid, sqe.CID(), st)
		cmd.respLen = pdu.EncodeCapsuleResp(cmd.resp[:], c.hdgst)
	}
	q.out.push(cmd, outResponse)
}

// queueR2T asks the host for a write's data: one R2T for the whole
// transfer (MaxTransferBytes <= MaxH2CData).
func (q *ioQueue) queueR2T(cmd *command) {
	if q.dead {
		q.freeSlot(cmd)
		return
	}
	sqe := nvme.Command(cmd.sqe[:])
	cmd.hdrLen = pdu.EncodeR2T(cmd.hdr[:], sqe.CID(), cmd.idx, 0, cmd.dataLen, q.c.hdgst)
	q.out.push(cmd, outR2T)
}

func (q *ioQueue) freeSlot(cmd *command) {
	cmd.req.Buf = nil
	q.free.Push(cmd.idx)
	if q.slotWanted.Load() && q.slotWanted.CompareAndSwap(true, false) {
		select {
		case q.slotFreed <- struct{}{}:
		default: // a signal is already pending
		}
	}
	q.outstanding.Add(-1)
	q.maybeFinalize()
}

// sendTermReq sends a C2HTermReq and closes (from the reader goroutine).
func (q *ioQueue) sendTermReq(b []byte) {
	q.termLen = copy(q.term.hdr[:], b)
	q.r.Post(reactor.TaskFunc(func(*reactor.Reactor) {
		if !q.dead {
			q.term.hdrLen = q.termLen
			q.out.push(&q.term, outTermReq)
		}
	}))
}

// shutdown ends the queue from the reader goroutine once it has stopped
// reading: the reactor drops responses from now on, frees commands that
// were waiting for data, and closes the socket once nothing is in flight.
// It returns after the socket is closed.
func (q *ioQueue) shutdown() {
	err := q.r.Post(reactor.TaskFunc(func(*reactor.Reactor) {
		q.dead = true
		for i := range q.cmds {
			if q.cmds[i].state == stWaitData {
				q.cmds[i].state = stIdle
				q.freeSlot(&q.cmds[i])
			}
		}
		q.maybeFinalize()
	}))
	if err != nil { // the reactor is gone: nothing is in flight any more
		q.c.nc.Close()
		return
	}
	<-q.closed
}

func (q *ioQueue) maybeFinalize() {
	if !q.dead || q.finalized || q.out.busy || q.out.scheduled || q.outstanding.Load() != 0 {
		return
	}
	q.finalized = true
	q.c.nc.Close()
	q.mem.Unmap()
	close(q.closed)
}

// outQueue batches a queue's outgoing PDUs into io_uring WRITEVs on the
// socket, one in flight at a time so the byte stream stays in order.
// Reactor-owned.
type outQueue struct {
	q          *ioQueue
	head, tail *command // waiting to be written
	batch      []*command
	segs       [][]byte     // the bytes of the write in flight still to send, a window of segBuf
	segBuf     [][]byte     // backing array of segs, allocated once
	iov        []unix.Iovec // segs as the kernel reads them
	busy       bool         // a WRITEV is in flight
	scheduled  bool         // a flush is deferred to the next loop iteration
	flushTask  flushTask
	zeros      [64]byte // padding source
	closeAfter bool     // a TermReq went out: close when written
}

type flushTask struct{ o *outQueue }

func (t *flushTask) Run(*reactor.Reactor) {
	t.o.scheduled = false
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
	if !o.busy && !o.scheduled {
		// Write after the rest of this loop iteration's completions: one
		// WRITEV carries them all.
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

func (o *outQueue) flush() {
	if o.busy || o.head == nil {
		o.q.maybeFinalize()
		return
	}
	segs, batch := o.segBuf[:0], o.batch[:0]
	for cmd := o.head; cmd != nil; cmd = cmd.nextOut {
		segs = appendSeg(segs, cmd.hdr[:cmd.hdrLen])
		if cmd.outKind == outResponse && cmd.hdrLen > 0 { // C2HData
			segs = appendSeg(segs, o.zeros[:cmd.pad])
			segs = appendSeg(segs, cmd.buf[:cmd.dataLen])
			if o.q.c.ddgst {
				segs = appendSeg(segs, cmd.ddgst[:])
			}
		}
		if cmd.outKind == outResponse {
			segs = appendSeg(segs, cmd.resp[:cmd.respLen])
		}
		batch = append(batch, cmd)
	}
	o.head, o.tail = nil, nil
	o.segs, o.batch = segs, batch
	o.submit()
}

func (o *outQueue) submit() {
	sqe := o.q.r.Prep(o)
	if sqe == nil { // every operation slot of the reactor is busy: next loop
		o.scheduled = true
		o.q.r.Defer(&o.flushTask)
		o.busy = false
		return
	}
	o.busy = true
	o.iov = o.iov[:0]
	for _, b := range o.segs {
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		o.iov = append(o.iov, v)
	}
	sqe.PrepWritev(int32(o.q.fd), o.iov, 0)
}

// Complete handles the WRITEV's completion.
func (o *outQueue) Complete(res int32, _ uint32) {
	q := o.q
	if res < 0 {
		if !q.dead {
			q.c.log.Info("socket write failed", "err", unix.Errno(-res))
		}
		o.busy = false
		o.finishBatch()
		q.dead = true
		q.c.abort()
		o.dropPending()
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
		o.submit()
		return
	}
	o.busy = false
	o.finishBatch()
	if o.closeAfter {
		q.dead = true
		q.c.abort()
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

// flushNamespace flushes a namespace's device from a control path, on
// reactor 0's channel. Like a command it counts as in flight there, and a
// namespace replaced meanwhile is looked up again, so ReplaceNamespace
// never closes a channel under it.
func flushNamespace(t *Target, sub *Subsystem, ns *nsState) error {
	done := make(chan bdev.Status, 1)
	req := &bdev.Request{Op: bdev.OpFlush}
	r := ns.channels[0].Reactor()
	err := r.Post(reactor.TaskFunc(func(*reactor.Reactor) {
		if ns.retired.Load() {
			if cur := sub.namespace(ns.ID); cur != nil {
				ns = cur
			}
		}
		ns.inflight[0]++
		req.Callback = func(r *bdev.Request) {
			ns.inflight[0]--
			done <- r.Status
		}
		ns.channels[0].Submit(req)
	}))
	if err != nil {
		return err
	}
	return (<-done).Err()
}
