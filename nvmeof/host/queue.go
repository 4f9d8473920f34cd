package host

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-storage/strata/nvmeof/nvme"
	"github.com/strata-storage/strata/nvmeof/pdu"
)

// Request is one command on a queue. The caller owns it and may reuse it
// once its Callback has run.
type Request struct {
	// Cmd is the command; the queue fills in the CID and the data pointer.
	Cmd [nvme.CommandSize]byte
	// Buf is the data: sent for writes (ToController), filled for reads.
	Buf          []byte
	ToController bool
	// Callback runs on the queue's reader goroutine when the command is done.
	Callback func(*Request)
	Tag      uint64

	// Results.
	Status   nvme.Status
	DW0, DW1 uint32
	Err      error // transport failure: the command's fate is unknown
}

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

// Queue is one NVMe/TCP queue (one TCP connection).
type Queue struct {
	qid       uint16
	nc        net.Conn
	rd        *pdu.Reader
	hdgst     bool
	ddgst     bool
	maxH2C    uint32
	align     int // CPDA: data alignment the target requires of us
	inCapsule int // in-capsule data the target accepts on this queue

	br *bufio.Reader // under rd: how much the reader has buffered

	// Guarded by wmu. Commands are encoded into their CID's header and
	// digest buffers and queued in pending; they go out at once unless the
	// reader has corked the queue: while it works through responses that
	// arrived together, the commands their callbacks submit are held and
	// sent in one write when it runs out of buffered input (as Linux's
	// nvme-tcp host batches with MSG_MORE). One write instead of one per
	// command halves the generator's cost and lets the target read its
	// commands in batches too.
	wmu     sync.Mutex
	corked  bool
	pending net.Buffers
	sending net.Buffers // consumed by WriteTo
	hdrs    [][pdu.MaxHeaderSize + 64]byte
	digests [][pdu.DigestSize]byte
	writes  atomic.Uint64 // writes to the socket
	sent    atomic.Uint64 // command capsules sent

	slots []*Request
	free  chan uint16

	mu     sync.Mutex
	err    error
	closed chan struct{}
	done   chan struct{} // reader exited
}

// dialQueue opens a connection and connects queue qid.
func dialQueue(ctx context.Context, addr, subNQN string, qid uint16, depth int, cntlID uint16, cfg *Config) (*Queue, uint16, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, 0, fmt.Errorf("host: dial %s: %w", addr, err)
	}
	nc.(*net.TCPConn).SetNoDelay(true)
	q := &Queue{
		qid: qid, nc: nc, slots: make([]*Request, depth), free: make(chan uint16, depth),
		hdrs: make([][pdu.MaxHeaderSize + 64]byte, depth), digests: make([][pdu.DigestSize]byte, depth),
		closed: make(chan struct{}), done: make(chan struct{}), inCapsule: 8 << 10,
	}
	for i := range depth {
		q.free <- uint16(i)
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	if err := q.initConnection(cfg); err != nil {
		nc.Close()
		return nil, 0, err
	}
	nc.SetDeadline(time.Time{})
	go q.readLoop()
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

func (q *Queue) initConnection(cfg *Config) error {
	var dg uint8
	if cfg.HeaderDigest {
		dg |= pdu.DgstHeader
	}
	if cfg.DataDigest {
		dg |= pdu.DgstData
	}
	b := make([]byte, pdu.ICSize)
	pdu.EncodeICReq(b, 0, dg, 0)
	if _, err := q.nc.Write(b); err != nil {
		return fmt.Errorf("host: send ICReq: %w", err)
	}
	var src io.Reader = q.nc
	if cfg.BusyPoll > 0 && q.qid != 0 {
		b, err := newBusyReader(q.nc, cfg.BusyPoll)
		if err != nil {
			return err
		}
		src = b
	}
	q.br = bufio.NewReaderSize(src, 64<<10)
	q.rd = pdu.NewReader(q.br, pdu.Config{Accept: func(t pdu.Type) bool { return t == pdu.TypeICResp || t == pdu.TypeC2HTermReq }})
	h, err := q.rd.ReadHeader()
	if err != nil {
		return fmt.Errorf("host: ICResp: %w", err)
	}
	if h.Type() != pdu.TypeICResp {
		return fmt.Errorf("host: target terminated the connection: %s", pdu.TermReq(h).FES())
	}
	resp := pdu.ICResp(h)
	// What the target sends sizes our buffers and paddings: refuse what
	// the transport does not allow rather than trust it (3.6.2.3).
	switch {
	case resp.PFV() != 0:
		return fmt.Errorf("host: target's ICResp has PFV %d, want 0", resp.PFV())
	case resp.CPDA() > pdu.MaxPDA:
		return fmt.Errorf("host: target's CPDA %d is more than %d", resp.CPDA(), pdu.MaxPDA)
	case resp.Digests()&^dg != 0:
		return fmt.Errorf("host: target enabled digests %#x, asked for %#x", resp.Digests(), dg)
	case resp.MaxH2CData() < 4096 || resp.MaxH2CData()%4 != 0:
		return fmt.Errorf("host: target's MAXH2CDATA %d is invalid", resp.MaxH2CData())
	}
	q.hdgst = resp.Digests()&pdu.DgstHeader != 0
	q.ddgst = resp.Digests()&pdu.DgstData != 0
	q.maxH2C = resp.MaxH2CData()
	q.align = pdu.DataAlign(resp.CPDA())
	q.rd.SetConfig(pdu.Config{
		Accept: func(t pdu.Type) bool {
			return t == pdu.TypeCapsuleResp || t == pdu.TypeC2HData || t == pdu.TypeR2T || t == pdu.TypeC2HTermReq
		},
		HeaderDigest: q.hdgst, DataDigest: q.ddgst, MaxData: 1 << 30,
	})
	return nil
}

// Submit sends req, waiting for a free queue slot if all are in use. The
// callback runs later on the reader goroutine (or at once with Err set if
// the queue is closed).
func (q *Queue) Submit(req *Request) {
	var cid uint16
	select {
	case cid = <-q.free:
	case <-q.closed:
		req.Err = q.failure()
		req.Callback(req)
		return
	}
	req.Status, req.Err, req.DW0, req.DW1 = nvme.Success, nil, 0, 0
	// slots is shared with the reader goroutine; the mutex also orders a
	// Submit against the reader's final sweep of the slots when it fails.
	q.mu.Lock()
	if q.err != nil {
		err := q.err
		q.mu.Unlock()
		q.free <- cid
		req.Err = err
		req.Callback(req)
		return
	}
	q.slots[cid] = req
	q.mu.Unlock()
	if err := q.send(cid, req); err != nil {
		q.fail(err)
	}
}

func (q *Queue) send(cid uint16, req *Request) error {
	q.wmu.Lock()
	defer q.wmu.Unlock()
	hdr := q.hdrs[cid][:]
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
	_, pdo := pdu.EncodeCapsuleCmd(hdr, dataLen, q.hdgst, q.ddgst, q.align)
	if pdo == 0 {
		pdo = pdu.CapsuleCmdHLen
		if q.hdgst {
			pdo += pdu.DigestSize
		}
	}
	// Any padding up to PDO is zero: the encoder cleared it.
	q.pending = append(q.pending, hdr[:pdo])
	if dataLen > 0 {
		q.pending = append(q.pending, req.Buf)
		if q.ddgst {
			pdu.PutDigest(q.digests[cid][:], req.Buf)
			q.pending = append(q.pending, q.digests[cid][:])
		}
	}
	q.sent.Add(1)
	if q.corked {
		return nil
	}
	return q.flushLocked()
}

// flushLocked writes the pending commands (callers hold wmu).
func (q *Queue) flushLocked() error {
	if len(q.pending) == 0 {
		return nil
	}
	q.writes.Add(1)
	q.sending = q.pending
	_, err := q.sending.WriteTo(q.nc)
	clear(q.pending) // drop references to the callers' buffers
	q.pending = q.pending[:0]
	if err != nil {
		return fmt.Errorf("host: send command: %w", err)
	}
	return nil
}

// cork holds commands while the reader has another whole PDU buffered, and
// sends them once it has not: the reader is about to block, and the
// commands must not wait for it.
func (q *Queue) cork() error {
	more := q.wholePDUBuffered()
	q.wmu.Lock()
	defer q.wmu.Unlock()
	q.corked = more
	if more {
		return nil
	}
	return q.flushLocked()
}

// wholePDUBuffered reports whether the next PDU is entirely in the read
// buffer, from the PLEN of its common header (TP 8000, 3.6.1). Reader only.
func (q *Queue) wholePDUBuffered() bool {
	n := q.br.Buffered()
	if n < pdu.CommonHeaderSize {
		return false
	}
	ch, err := q.br.Peek(pdu.CommonHeaderSize) // buffered: does not block
	return err == nil && uint64(pdu.Header(ch).PLen()) <= uint64(n)
}

// Stats counts a queue's command capsules and the socket writes that
// carried them.
type Stats struct {
	Commands, Writes uint64
}

// Stats returns the queue's counters.
func (q *Queue) Stats() Stats { return Stats{Commands: q.sent.Load(), Writes: q.writes.Load()} }

// sendData answers an R2T with H2CData PDUs of at most MAXH2CDATA bytes.
func (q *Queue) sendData(req *Request, cid, ttag uint16, off, length uint32) error {
	if uint64(off)+uint64(length) > uint64(len(req.Buf)) {
		return fmt.Errorf("host: R2T for bytes %d-%d of a %d-byte command", off, off+length, len(req.Buf))
	}
	q.wmu.Lock()
	defer q.wmu.Unlock()
	if err := q.flushLocked(); err != nil { // keep commands and data in order
		return err
	}
	for length > 0 {
		n := min(length, q.maxH2C)
		var hdr [pdu.MaxHeaderSize + 64]byte
		flags := uint8(0)
		if n == length {
			flags = pdu.FlagLastPDU
		}
		hlen, pdo := pdu.EncodeData(hdr[:], pdu.TypeH2CData, flags, cid, ttag, off, n, q.hdgst, q.ddgst, q.align)
		data := req.Buf[off : off+n]
		// hdr[hlen:pdo] is zero padding (the header encoder cleared it).
		clear(hdr[hlen:pdo])
		segs := net.Buffers{hdr[:pdo], data}
		var d [pdu.DigestSize]byte
		if q.ddgst {
			pdu.PutDigest(d[:], data)
			segs = append(segs, d[:])
		}
		if _, err := segs.WriteTo(q.nc); err != nil {
			return fmt.Errorf("host: send data: %w", err)
		}
		off += n
		length -= n
	}
	return nil
}

func (q *Queue) readLoop() {
	defer close(q.done)
	var err error
	for err == nil {
		if err = q.cork(); err == nil {
			err = q.readOne()
		}
	}
	q.fail(err)
	// Only the reader completes requests, so it fails those left in flight.
	q.mu.Lock()
	var left []*Request
	for cid, req := range q.slots {
		if req != nil {
			q.slots[cid] = nil
			left = append(left, req)
		}
	}
	err = q.err
	q.mu.Unlock()
	for _, req := range left {
		req.Err = err
		req.Callback(req)
	}
}

func (q *Queue) slot(cid uint16) (*Request, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if int(cid) >= len(q.slots) || q.slots[cid] == nil {
		return nil, fmt.Errorf("host: PDU for unknown command %d", cid)
	}
	return q.slots[cid], nil
}

func (q *Queue) readOne() error {
	h, err := q.rd.ReadHeader()
	if err != nil {
		return err
	}
	switch h.Type() {
	case pdu.TypeCapsuleResp:
		cqe := pdu.CapsuleResp(h).CQE()
		req, err := q.slot(cqe.CID())
		if err != nil {
			return err
		}
		req.Status, req.DW0, req.DW1 = cqe.Status(), cqe.DW0(), cqe.DW1()
		return q.complete(cqe.CID(), req)
	case pdu.TypeC2HData:
		d := pdu.Data(h)
		req, err := q.slot(d.CCCID())
		if err != nil {
			return err
		}
		off, n := d.Offset(), q.rd.DataLen()
		if req.ToController || uint64(off)+uint64(n) > uint64(len(req.Buf)) {
			return fmt.Errorf("host: C2HData bytes %d-%d for a %d-byte buffer", off, off+n, len(req.Buf))
		}
		err = q.rd.ReadData(req.Buf[off : off+n])
		if errors.Is(err, pdu.ErrDataDigest) {
			req.Err = err
		} else if err != nil {
			return err
		}
		if h.Flags()&pdu.FlagSuccess != 0 {
			req.Status = nvme.Success
			return q.complete(d.CCCID(), req)
		}
	case pdu.TypeR2T:
		r := pdu.R2T(h)
		req, err := q.slot(r.CCCID())
		if err != nil {
			return err
		}
		return q.sendData(req, r.CCCID(), r.TTAG(), r.Offset(), r.Length())
	case pdu.TypeC2HTermReq:
		tr := pdu.TermReq(h)
		return fmt.Errorf("host: target terminated the connection: %s (fei %d): %w", tr.FES(), tr.FEI(), io.EOF)
	}
	return nil
}

// complete frees the command's slot and runs its callback corked: what the
// callback submits goes out with what the rest of the batch submits, when
// the reader has no more responses buffered.
func (q *Queue) complete(cid uint16, req *Request) error {
	q.mu.Lock()
	q.slots[cid] = nil
	q.mu.Unlock()
	q.free <- cid
	q.wmu.Lock()
	q.corked = true
	q.wmu.Unlock()
	req.Callback(req)
	return q.cork()
}

// fail records the queue's first error and closes the connection; the
// reader goroutine then fails the commands in flight.
func (q *Queue) fail(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return
	}
	q.err = err
	close(q.closed)
	q.nc.Close()
}

func (q *Queue) failure() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err == nil {
		return ErrClosed
	}
	return q.err
}

// Err returns why the queue closed, or nil while it is open.
func (q *Queue) Err() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// Close closes the connection; commands in flight fail. It returns once
// their callbacks have run.
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
