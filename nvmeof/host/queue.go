package host

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-storage/strata/internal/iomem"
	"github.com/strata-storage/strata/nvmeof/nvme"
	"github.com/strata-storage/strata/nvmeof/pdu"
	"github.com/strata-storage/strata/nvmeof/transport"
	"github.com/strata-storage/strata/reactor"
)

// Request is one command on a queue. The caller owns it and may reuse it
// once its Callback has run.
type Request struct {
	// Cmd is the command; the queue fills in the CID and the data pointer.
	Cmd [nvme.CommandSize]byte
	// Buf is the data: sent for writes (ToController), filled for reads.
	Buf          []byte
	ToController bool
	// Callback runs on the queue's reactor when the command is done. It may
	// Start requests on the same queue; it must not block, nor Close the
	// queue.
	Callback func(*Request)
	Tag      uint64

	// Results.
	Status   nvme.Status
	DW0, DW1 uint32
	Err      error // transport failure: the command's fate is unknown

	q    *Queue
	next *Request // waiting for a command ID
	task submitTask
}

// submitTask carries a Request from Submit to its queue's reactor.
type submitTask struct{ req *Request }

func (t *submitTask) Run(*reactor.Reactor) { t.req.q.Start(t.req) }

// SetRead makes r a Read of blocks at lba into buf.
func (r *Request) SetRead(nsid uint32, lba uint64, blocks uint32, buf []byte) {
	r.setRW(nvme.IORead, nsid, lba, blocks, false, buf)
	r.ToController = false
}

// SetWrite makes r a Write of buf at lba.
func (r *Request) SetWrite(nsid uint32, lba uint64, blocks uint32, fua bool, buf []byte) {
	r.setRW(nvme.IOWrite, nsid, lba, blocks, fua, buf)
	r.ToController = true
}

func (r *Request) setRW(op uint8, nsid uint32, lba uint64, blocks uint32, fua bool, buf []byte) {
	clear(r.Cmd[:])
	c := nvme.Command(r.Cmd[:])
	c.SetOpcode(op)
	c.SetFlags(nvme.FlagsSGL)
	c.SetNSID(nsid)
	c.SetSLBA(lba)
	c.SetBlocks(blocks, fua)
	r.Buf = buf
}

// SetFlush makes r a Flush of namespace nsid's volatile write cache.
func (r *Request) SetFlush(nsid uint32) {
	clear(r.Cmd[:])
	c := nvme.Command(r.Cmd[:])
	c.SetOpcode(nvme.IOFlush)
	c.SetFlags(nvme.FlagsSGL)
	c.SetNSID(nsid)
	r.Buf, r.ToController = nil, false
}

// SetWriteZeroes makes r a Write Zeroes of blocks at lba.
func (r *Request) SetWriteZeroes(nsid uint32, lba uint64, blocks uint32) {
	r.setRW(nvme.IOWriteZeroes, nsid, lba, blocks, false, nil)
	r.ToController = false
}

// Range is a span of blocks, for Dataset Management.
type Range struct {
	LBA    uint64
	Blocks uint32
}

// DSMRangeSize is the size of one Dataset Management range definition.
const DSMRangeSize = 16

// maxDSMRanges is the most ranges one Dataset Management command carries
// (NR is 8 bits, 0-based).
const maxDSMRanges = 256

// SetDeallocate makes r a Dataset Management command that deallocates
// ranges (NVMe Base 2.0, 3.3.3.2: a range is 4 bytes of context
// attributes, 4 of length in blocks, 8 of starting LBA). buf, of
// DSMRangeSize bytes per range, carries them to the target and must stay
// untouched until the request completes.
func (r *Request) SetDeallocate(nsid uint32, ranges []Range, buf []byte) error {
	if len(ranges) == 0 || len(ranges) > maxDSMRanges {
		return fmt.Errorf("host: %d deallocate ranges: want 1 to %d", len(ranges), maxDSMRanges)
	}
	if len(buf) < len(ranges)*DSMRangeSize {
		return fmt.Errorf("host: deallocate buffer of %d bytes for %d ranges", len(buf), len(ranges))
	}
	buf = buf[:len(ranges)*DSMRangeSize]
	for i, rg := range ranges {
		e := buf[i*DSMRangeSize:]
		binary.LittleEndian.PutUint32(e[0:], 0)
		binary.LittleEndian.PutUint32(e[4:], rg.Blocks)
		binary.LittleEndian.PutUint64(e[8:], rg.LBA)
	}
	clear(r.Cmd[:])
	c := nvme.Command(r.Cmd[:])
	c.SetOpcode(nvme.IODatasetMgmt)
	c.SetFlags(nvme.FlagsSGL)
	c.SetNSID(nsid)
	c.SetCDW(10, uint32(len(ranges)-1))
	c.SetCDW(11, 1<<2) // AD: deallocate
	r.Buf, r.ToController = buf, true
	return nil
}

// SetCommand makes r an arbitrary command with optional data.
func (r *Request) SetCommand(cmd nvme.Command, data []byte, toController bool) {
	copy(r.Cmd[:], cmd)
	nvme.Command(r.Cmd[:]).SetFlags(nvme.FlagsSGL)
	r.Buf, r.ToController = data, toController
}

// Queue is one NVMe/TCP queue (one TCP connection), owned by a reactor:
// the handshake runs on the dialing goroutine, then the socket belongs to
// a transport.Conn on the queue's reactor, which frames what arrives and
// writes what is queued in batches. Requests reach it from any goroutine
// with Submit, or on the reactor with Start, which never blocks: beyond
// the queue's depth they wait their turn in order.
type Queue struct {
	qid       uint16
	r         *reactor.Reactor
	fd        int
	mem       *iomem.Region // the receive buffer
	conn      *transport.Conn
	hdgst     bool
	ddgst     bool
	maxH2C    uint32
	align     int // CPDA: data alignment the target requires of us
	inCapsule int // in-capsule data the target accepts on this queue

	// Reactor-owned.
	slots              []slot // by command ID
	free               []uint16
	waitHead, waitTail *Request // beyond the depth: waiting for a slot
	rx                 rxState
	dead               bool
	finalized          bool

	sent atomic.Uint64 // command capsules sent

	mu           sync.Mutex
	err          error // why the queue ended; nil while open
	closed       chan struct{}
	done         chan struct{} // socket closed, every request finished
	finalizeOnce sync.Once
}

// slot is one command ID's state. Its buffers stay put while a
// transport.Out naming them is queued: the ID is free again only once the
// command is finished and its Outs are back.
type slot struct {
	req     *Request
	outs    int // Outs of this slot queued on the connection
	capsule transport.Out
	hdr     [pdu.CapsuleCmdHLen + pdu.DigestSize]byte
	ddgst   [pdu.DigestSize]byte
	// H2CData answering an R2T, one PDU at a time (MAXR2T is 1: one R2T
	// outstanding per command).
	h2c     transport.Out
	h2cHdr  [pdu.DataHLen + pdu.DigestSize]byte
	h2cDgst [pdu.DigestSize]byte
	h2cBusy bool
	ttag    uint16
	h2cOff  uint32
	h2cEnd  uint32
}

// What the PDU being received is for.
const (
	rxNone uint8 = iota
	rxResponse
	rxData
)

type rxState struct {
	kind    uint8
	cid     uint16
	success bool // C2HData with SUCCESS: the command completes with it
}

// tagH2C marks a slot's H2CData Out (the Out's tag is its command ID).
const tagH2C = 1 << 16

// recvBufSize is a queue's receive buffer: one RECV brings in every small
// PDU that has arrived.
const recvBufSize = 64 << 10

// dialQueue opens a connection and connects queue qid, served by r.
func dialQueue(ctx context.Context, r *reactor.Reactor, addr, subNQN string, qid uint16, depth int, cntlID uint16, cfg *Config) (*Queue, uint16, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, 0, fmt.Errorf("host: dial %s: %w", addr, err)
	}
	tc := nc.(*net.TCPConn)
	tc.SetNoDelay(true)
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	q := &Queue{
		qid: qid, r: r, slots: make([]slot, depth), free: make([]uint16, 0, depth),
		closed: make(chan struct{}), done: make(chan struct{}), inCapsule: 8 << 10,
	}
	for i := range depth {
		q.free = append(q.free, uint16(depth-1-i))
		q.slots[i].capsule.Tag = uint32(i)
		q.slots[i].h2c.Tag = uint32(i) | tagH2C
	}
	rxCfg, err := q.initConnection(nc, cfg)
	if err != nil {
		nc.Close()
		return nil, 0, err
	}
	if q.fd, err = transport.SocketFD(tc); err != nil {
		nc.Close()
		return nil, 0, err
	}
	nc.Close() // the reactor owns the socket now, through its own descriptor
	if q.mem, err = iomem.Map(recvBufSize); err != nil {
		unix.Close(q.fd)
		return nil, 0, fmt.Errorf("host: receive buffer: %w", err)
	}
	// Each slot queues at most its capsule and one H2CData PDU.
	q.conn = transport.New(r, q.fd, q, rxCfg, q.mem.Bytes(), 2*depth)
	if qid != 0 {
		// The admin queue is quiet: its armed RECV costs nothing per turn.
		q.conn.PollReceive()
	}
	if err := r.Post(reactor.TaskFunc(func(*reactor.Reactor) { q.conn.Start(nil) })); err != nil {
		unix.Close(q.fd)
		q.mem.Unmap()
		return nil, 0, fmt.Errorf("host: reactor: %w", err)
	}
	cmd := nvme.Command(make([]byte, nvme.CommandSize))
	var cattr uint8
	if cfg.DisableSQFlowControl {
		cattr = nvme.CAttrDisableSQFlow
	}
	kato := uint32(0)
	if qid == 0 {
		kato = uint32(cfg.KeepAlive / time.Millisecond)
	}
	cmd.SetConnect(qid, uint32(depth), cattr, kato)
	data := nvme.ConnectData(make([]byte, nvme.ConnectDataSize))
	data.Set(cfg.HostID, cntlID, subNQN, cfg.HostNQN)
	dw0, err := q.Exec(ctx, cmd, data, true)
	if err != nil {
		q.Close()
		return nil, 0, fmt.Errorf("host: connect queue %d of %s: %w", qid, subNQN, err)
	}
	return q, uint16(dw0), nil
}

// initConnection runs the ICReq/ICResp exchange (TP 8000, 3.6.2.2-3) and
// returns what the queue accepts from then on. It reads exactly the
// ICResp: nothing is read ahead of the reactor.
func (q *Queue) initConnection(nc net.Conn, cfg *Config) (pdu.Config, error) {
	var dg uint8
	if cfg.HeaderDigest {
		dg |= pdu.DgstHeader
	}
	if cfg.DataDigest {
		dg |= pdu.DgstData
	}
	b := make([]byte, pdu.ICSize)
	pdu.EncodeICReq(b, 0, dg, 0)
	if _, err := nc.Write(b); err != nil {
		return pdu.Config{}, fmt.Errorf("host: send ICReq: %w", err)
	}
	rd := pdu.NewReader(nc, pdu.Config{Accept: func(t pdu.Type) bool { return t == pdu.TypeICResp || t == pdu.TypeC2HTermReq }})
	h, err := rd.ReadHeader()
	if err != nil {
		return pdu.Config{}, fmt.Errorf("host: ICResp: %w", err)
	}
	if h.Type() != pdu.TypeICResp {
		return pdu.Config{}, fmt.Errorf("host: target terminated the connection: %s", pdu.TermReq(h).FES())
	}
	resp := pdu.ICResp(h)
	// What the target sends sizes our buffers and paddings: refuse what
	// the transport does not allow rather than trust it (3.6.2.3).
	switch {
	case resp.PFV() != 0:
		return pdu.Config{}, fmt.Errorf("host: target's ICResp has PFV %d, want 0", resp.PFV())
	case resp.CPDA() > pdu.MaxPDA:
		return pdu.Config{}, fmt.Errorf("host: target's CPDA %d is more than %d", resp.CPDA(), pdu.MaxPDA)
	case resp.Digests()&^dg != 0:
		return pdu.Config{}, fmt.Errorf("host: target enabled digests %#x, asked for %#x", resp.Digests(), dg)
	case resp.MaxH2CData() < 4096 || resp.MaxH2CData()%4 != 0:
		return pdu.Config{}, fmt.Errorf("host: target's MAXH2CDATA %d is invalid", resp.MaxH2CData())
	}
	q.hdgst = resp.Digests()&pdu.DgstHeader != 0
	q.ddgst = resp.Digests()&pdu.DgstData != 0
	q.maxH2C = resp.MaxH2CData()
	q.align = pdu.DataAlign(resp.CPDA())
	return pdu.Config{
		Accept: func(t pdu.Type) bool {
			return t == pdu.TypeCapsuleResp || t == pdu.TypeC2HData || t == pdu.TypeR2T || t == pdu.TypeC2HTermReq
		},
		HeaderDigest: q.hdgst, DataDigest: q.ddgst, MaxData: 1 << 30,
	}, nil
}

// Submit hands req to the queue from any goroutine; it waits only while
// the reactor's inbox is full. The callback runs later on the queue's
// reactor (at once, on this goroutine, with Err set if the reactor has
// stopped).
func (q *Queue) Submit(req *Request) {
	req.q, req.task.req = q, req
	if err := q.r.Post(&req.task); err != nil {
		req.Err = q.failure()
		req.Callback(req)
	}
}

// Start issues req on the queue's reactor, which the caller must be
// running on (a callback of this queue, a device's backend on the same
// reactor). It never blocks: with every command ID in use, req waits for
// one in order. If the queue has ended, req's callback runs at once with
// Err set.
func (q *Queue) Start(req *Request) {
	req.Status, req.Err, req.DW0, req.DW1 = nvme.Success, nil, 0, 0
	if q.dead {
		req.Err = q.failure()
		req.Callback(req)
		return
	}
	n := len(q.free)
	if n == 0 || q.waitHead != nil {
		req.next = nil
		if q.waitTail == nil {
			q.waitHead = req
		} else {
			q.waitTail.next = req
		}
		q.waitTail = req
		return
	}
	cid := q.free[n-1]
	q.free = q.free[:n-1]
	q.issue(cid, req)
}

// issue encodes req's capsule under command ID cid and queues it.
func (q *Queue) issue(cid uint16, req *Request) {
	s := &q.slots[cid]
	s.req = req
	hdr := s.hdr[:]
	sqe := pdu.CapsuleCmd(hdr).SQE()
	copy(sqe, req.Cmd[:])
	sqe.SetCID(cid)
	n := len(req.Buf)
	dataLen := 0
	if req.ToController && n > 0 && n <= q.inCapsule {
		sqe.SGL().Set(nvme.SGLDataBlockOffset, 0, uint32(n))
		dataLen = n
	} else {
		sqe.SGL().Set(nvme.SGLTransportDataBlock, 0, uint32(n))
	}
	hlen, pdo := pdu.EncodeCapsuleCmd(hdr, dataLen, q.hdgst, q.ddgst, q.align)
	o := &s.capsule
	o.Reset()
	o.Add(hdr[:hlen])
	if dataLen > 0 {
		o.Add(transport.Pad(pdo - hlen))
		o.Add(req.Buf)
		if q.ddgst {
			pdu.PutDigest(s.ddgst[:], req.Buf)
			o.Add(s.ddgst[:])
		}
	}
	s.outs++
	q.sent.Add(1)
	q.conn.Push(o)
}

// sendData queues the next H2CData PDU of the slot's R2T: at most
// MAXH2CDATA bytes.
func (q *Queue) sendData(cid uint16, s *slot) {
	n := min(s.h2cEnd-s.h2cOff, q.maxH2C)
	flags := uint8(0)
	if s.h2cOff+n == s.h2cEnd {
		flags = pdu.FlagLastPDU
	}
	hlen, pdo := pdu.EncodeData(s.h2cHdr[:], pdu.TypeH2CData, flags, cid, s.ttag, s.h2cOff, n, q.hdgst, q.ddgst, q.align)
	data := s.req.Buf[s.h2cOff : s.h2cOff+n]
	o := &s.h2c
	o.Reset()
	o.Add(s.h2cHdr[:hlen])
	o.Add(transport.Pad(pdo - hlen))
	o.Add(data)
	if q.ddgst {
		pdu.PutDigest(s.h2cDgst[:], data)
		o.Add(s.h2cDgst[:])
	}
	s.h2cOff += n
	s.h2cBusy = true
	s.outs++
	q.conn.Push(o)
}

// busy returns the slot of an outstanding command, or the error that ends
// a queue whose target named another.
func (q *Queue) busy(cid uint16, what string) (*slot, error) {
	if int(cid) >= len(q.slots) || q.slots[cid].req == nil {
		return nil, fmt.Errorf("host: %s for unknown command %d", what, cid)
	}
	return &q.slots[cid], nil
}

// Header takes a PDU header from the target (transport.Handler).
func (q *Queue) Header(h pdu.Header, f pdu.Frame) ([]byte, error) {
	q.rx = rxState{}
	switch h.Type() {
	case pdu.TypeCapsuleResp:
		cqe := pdu.CapsuleResp(h).CQE()
		s, err := q.busy(cqe.CID(), "response")
		if err != nil {
			return nil, err
		}
		s.req.Status, s.req.DW0, s.req.DW1 = cqe.Status(), cqe.DW0(), cqe.DW1()
		q.rx = rxState{kind: rxResponse, cid: cqe.CID()}
	case pdu.TypeC2HData:
		d := pdu.Data(h)
		s, err := q.busy(d.CCCID(), "C2HData")
		if err != nil {
			return nil, err
		}
		req, off, n := s.req, d.Offset(), f.DataLen
		if req.ToController || uint64(off)+uint64(n) > uint64(len(req.Buf)) {
			return nil, fmt.Errorf("host: C2HData bytes %d-%d for a %d-byte buffer", off, uint64(off)+uint64(n), len(req.Buf))
		}
		q.rx = rxState{kind: rxData, cid: d.CCCID(), success: h.Flags()&pdu.FlagSuccess != 0}
		return req.Buf[off : off+n], nil
	case pdu.TypeR2T:
		r := pdu.R2T(h)
		s, err := q.busy(r.CCCID(), "R2T")
		if err != nil {
			return nil, err
		}
		off, n := r.Offset(), r.Length()
		switch {
		case !s.req.ToController || n == 0 || uint64(off)+uint64(n) > uint64(len(s.req.Buf)):
			return nil, fmt.Errorf("host: R2T for bytes %d-%d of a %d-byte command", off, uint64(off)+uint64(n), len(s.req.Buf))
		case s.h2cBusy || s.h2cOff < s.h2cEnd:
			return nil, fmt.Errorf("host: R2T for command %d while one is being answered", r.CCCID())
		}
		s.ttag, s.h2cOff, s.h2cEnd = r.TTAG(), off, off+n
		q.sendData(r.CCCID(), s)
	case pdu.TypeC2HTermReq:
		tr := pdu.TermReq(h)
		return nil, fmt.Errorf("host: target terminated the connection: %s (fei %d): %w", tr.FES(), tr.FEI(), io.EOF)
	}
	return nil, nil
}

// Received acts on a PDU whose bytes are all in (transport.Handler).
func (q *Queue) Received(digestOK bool) bool {
	rx := q.rx
	q.rx = rxState{}
	if q.dead {
		return false
	}
	switch rx.kind {
	case rxResponse:
		q.complete(rx.cid)
	case rxData:
		req := q.slots[rx.cid].req
		if !digestOK {
			req.Err = pdu.ErrDataDigest
		}
		if rx.success {
			req.Status = nvme.Success
			q.complete(rx.cid)
		}
	}
	return !q.dead
}

// Handed is nothing to a host: a command is outstanding from Start.
func (q *Queue) Handed(*transport.Out) {}

// Sent takes back a slot's Out (transport.Handler): the next H2CData PDU
// of an R2T goes out once the last is written.
func (q *Queue) Sent(o *transport.Out, written bool) {
	cid := uint16(o.Tag)
	s := &q.slots[cid]
	s.outs--
	if o.Tag&tagH2C != 0 {
		s.h2cBusy = false
		if written && s.req != nil && s.h2cOff < s.h2cEnd && !q.dead {
			q.sendData(cid, s)
			return
		}
	}
	if s.req == nil && s.outs == 0 {
		q.release(cid)
	}
}

// End ends the queue for a failure of its connection (transport.Handler).
func (q *Queue) End(err error) { q.end(err) }

// Idle closes the socket once the queue has ended and nothing of it is
// in flight (transport.Handler).
func (q *Queue) Idle() { q.maybeFinalize() }

// complete finishes the command under cid and runs its callback. The
// command ID is free for another once the slot's Outs are back.
func (q *Queue) complete(cid uint16) {
	s := &q.slots[cid]
	req := s.req
	s.req = nil
	s.h2cOff, s.h2cEnd = 0, 0
	if s.outs == 0 {
		q.release(cid)
	}
	req.Callback(req)
}

// release frees a command ID, for the first waiting request if any.
func (q *Queue) release(cid uint16) {
	if q.dead {
		q.free = append(q.free, cid)
		q.maybeFinalize()
		return
	}
	if req := q.waitHead; req != nil {
		q.waitHead = req.next
		if q.waitHead == nil {
			q.waitTail = nil
		}
		req.next = nil
		q.issue(cid, req)
		return
	}
	q.free = append(q.free, cid)
}

// end stops the queue on its reactor: receiving stops, nothing more is
// written, and every request outstanding or waiting finishes with the
// queue's error. The socket closes once no operation is in flight.
func (q *Queue) end(err error) {
	if q.dead {
		return
	}
	q.dead = true
	q.mu.Lock()
	if q.err == nil {
		q.err = err
		close(q.closed)
	}
	err = q.err
	q.mu.Unlock()
	q.conn.Stop()
	q.conn.Close()
	for cid := range q.slots {
		s := &q.slots[cid]
		if req := s.req; req != nil {
			s.req = nil
			if s.outs == 0 {
				q.free = append(q.free, uint16(cid))
			}
			req.Err = err
			req.Callback(req)
		}
	}
	for req := q.waitHead; req != nil; {
		next := req.next
		req.next = nil
		req.Err = err
		req.Callback(req)
		req = next
	}
	q.waitHead, q.waitTail = nil, nil
	q.maybeFinalize()
}

func (q *Queue) maybeFinalize() {
	if !q.dead || q.finalized || !q.conn.Idle() || len(q.free) != len(q.slots) {
		return
	}
	q.finalized = true
	q.finalizeOnce.Do(func() {
		unix.Close(q.fd)
		q.mem.Unmap()
		close(q.done)
	})
}

// fail ends the queue from any goroutine.
func (q *Queue) fail(err error) {
	q.mu.Lock()
	if q.err == nil {
		q.err = err
		close(q.closed)
	}
	q.mu.Unlock()
	if q.r.Post(reactor.TaskFunc(func(*reactor.Reactor) { q.end(err) })) != nil {
		// The reactor is gone, and with it everything in flight.
		q.finalizeStopped()
	}
}

// finalizeStopped releases a queue whose reactor is stopping, or stopped,
// under it (it took no task to end the queue). Shutting the socket down
// ends the queue's receive and send at once (the stopping reactor cancels
// a receive too); their completions then end the queue on the reactor as
// a lost connection would. The descriptor is closed only after the
// shutdown, so nothing can reach a reused one, and the receive buffer is
// unmapped once the reactor has stopped, when nothing can complete into
// it.
func (q *Queue) finalizeStopped() {
	q.finalizeOnce.Do(func() {
		unix.Shutdown(q.fd, unix.SHUT_RDWR)
		unix.Close(q.fd)
		close(q.done)
		go func() {
			<-q.r.Done()
			q.mem.Unmap()
		}()
	})
}

func (q *Queue) failure() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err == nil {
		return ErrClosed
	}
	return q.err
}

// Stats counts a queue's command capsules and the socket writes that
// carried them.
type Stats struct {
	Commands, Writes uint64
}

// Stats returns the queue's counters.
func (q *Queue) Stats() Stats { return Stats{Commands: q.sent.Load(), Writes: q.conn.Writes()} }

// Err returns why the queue closed, or nil while it is open.
func (q *Queue) Err() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// Closed is closed once the queue has ended or is ending (Err is set):
// for a watcher of the connection. Safe from any goroutine.
func (q *Queue) Closed() <-chan struct{} { return q.closed }

// Ended reports whether the queue has ended: Start would fail a request
// at once. On the queue's reactor only.
func (q *Queue) Ended() bool { return q.dead }

// Shutdown starts closing the queue and returns: commands in flight fail
// on the queue's reactor, which closes the socket once nothing of the
// queue is in flight. Safe from any goroutine, the queue's reactor too.
func (q *Queue) Shutdown(err error) { q.fail(err) }

// Close closes the connection; commands in flight fail. It returns once
// their callbacks have run and the socket is closed. Not from the queue's
// reactor: use Shutdown there.
func (q *Queue) Close() error {
	q.fail(ErrClosed)
	<-q.done
	return nil
}

// QID returns the queue ID.
func (q *Queue) QID() uint16 { return q.qid }

// Exec runs one command synchronously: data is sent (toController) or
// filled. It returns DW0, or an error for a transport failure or a non-
// success status (an nvme.Status).
func (q *Queue) Exec(ctx context.Context, cmd nvme.Command, data []byte, toController bool) (uint32, error) {
	req, err := q.run(ctx, cmd, data, toController)
	if req == nil {
		return 0, err
	}
	return req.DW0, err
}

// run runs one command and waits for it; the request is nil after a
// transport failure.
func (q *Queue) run(ctx context.Context, cmd nvme.Command, data []byte, toController bool) (*Request, error) {
	req := &Request{}
	req.SetCommand(cmd, data, toController)
	done := make(chan struct{})
	req.Callback = func(*Request) { close(done) }
	q.Submit(req)
	select {
	case <-done:
	case <-ctx.Done():
		q.fail(fmt.Errorf("host: %w", ctx.Err()))
		<-done
	}
	if req.Err != nil {
		return nil, req.Err
	}
	if !req.Status.OK() {
		return req, req.Status
	}
	return req, nil
}

// Identify runs Identify with cns for nsid and returns the 4 KiB structure.
func (q *Queue) Identify(ctx context.Context, cns uint8, nsid uint32) ([]byte, error) {
	cmd := newCommand(nvme.AdminIdentify)
	cmd.SetNSID(nsid)
	cmd.SetCDW(10, uint32(cns))
	b := make([]byte, nvme.IdentifySize)
	_, err := q.Exec(ctx, cmd, b, false)
	return b, err
}

// GetLogPage reads n bytes of log page lid from offset.
func (q *Queue) GetLogPage(ctx context.Context, lid uint8, n uint32, offset uint64) ([]byte, error) {
	cmd := newCommand(nvme.AdminGetLogPage)
	cmd.SetGetLogPage(lid, n, offset)
	b := make([]byte, n)
	_, err := q.Exec(ctx, cmd, b, false)
	return b, err
}

// PropertyGet reads a controller property (an 8-byte one spans DW0 and
// DW1 of the completion).
func (q *Queue) PropertyGet(ctx context.Context, off uint32, size8 bool) (uint64, error) {
	cmd := newCommand(nvme.OpcodeFabrics)
	cmd.SetProperty(false, size8, off, 0)
	req, err := q.run(ctx, cmd, nil, false)
	if err != nil {
		return 0, err
	}
	return uint64(req.DW0) | uint64(req.DW1)<<32, nil
}

// PropertySet writes a 4-byte controller property.
func (q *Queue) PropertySet(ctx context.Context, off uint32, v uint32) error {
	cmd := newCommand(nvme.OpcodeFabrics)
	cmd.SetProperty(true, false, off, uint64(v))
	_, err := q.Exec(ctx, cmd, nil, false)
	return err
}
