package target

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-storage/strata/internal/invariants"
	"github.com/strata-storage/strata/nvmeof/nqn"
	"github.com/strata-storage/strata/nvmeof/nvme"
	"github.com/strata-storage/strata/nvmeof/pdu"
)

// conn is one TCP connection: one queue of one controller once connected.
type conn struct {
	t   *Target
	nc  *net.TCPConn
	l   *listener
	log *slog.Logger

	br *bufio.Reader
	rd *pdu.Reader

	// Negotiated in ICReq/ICResp.
	hdgst, ddgst bool
	hostAlign    int // data alignment of PDUs we send (HPDA)

	// Set by Connect.
	qid       uint16
	sqsize    uint32
	sqFlowOff bool
	ctrl      *Controller
	ioq       atomic.Pointer[ioQueue]    // set by Connect on an I/O queue
	adminq    atomic.Pointer[adminQueue] // set once an admin queue is on its reactor

	// Admin-queue responses: the conn's goroutine and event senders both
	// make them, in order under wmu (to the socket during the handshake,
	// then to the admin queue's reactor). I/O queues write only from
	// their reactor.
	wmu     sync.Mutex
	wbuf    []byte
	sqhd    uint16 // SQ head reported in responses (admin queue)
	aborted atomic.Bool
}

func newConn(t *Target, nc *net.TCPConn, l *listener) *conn {
	nc.SetNoDelay(true)
	c := &conn{t: t, nc: nc, l: l, log: t.log.With("peer", nc.RemoteAddr().String())}
	c.br = bufio.NewReaderSize(nc, 64<<10)
	c.rd = pdu.NewReader(c.br, pdu.Config{Accept: func(t pdu.Type) bool { return t == pdu.TypeICReq }})
	return c
}

// hostToController lists what a host may send once connected.
func hostToController(t pdu.Type) bool {
	return t == pdu.TypeCapsuleCmd || t == pdu.TypeH2CData || t == pdu.TypeH2CTermReq
}

// abort ends the connection from outside its goroutine (shutdown, keep-alive
// expiry, subsystem removal): it unblocks the goroutine's reads, or ends
// the I/O queue on its reactor.
func (c *conn) abort() {
	c.aborted.Store(true)
	c.nc.SetReadDeadline(time.Unix(1, 0))
	if q := c.ioq.Load(); q != nil {
		q.abort()
	}
	if q := c.adminq.Load(); q != nil {
		q.abort()
	}
}

// serve runs the connection to its end.
func (c *conn) serve() {
	err := c.run()
	q, aq := c.ioq.Load(), c.adminq.Load()
	var fe *pdu.FatalError
	switch {
	case errors.As(err, &fe):
		c.t.countFatal()
		c.log.Warn("closing connection: malformed PDU", "qid", c.qid, "err", err)
		if q == nil && aq == nil { // a queue's reactor sent the C2HTermReq
			c.terminate(fe)
		}
	case err != nil && !c.aborted.Load() && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed):
		c.log.Info("connection ended", "qid", c.qid, "err", err)
	}
	switch {
	case q != nil:
		q.shutdown() // waits for in-flight commands, then closes the socket
	case aq != nil:
		aq.shutdown()
	default:
		c.nc.Close()
	}
	if c.ctrl != nil {
		c.ctrl.queueGone(c)
	}
}

// terminate sends a C2HTermReq for a fatal transport error (best effort).
func (c *conn) terminate(fe *pdu.FatalError) {
	b := make([]byte, pdu.MaxTermReqPLen)
	n := pdu.EncodeTermReq(b, pdu.TypeC2HTermReq, fe.Status, fe.FEI, fe.Header)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	c.nc.Write(b[:n])
}

func (c *conn) run() error {
	c.nc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := c.initConnection(); err != nil {
		return err
	}
	if err := c.connect(); err != nil {
		return err
	}
	c.nc.SetDeadline(time.Time{})
	if c.aborted.Load() {
		return net.ErrClosed
	}
	if c.qid == 0 {
		return c.adminLoop()
	}
	early, _ := c.br.Peek(c.br.Buffered()) // commands sent right after Connect
	return c.ioq.Load().serve(early)
}

// initConnection handles ICReq/ICResp (TP 8000, 3.6.2.2-3).
func (c *conn) initConnection() error {
	h, err := c.rd.ReadHeader()
	if err != nil {
		return err
	}
	req := pdu.ICReq(h)
	if req.PFV() != 0 {
		return &pdu.FatalError{Status: pdu.FatalInvalidHeader, FEI: 8, Reason: fmt.Sprintf("PFV %d", req.PFV()), Header: h}
	}
	if req.HPDA() > pdu.MaxPDA {
		return &pdu.FatalError{Status: pdu.FatalInvalidHeader, FEI: 10, Reason: fmt.Sprintf("HPDA %d", req.HPDA()), Header: h}
	}
	c.hdgst = req.Digests()&pdu.DgstHeader != 0
	c.ddgst = req.Digests()&pdu.DgstData != 0
	c.hostAlign = pdu.DataAlign(req.HPDA())
	resp := make([]byte, pdu.ICSize)
	pdu.EncodeICResp(resp, 0, req.Digests()&(pdu.DgstHeader|pdu.DgstData), MaxH2CData)
	if _, err := c.nc.Write(resp); err != nil {
		return fmt.Errorf("target: send ICResp: %w", err)
	}
	c.rd.SetConfig(pdu.Config{Accept: hostToController, HeaderDigest: c.hdgst, DataDigest: c.ddgst, MaxData: adminInCapsuleBytes})
	return nil
}

// readCapsule reads a command capsule and its in-capsule data (into buf,
// which must be large enough; checked by the Reader's MaxData).
func (c *conn) readCapsule(buf []byte) (nvme.Command, []byte, error) {
	h, err := c.rd.ReadHeader()
	if err != nil {
		return nil, nil, err
	}
	switch h.Type() {
	case pdu.TypeCapsuleCmd:
	case pdu.TypeH2CTermReq:
		return nil, nil, fmt.Errorf("target: host terminated the connection: %s: %w", pdu.TermReq(h).FES(), io.EOF)
	default:
		return nil, nil, &pdu.FatalError{Status: pdu.FatalSequence, Reason: fmt.Sprintf("%v where a command capsule was due", h.Type()), Header: h}
	}
	var cmd [nvme.CommandSize]byte
	copy(cmd[:], pdu.CapsuleCmd(h).SQE())
	data := buf[:c.rd.DataLen()]
	if err := c.rd.ReadData(data); err != nil {
		if errors.Is(err, pdu.ErrDataDigest) {
			return cmd[:], nil, err
		}
		return nil, nil, err
	}
	return cmd[:], data, nil
}

// connect handles the Fabrics Connect command, the first capsule on every
// queue (NVMe-oF 1.1, 3.3).
func (c *conn) connect() error {
	buf := make([]byte, adminInCapsuleBytes)
	cmd, data, err := c.readCapsule(buf)
	if err != nil && !errors.Is(err, pdu.ErrDataDigest) {
		return err
	}
	if cmd.Opcode() != nvme.OpcodeFabrics || cmd.FCType() != nvme.FabricsConnect {
		c.respond(cmd.CID(), nil, 0, 0, nvme.CommandSequenceError)
		return fmt.Errorf("target: first command is %v, not Connect", cmd)
	}
	// The response names the queue the Connect was sent to, refused or
	// not (its CQE's SQID).
	c.qid = cmd.ConnectQID()
	if err != nil {
		// A data digest error is not fatal (TP 8000, 3.6.2.x): the Connect
		// fails, and with it the connection.
		c.respond(cmd.CID(), nil, 0, 0, nvme.TransientTransportError)
		return fmt.Errorf("target: Connect: %w", err)
	}
	dw0, st := c.handleConnect(cmd, data)
	if err := c.respond(cmd.CID(), nil, dw0, 0, st); err != nil {
		return err
	}
	if !st.OK() {
		return fmt.Errorf("target: connect refused: %v", st)
	}
	return nil
}

// connectInvalid returns the Connect Invalid Parameters status with the
// offending parameter: inData says whether off is an offset in the Connect
// data (IATTR bit 0) or in the command.
func connectInvalid(inData bool, off uint16) (uint32, nvme.Status) {
	dw0 := uint32(off) << 16
	if inData {
		dw0 |= 1
	}
	return dw0, nvme.ConnectInvalidParam
}

// Fields of Connect that a refusal names: offsets in the Connect data
// (NVMe-oF 1.1, Figure 20) and in the command (Figure 19).
const (
	connDataCNTLID  = 16
	connDataSUBNQN  = 256
	connDataHOSTNQN = 512
	connCmdQID      = 42
	connCmdSQSIZE   = 44
)

// refuse logs why a Connect is refused, naming the field, at WARN: an
// operator looking at a host that cannot connect needs to know which of
// its settings the target did not take.
func (c *conn) refuse(field, reason string, args ...any) {
	c.log.Warn("connect refused: "+reason, append([]any{"field", field}, args...)...)
}

func (c *conn) handleConnect(cmd nvme.Command, data []byte) (uint32, nvme.Status) {
	if cmd.ConnectRecFmt() != 0 {
		c.refuse("RECFMT", "unsupported record format", "recfmt", cmd.ConnectRecFmt())
		return 0, nvme.ConnectIncompatible
	}
	// The Connect data comes in the capsule: nothing can be asked for with
	// R2T before the queue exists.
	st := nvme.SGLDescriptorTypeInvalid
	if cmd.SGL().ID() != nvme.SGLTransportDataBlock {
		st = checkDataPointer(cmd, dirHostToController, nvme.ConnectDataSize, uint32(len(data)))
	}
	if !st.OK() {
		c.refuse("SGL1", "Connect data not as the spec has it", "status", st, "sgl_length", cmd.SGL().Length(), "in_capsule", len(data))
		return 0, st
	}
	cd := nvme.ConnectData(data)
	if err := cd.Validate(); err != nil {
		field, off := "SUBNQN", uint16(connDataSUBNQN)
		if de := (*nvme.ConnectDataError)(nil); errors.As(err, &de) && de.Offset == connDataHOSTNQN {
			field, off = "HOSTNQN", connDataHOSTNQN
		}
		c.refuse(field, "malformed Connect data", "err", err)
		return connectInvalid(true, off)
	}
	hostNQN, subNQN := cd.HostNQN(), cd.SubNQN()
	// An empty host NQN is what SPDK's tools send unless told one: a
	// subsystem open to any host takes it, as SPDK's target does; one that
	// lists its hosts cannot (hostAllowed).
	if err := nqn.Validate(hostNQN); hostNQN != "" && err != nil {
		c.refuse("HOSTNQN", "invalid host NQN", "hostnqn", hostNQN, "err", err)
		return connectInvalid(true, connDataHOSTNQN)
	}
	qid, sqsize := cmd.ConnectQID(), cmd.ConnectSQSize()
	c.log = c.log.With("host", hostNQN, "subsystem", subNQN, "qid", qid)
	var sub *Subsystem
	if subNQN != nqn.Discovery {
		s, err := c.t.subsystem(subNQN)
		if err != nil {
			c.refuse("SUBNQN", "no such subsystem")
			return connectInvalid(true, connDataSUBNQN)
		}
		if !s.listensOn(c.l.addr) {
			// As if the subsystem did not exist here: it is not served on
			// this address.
			c.refuse("SUBNQN", "subsystem not served on this listener", "listener", c.l.addr)
			return connectInvalid(true, connDataSUBNQN)
		}
		if !s.hostAllowed(hostNQN) {
			c.refuse("HOSTNQN", "host not allowed")
			return 0, nvme.ConnectInvalidHost
		}
		sub = s
	}
	c.sqsize = sqsize
	c.sqFlowOff = cmd.ConnectCAttr()&nvme.CAttrDisableSQFlow != 0
	if qid == 0 {
		if sqsize < 2 || sqsize > adminQueueEntries {
			c.refuse("SQSIZE", "admin queue size out of range", "sqsize", sqsize, "max", adminQueueEntries)
			return connectInvalid(false, connCmdSQSIZE)
		}
		// Strata's controllers are dynamic: the host lets the target pick
		// (CNTLID FFFFh; NVMe-oF 1.1, 3.3, Figure 20).
		if cd.ControllerID() != 0xffff {
			c.refuse("CNTLID", "a static controller ID on the dynamic model", "cntlid", cd.ControllerID())
			return connectInvalid(true, connDataCNTLID)
		}
		ctrl, st := newController(c, sub, hostNQN, cd.HostID(), cmd.ConnectKATO())
		if !st.OK() {
			return 0, st
		}
		c.ctrl = ctrl
		c.log = c.log.With("cntlid", ctrl.id)
		c.log.Info("controller connected", "kato_ms", cmd.ConnectKATO())
		return uint32(ctrl.id), nvme.Success
	}
	if sub == nil {
		c.refuse("QID", "discovery controllers have no I/O queues")
		return connectInvalid(false, connCmdQID)
	}
	if sqsize < 2 || sqsize > MaxQueueEntries {
		c.refuse("SQSIZE", "I/O queue size out of range", "sqsize", sqsize, "max", MaxQueueEntries)
		return connectInvalid(false, connCmdSQSIZE)
	}
	ctrl := sub.controller(cd.ControllerID())
	if ctrl == nil || ctrl.hostNQN != hostNQN || ctrl.hostID != cd.HostID() {
		c.refuse("CNTLID", "no controller of this host with that ID", "cntlid", cd.ControllerID())
		return connectInvalid(true, connDataCNTLID)
	}
	q, err := newIOQueue(c, ctrl)
	if err != nil {
		c.log.Error("I/O queue setup", "err", err)
		return 0, nvme.InternalError
	}
	if st := ctrl.addIOQueue(qid, c); !st.OK() {
		q.release()
		c.refuse("QID", "queue ID taken, beyond the number of queues granted, or the controller not ready")
		return connectInvalid(false, connCmdQID)
	}
	c.ctrl = ctrl
	c.ioq.Store(q)
	return 0, nvme.Success
}

// respond sends an admin-queue (or handshake) response: C2HData with data
// if any, then the response capsule. Safe from any goroutine.
func (c *conn) respond(cid uint16, data []byte, dw0, dw1 uint32, st nvme.Status) error {
	c.t.countStatus(st)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b := c.wbuf[:0]
	var hdr [pdu.MaxHeaderSize]byte
	if len(data) > 0 && st.OK() {
		n, pdo := pdu.EncodeData(hdr[:], pdu.TypeC2HData, pdu.FlagLastPDU, cid, 0, 0, uint32(len(data)), c.hdgst, c.ddgst, c.hostAlign)
		b = append(b, hdr[:n]...)
		for len(b) < pdo {
			b = append(b, 0)
		}
		b = append(b, data...)
		if c.ddgst {
			var d [pdu.DigestSize]byte
			pdu.PutDigest(d[:], data)
			b = append(b, d[:]...)
		}
	}
	pdu.CapsuleResp(hdr[:]).CQE().Set(dw0, dw1, c.nextSQHead(), c.qid, cid, st)
	n := pdu.EncodeCapsuleResp(hdr[:], c.hdgst)
	b = append(b, hdr[:n]...)
	c.wbuf = b
	if q := c.adminq.Load(); q != nil {
		return q.send(append([]byte(nil), b...))
	}
	c.nc.SetWriteDeadline(time.Now().Add(handshakeTimeout))
	if _, err := c.nc.Write(b); err != nil {
		return fmt.Errorf("target: send response: %w", err)
	}
	return nil
}

// nextSQHead advances and returns the admin queue's SQ head (callers hold
// wmu). With SQ flow control disabled the field is reserved (0xFFFF).
func (c *conn) nextSQHead() uint16 {
	if c.sqFlowOff {
		return 0xffff
	}
	c.sqhd = uint16((uint32(c.sqhd) + 1) % max(c.sqsize, 1))
	return c.sqhd
}

// adminLoop serves the admin queue: its bytes on a reactor through the
// transport, its commands here, in order.
func (c *conn) adminLoop() error {
	q, err := newAdminQueue(c)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	c.adminq.Store(q) // responses go through the reactor from now on
	c.wmu.Unlock()
	early, _ := c.br.Peek(c.br.Buffered()) // commands sent right after Connect
	if err := q.start(early); err != nil {
		return fmt.Errorf("target: reactor: %w", err)
	}
	for {
		var cp adminCapsule
		select {
		case cp = <-q.capsules:
		case <-q.ended:
			return q.endErr
		}
		cmd := nvme.Command(cp.cmd[:])
		if !cp.digestOK {
			// Not fatal (TP 8000, 3.6.2.x): the command fails.
			if err := c.respond(cmd.CID(), nil, 0, 0, nvme.TransientTransportError); err != nil {
				return err
			}
			continue
		}
		if dir, want, ok := adminTransfer(cmd); ok {
			if st := checkDataPointer(cmd, dir, want, uint32(len(cp.data))); !st.OK() {
				if err := c.respond(cmd.CID(), nil, 0, 0, st); err != nil {
					return err
				}
				continue
			}
		}
		res := c.ctrl.execAdmin(cmd, cp.data)
		if res.held {
			continue // an Asynchronous Event Request, answered later
		}
		// Never more than the SGL describes: the host's buffer ends there.
		if n := cmd.SGL().Length(); uint64(len(res.data)) > uint64(n) {
			invariants.Assert(false, "admin data longer than its SGL")
			res = fail(nvme.InternalError)
		}
		if err := c.respond(cmd.CID(), res.data, res.dw0, res.dw1, res.status); err != nil {
			return err
		}
		if res.disconnect {
			return io.EOF
		}
	}
}
