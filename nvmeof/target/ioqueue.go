package target

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/internal/iomem"
	"github.com/strata-storage/strata/nvmeof/nvme"
	"github.com/strata-storage/strata/nvmeof/pdu"
	"github.com/strata-storage/strata/nvmeof/status"
	"github.com/strata-storage/strata/nvmeof/transport"
	"github.com/strata-storage/strata/reactor"
)

const (
	// recvBufSize is the receive buffer of an I/O queue: one RECV brings
	// in every small PDU that has arrived.
	recvBufSize = 64 << 10
)

// What to do with a PDU once its data is in.
const (
	thenNothing uint8 = iota // a TermReq's quoted header
	thenExec                 // execute cur
	thenFail                 // fail cur with failStatus
	thenData                 // H2CData for cur: count it, execute cur when complete
)

// Out tags: the command's index, and which of its outputs it is.
const (
	tagR2T  = 1 << 16
	tagTerm = 1 << 17
)

// slotsPerEntry is how many command slots a queue has per SQ entry. A slot
// is freed when the reactor reaps the completion of the write that carried
// its response, and the host may reuse the command ID as soon as the bytes
// arrive: a write that completes short has delivered some responses whose
// slots are freed only with the rest. Twice SQSIZE (as Linux's nvmet-tcp
// allocates) covers that; a host with more outstanding breaks its queue
// size. The buffers are reserved address space, touched only when used.
const slotsPerEntry = 2

// Where a command's data stands.
const (
	stIdle      uint8 = iota
	stR2TQueued       // its R2T is not yet handed to the socket
	stWaitData        // its R2T went out: H2CData is due
	stQueued
)

// command is one slot of an I/O queue; everything in it is owned by the
// queue's reactor.
type command struct {
	q   *ioQueue
	idx uint16
	sqe [nvme.CommandSize]byte
	buf []byte // MaxTransferBytes, off-heap

	state    uint8
	dataLen  uint32 // bytes of data the command moves
	received uint32 // H2C bytes received so far
	ns       *nsState
	req      bdev.Request
	status   nvme.Status
	dsmLeft  []byte        // Dataset Management ranges still to deallocate
	out      transport.Out // the response: C2HData and capsule
	r2tOut   transport.Out
	hdr      [pdu.DataHLen + pdu.DigestSize]byte // C2HData header
	r2t      [pdu.R2THLen + pdu.DigestSize]byte
	resp     [pdu.CapsuleRespHLen + pdu.DigestSize]byte
	ddgst    [pdu.DigestSize]byte
}

// ioQueue is an I/O queue served by one reactor: it receives, executes and
// responds there, so a command never crosses threads. The conn's goroutine
// only sets it up and waits for its end.
type ioQueue struct {
	c    *conn
	ctrl *Controller
	r    *reactor.Reactor
	rid  int
	mem  *iomem.Region
	cmds []command

	// Reactor-owned once started.
	fd          int // the socket, taken from the net package
	free        []uint16
	outstanding int    // slots taken and not yet freed
	sqhd        uint32 // commands fetched, for SQHD
	conn        *transport.Conn
	term        [pdu.MaxTermReqPLen]byte // a C2HTermReq
	termOut     transport.Out
	dead        bool

	// The PDU being received (transport.Handler).
	cur        *command
	then       uint8
	failStatus nvme.Status
	dataLen    uint32
	finalized  bool
	endErr     error
	closed     chan struct{}
}

func newIOQueue(c *conn, ctrl *Controller) (*ioQueue, error) {
	fd, err := transport.SocketFD(c.nc)
	if err != nil {
		return nil, err
	}
	n := int(c.sqsize) * slotsPerEntry
	mem, err := iomem.Reserve(n*MaxTransferBytes + recvBufSize)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	c.t.queueMemory.Add(int64(len(mem.Bytes())))
	rid := int(c.qid-1) % c.t.g.Len()
	q := &ioQueue{
		c: c, ctrl: ctrl, r: c.t.g.Get(rid), rid: rid, fd: fd, mem: mem,
		cmds: make([]command, n), free: make([]uint16, 0, n), closed: make(chan struct{}),
	}
	for i := range q.cmds {
		cmd := &q.cmds[i]
		cmd.q, cmd.idx = q, uint16(i)
		cmd.buf = mem.Bytes()[i*MaxTransferBytes : (i+1)*MaxTransferBytes : (i+1)*MaxTransferBytes]
		cmd.req.Callback = q.ioDone
		cmd.req.Tag = uint64(i)
		cmd.out.Tag, cmd.r2tOut.Tag = uint32(i), uint32(i)|tagR2T
		q.free = append(q.free, uint16(n-1-i))
	}
	q.termOut.Tag = tagTerm
	cfg := pdu.Config{Accept: hostToController, HeaderDigest: c.hdgst, DataDigest: c.ddgst, MaxData: MaxH2CData}
	// Each slot has a response and an R2T to send, and there is a TermReq.
	q.conn = transport.New(q.r, fd, q, cfg, mem.Bytes()[n*MaxTransferBytes:], 2*n+1)
	return q, nil
}

// serve hands the connection to the reactor, with the bytes the handshake
// read ahead, and waits for the queue's end.
func (q *ioQueue) serve(early []byte) error {
	q.c.nc.Close()
	early = append([]byte(nil), early...)
	err := q.r.Post(reactor.TaskFunc(func(*reactor.Reactor) {
		if !q.dead {
			q.conn.Start(early)
		}
	}))
	if err != nil { // the conn's shutdown releases the queue
		return fmt.Errorf("target: reactor: %w", err)
	}
	<-q.closed
	return q.endErr
}

// abort ends the queue from any goroutine.
func (q *ioQueue) abort() {
	q.r.Post(reactor.TaskFunc(func(*reactor.Reactor) { q.end(net.ErrClosed) }))
}

// shutdown ends a queue and waits until its socket is closed, from the
// conn's goroutine.
func (q *ioQueue) shutdown() {
	if err := q.r.Post(reactor.TaskFunc(func(*reactor.Reactor) { q.end(nil) })); err != nil {
		// The reactor is stopping or stopped: once it has, nothing of the
		// queue is in flight (it cancels the receive), and unless the
		// queue ended on it meanwhile, the socket and buffers can go.
		<-q.r.Done()
		q.c.nc.Close()
		select {
		case <-q.closed:
		default:
			q.release()
		}
		return
	}
	<-q.closed
}

// end stops the queue on its reactor: a fatal transport error is answered
// with a C2HTermReq, receiving stops, commands still being received or
// waiting for data are dropped, and the socket closes once nothing is in
// flight. The first reason is kept for the conn's log.
func (q *ioQueue) end(err error) {
	if q.dead {
		return
	}
	q.endErr = err
	terminate(q.conn, &q.termOut, q.term[:], err)
	q.dead = true
	q.conn.Stop()
	if cmd := q.cur; cmd != nil && cmd.state == stIdle { // its capsule cut short
		q.cur = nil
		q.freeSlot(cmd)
	}
	for i := range q.cmds {
		if st := q.cmds[i].state; st == stWaitData || st == stR2TQueued {
			q.freeSlot(&q.cmds[i])
		}
	}
	q.maybeFinalize()
}

// terminate answers a fatal transport error (a *pdu.FatalError) with a
// C2HTermReq, encoded into buf and sent as out, the connection's last
// PDU; any other error sends nothing. On the connection's reactor.
func terminate(conn *transport.Conn, out *transport.Out, buf []byte, err error) {
	var fe *pdu.FatalError
	if !errors.As(err, &fe) {
		return
	}
	n := pdu.EncodeTermReq(buf, pdu.TypeC2HTermReq, fe.Status, fe.FEI, fe.Header)
	out.Reset()
	out.Add(buf[:n])
	out.Last = true
	conn.Push(out)
}

func (q *ioQueue) maybeFinalize() {
	if !q.dead || q.finalized || !q.conn.Idle() || q.outstanding != 0 {
		return
	}
	q.finalized = true
	q.c.nc.Close() // still open if the queue never started
	unix.Close(q.fd)
	q.unmap()
	close(q.closed)
}

// release frees a queue that never started.
func (q *ioQueue) release() {
	unix.Close(q.fd)
	q.unmap()
}

func (q *ioQueue) unmap() {
	q.c.t.queueMemory.Add(-int64(len(q.mem.Bytes())))
	q.mem.Unmap()
}

// takeSlot returns a free slot for a new command; none free means the host
// has more commands outstanding than its queue size allows.
func (q *ioQueue) takeSlot(h pdu.Header) (*command, error) {
	n := len(q.free)
	if n == 0 {
		return nil, &pdu.FatalError{Status: pdu.FatalSequence, Reason: fmt.Sprintf("more than %d commands outstanding", q.c.sqsize), Header: h}
	}
	cmd := &q.cmds[q.free[n-1]]
	q.free = q.free[:n-1]
	q.outstanding++
	cmd.state, cmd.received, cmd.ns = stIdle, 0, nil
	return cmd, nil
}

func (q *ioQueue) freeSlot(cmd *command) {
	cmd.req.Buf = nil
	cmd.state = stIdle
	q.free = append(q.free, cmd.idx)
	q.outstanding--
	q.maybeFinalize()
}

// Header takes a PDU header from the connection and says where the data
// that follows it goes (transport.Handler).
func (q *ioQueue) Header(h pdu.Header, f pdu.Frame) ([]byte, error) {
	q.cur, q.then, q.dataLen = nil, thenNothing, f.DataLen
	switch h.Type() {
	case pdu.TypeCapsuleCmd:
		return q.receiveCommand(h, f.DataLen)
	case pdu.TypeH2CData:
		return q.receiveData(pdu.Data(h), f.DataLen)
	case pdu.TypeH2CTermReq:
		return nil, fmt.Errorf("target: host terminated the connection: %s: %w", pdu.TermReq(h).FES(), io.EOF)
	}
	return nil, nil
}

// Received acts on a PDU whose bytes are all in (transport.Handler).
func (q *ioQueue) Received(digestOK bool) bool {
	cmd := q.cur
	q.cur = nil
	if !digestOK {
		// Not fatal: the command fails with a transient transport error
		// (TP 8000, 3.6.2.x).
		switch q.then {
		case thenExec:
			q.then, q.failStatus = thenFail, nvme.TransientTransportError
		case thenData:
			cmd.status = nvme.TransientTransportError
		}
	}
	switch q.then {
	case thenExec:
		cmd.state = stQueued
		q.execute(cmd)
	case thenFail:
		cmd.state = stQueued
		q.respond(cmd, q.failStatus)
	case thenData:
		cmd.received += q.dataLen
		if cmd.received < cmd.dataLen {
			return true
		}
		cmd.state = stQueued
		if !cmd.status.OK() {
			q.respond(cmd, cmd.status)
		} else {
			q.execute(cmd)
		}
	}
	return !q.dead
}

// Handed learns that an output is on its way (transport.Handler): once
// an R2T is, the host may have it, and its data is welcome.
func (q *ioQueue) Handed(o *transport.Out) {
	if o.Tag&tagR2T != 0 {
		if cmd := &q.cmds[uint16(o.Tag)]; cmd.state == stR2TQueued {
			cmd.state = stWaitData
		}
	}
}

// Sent frees the slot whose response was written, or never will be
// (transport.Handler).
func (q *ioQueue) Sent(o *transport.Out, _ bool) {
	if o.Tag&(tagR2T|tagTerm) == 0 {
		q.freeSlot(&q.cmds[o.Tag])
	}
}

// End ends the queue for a failure of its connection (transport.Handler).
func (q *ioQueue) End(err error) { q.end(err) }

// Idle closes the queue if it ended and nothing of it is in flight
// (transport.Handler).
func (q *ioQueue) Idle() { q.maybeFinalize() }

// receiveCommand takes a command capsule's header and says what to do
// with the data that follows it (TP 8000, 3.6.2.5).
func (q *ioQueue) receiveCommand(h pdu.Header, inCapsule uint32) ([]byte, error) {
	if inCapsule > InCapsuleBytes {
		return nil, &pdu.FatalError{Status: pdu.FatalDataLimitExceeded, Reason: fmt.Sprintf("%d bytes in capsule, more than %d", inCapsule, InCapsuleBytes), Header: h}
	}
	cmd, err := q.takeSlot(h)
	if err != nil {
		return nil, err
	}
	copy(cmd.sqe[:], pdu.CapsuleCmd(h).SQE())
	q.sqhd++
	q.cur = cmd
	st, dir := q.prepare(cmd, inCapsule)
	switch {
	case !st.OK():
		q.then, q.failStatus = thenFail, st // any capsule data is discarded
	case dir == dirHostToController && inCapsule > 0:
		q.then = thenExec
		return cmd.buf[:inCapsule], nil
	case dir == dirHostToController:
		q.cur = nil
		cmd.state = stR2TQueued
		q.queueR2T(cmd)
	default:
		q.then = thenExec
	}
	return nil, nil
}

// receiveData takes an H2CData header: the data goes into the command the
// transfer tag names, at the offset the PDU gives (TP 8000, 3.6.2.7).
func (q *ioQueue) receiveData(d pdu.Data, n uint32) ([]byte, error) {
	ttag := d.TTAG()
	if int(ttag) >= len(q.cmds) || q.cmds[ttag].state != stWaitData && q.cmds[ttag].state != stR2TQueued {
		return nil, &pdu.FatalError{Status: pdu.FatalInvalidHeader, FEI: 10, Reason: fmt.Sprintf("H2CData for unknown transfer tag %d", ttag), Header: d}
	}
	cmd := &q.cmds[ttag]
	if cmd.state == stR2TQueued {
		// The host cannot have seen the R2T: it guessed the tag.
		return nil, &pdu.FatalError{Status: pdu.FatalSequence, Reason: fmt.Sprintf("H2CData for transfer tag %d before its R2T", ttag), Header: d}
	}
	if d.CCCID() != nvme.Command(cmd.sqe[:]).CID() {
		return nil, &pdu.FatalError{Status: pdu.FatalInvalidHeader, FEI: 8, Reason: "H2CData CCCID does not match the transfer tag", Header: d}
	}
	off := d.Offset()
	if off != cmd.received || n != d.Length() || uint64(off)+uint64(n) > uint64(cmd.dataLen) || n == 0 {
		return nil, &pdu.FatalError{Status: pdu.FatalDataOutOfRange, Reason: fmt.Sprintf("H2CData offset %d length %d, expected offset %d of %d", off, d.Length(), cmd.received, cmd.dataLen), Header: d}
	}
	q.cur, q.then = cmd, thenData
	return cmd.buf[off : off+n], nil
}

// prepare validates a command as its capsule arrives, with inCapsule
// bytes of data in the capsule, and works out its data transfer.
func (q *ioQueue) prepare(cmd *command, inCapsule uint32) (nvme.Status, direction) {
	sqe := nvme.Command(cmd.sqe[:])
	cmd.status, cmd.dataLen = nvme.Success, 0
	op := sqe.Opcode()
	switch op {
	case nvme.OpcodeFabrics:
		if sqe.FCType() == nvme.FabricsConnect {
			return nvme.CommandSequenceError, dirNone // the queue is connected already
		}
		return nvme.InvalidOpcode, dirNone
	case nvme.IORead, nvme.IOWrite, nvme.IOCompare, nvme.IODatasetMgmt, nvme.IOFlush, nvme.IOWriteZeroes:
	default:
		return nvme.InvalidOpcode, dirNone
	}
	ns := q.ctrl.sub.namespace(sqe.NSID())
	if ns == nil && (op != nvme.IOFlush || sqe.NSID() != 0xffffffff) {
		return nvme.InvalidNamespace, dirNone
	}
	cmd.ns = ns
	dir, want := dirNone, uint32(0)
	switch op {
	case nvme.IORead, nvme.IOWrite, nvme.IOCompare:
		bytes := uint64(sqe.Blocks()) * uint64(ns.Device.Info().BlockSize)
		if bytes > MaxTransferBytes || op == nvme.IOCompare && bytes > MaxTransferBytes/2 {
			return nvme.InvalidField, dirNone
		}
		dir, want = dirHostToController, uint32(bytes)
		if op == nvme.IORead {
			dir = dirControllerToHost
		}
	case nvme.IODatasetMgmt:
		// NR+1 16-byte ranges; hosts may send a larger buffer (Linux sends a
		// whole page when its range allocation falls back), so only its
		// first NR+1 entries count.
		ranges, sgl := uint32(sqe.CDW(10)&0xff)+1, sqe.SGL().Length()
		if sgl < ranges*16 || sgl > MaxTransferBytes {
			return nvme.DataSGLLengthInvalid, dirNone
		}
		dir, want = dirHostToController, sgl
	}
	if st := checkDataPointer(sqe, dir, want, inCapsule); !st.OK() {
		return st, dirNone
	}
	cmd.dataLen = want
	return nvme.Success, dir
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
		// No span; and the slot's last command's must not linger in it.
		req.Op, req.Buf, req.LBA, req.Blocks = bdev.OpFlush, nil, 0, 0
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

// submit sends cmd.req to its namespace's channel on this reactor.
func (q *ioQueue) submit(cmd *command) {
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
	st := status.ToNVMe(req.Status)
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
	o := &cmd.out
	o.Reset()
	skipResp := false
	if st.OK() && sqe.Opcode() == nvme.IORead {
		flags := uint8(pdu.FlagLastPDU)
		if c.sqFlowOff {
			flags |= pdu.FlagSuccess // no response capsule (TP 8000, 3.6.2.7)
			skipResp = true
		}
		n, pdo := pdu.EncodeData(cmd.hdr[:], pdu.TypeC2HData, flags, sqe.CID(), 0, 0, cmd.dataLen, c.hdgst, c.ddgst, c.hostAlign)
		o.Add(cmd.hdr[:n])
		o.Add(transport.Pad(pdo - n))
		o.Add(cmd.buf[:cmd.dataLen])
		if c.ddgst {
			pdu.PutDigest(cmd.ddgst[:], cmd.buf[:cmd.dataLen])
			o.Add(cmd.ddgst[:])
		}
	}
	if !skipResp {
		sqhd := uint16(0xffff)
		if !c.sqFlowOff {
			sqhd = uint16(q.sqhd % c.sqsize)
		}
		pdu.CapsuleResp(cmd.resp[:]).CQE().Set(0, 0, sqhd, c.qid, sqe.CID(), st)
		o.Add(cmd.resp[:pdu.EncodeCapsuleResp(cmd.resp[:], c.hdgst)])
	}
	q.conn.Push(o)
}

// queueR2T asks the host for a write's data: one R2T for the whole
// transfer (MaxTransferBytes <= MaxH2CData).
func (q *ioQueue) queueR2T(cmd *command) {
	if q.dead {
		q.freeSlot(cmd)
		return
	}
	sqe := nvme.Command(cmd.sqe[:])
	n := pdu.EncodeR2T(cmd.r2t[:], sqe.CID(), cmd.idx, 0, cmd.dataLen, q.c.hdgst)
	cmd.r2tOut.Reset()
	cmd.r2tOut.Add(cmd.r2t[:n])
	q.conn.Push(&cmd.r2tOut)
}

// flushNamespace flushes a namespace's device from a control path, on
// reactor 0's channel.
func flushNamespace(ns *nsState) error {
	done := make(chan bdev.Status, 1)
	req := &bdev.Request{Op: bdev.OpFlush, Callback: func(r *bdev.Request) { done <- r.Status }}
	ch := ns.channels[0]
	if err := ch.Reactor().Post(reactor.TaskFunc(func(*reactor.Reactor) { ch.Submit(req) })); err != nil {
		return err
	}
	return (<-done).Err()
}
