package target_test

import (
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/nvmeof/host"
	"github.com/strata-storage/strata/nvmeof/nqn"
	"github.com/strata-storage/strata/nvmeof/nvme"
	"github.com/strata-storage/strata/nvmeof/pdu"
	"github.com/strata-storage/strata/nvmeof/target"
	"github.com/strata-storage/strata/nvmeof/wirecheck"
)

// The target is fuzzed from the host's side, through real sockets, with
// every byte it sends checked by wirecheck: framing, data within each
// command's SGL, alignment and digests, a response for every command of a
// host that kept the rules, the connection ended when the host broke one
// fatally. Two generators feed it: FuzzConnStream sends arbitrary bytes
// (after an optional valid handshake) cut at arbitrary points;
// FuzzConnProtocol turns its input into a well-formed-looking session whose
// every field the input chooses, answering the target's R2Ts. After each
// session the target must have released the connection, and a bystander
// host's I/O must still work.
//
// `go test` runs the checked-in corpus (testdata/fuzz) and TestFuzzSessions
// runs seeded random sessions; `make fuzz` runs the fuzzers for longer.

// fuzzEnv is one target shared by every input of a run: reactors, a RAM
// namespace, a controller whose I/O queues the sessions connect by hand,
// and a bystander host.
type fuzzEnv struct {
	f           *fixture
	owner       *host.Controller // the admin queue of the sessions' I/O queues
	bystander   *host.Controller
	buf         []byte
	baseConns   int
	baseBuffers int64
	// What the sessions reached, for the seeded test's log.
	verdicts  [3]int
	responses int
}

// fuzzHostNQN and fuzzHostID are the identity of owner, which I/O queue
// sessions must present.
const fuzzHostNQN = "nqn.2014-08.org.nvmexpress:uuid:0f0f0000-0000-0000-0000-000000000000"

var fuzzHostID = [16]byte{0xf, 0xf}

func newFuzzEnv(t testing.TB) *fuzzEnv {
	f := newFixture(t, nil)
	e := &fuzzEnv{f: f, buf: make([]byte, 4096)}
	e.owner = connect(t, f, host.Config{HostNQN: fuzzHostNQN, HostID: fuzzHostID, AdminOnly: true,
		IOQueues: target.MaxIOQueues, KeepAlive: 10 * time.Second})
	e.bystander = connect(t, f, host.Config{KeepAlive: 10 * time.Second})
	e.baseConns, e.baseBuffers = f.t.Stats().Connections, f.t.Stats().QueueBufferBytes
	return e
}

// after checks what must hold once a session is over: its connection and
// its buffers are gone from the target and other hosts are still served.
func (e *fuzzEnv) after(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for st := e.f.t.Stats(); st.Connections > e.baseConns || st.QueueBufferBytes > e.baseBuffers; st = e.f.t.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("target holds %d connections and %d bytes of queue buffers, %d and %d before the session",
				st.Connections, st.QueueBufferBytes, e.baseConns, e.baseBuffers)
		}
		time.Sleep(time.Millisecond)
	}
	var req host.Request
	req.SetRead(1, 0, 8, e.buf)
	do(e.bystander.IOQueues()[0], &req)
	require.NoError(t, req.Err, "the bystander's read")
	require.True(t, req.Status.OK(), "the bystander's read: %v", req.Status)
}

var fuzzLimits = wirecheck.Limits{
	InCapsule: target.InCapsuleBytes, AdminInCapsule: target.AdminInCapsuleBytes, SlowKATO: time.Minute,
}

// fuzzTrace logs every byte a session sends and receives, for a failing
// input: STRATA_FUZZ_TRACE=1 go test -run 'FuzzConnProtocol/<input>'.
var fuzzTrace = os.Getenv("STRATA_FUZZ_TRACE") != ""

// session is one host connection under check.
type session struct {
	t    *testing.T
	nc   *net.TCPConn
	mu   sync.Mutex
	chk  *wirecheck.Checker
	cond *sync.Cond // signalled when the reader fed the checker
	eof  bool
	done chan struct{}
	env  *fuzzEnv
}

func dialSession(t *testing.T, e *fuzzEnv) *session {
	nc, err := net.Dial("tcp", e.f.addr)
	require.NoError(t, err)
	s := &session{t: t, nc: nc.(*net.TCPConn), chk: wirecheck.New(fuzzLimits), done: make(chan struct{}), env: e}
	s.cond = sync.NewCond(&s.mu)
	go s.read()
	return s
}

func (s *session) read() {
	defer close(s.done)
	buf := make([]byte, 256<<10)
	for {
		n, err := s.nc.Read(buf)
		if fuzzTrace {
			s.t.Logf("received %d bytes (%v): %x", n, err, buf[:min(n, 96)])
		}
		s.mu.Lock()
		if n > 0 {
			s.chk.Received(buf[:n])
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				s.chk.Closed()
			}
			s.eof = true
		}
		s.cond.Broadcast()
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// send records b with the checker, then writes it: what the target sends
// back can only follow.
func (s *session) send(b []byte) {
	if len(b) == 0 {
		return
	}
	s.mu.Lock()
	s.chk.Sent(b)
	s.mu.Unlock()
	if fuzzTrace {
		s.t.Logf("sent %d bytes: %x", len(b), b[:min(len(b), 96)])
	}
	s.nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	s.nc.Write(b) // a target that hung up is the checker's to judge
}

// wait waits until cond holds (under the lock), the connection ends, or
// timeout passes; it reports whether cond held.
func (s *session) wait(timeout time.Duration, cond func() bool) bool {
	expired := false
	timer := time.AfterFunc(timeout, func() {
		s.mu.Lock()
		expired = true
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer timer.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for !cond() && !s.eof && !expired && s.chk.Err() == nil {
		s.cond.Wait()
	}
	return cond()
}

// maxQueueBuffers bounds the queue buffers one connection may hold: its
// queue's slots at the largest queue size, and a receive buffer, rounded
// up to the 2 MiB reservations are made of.
const maxQueueBuffers = (2*target.MaxQueueEntries*target.MaxTransferBytes + target.RecvBufSize + 2<<20 - 1) / (2 << 20) * (2 << 20)

// finish waits for the target to settle, checks the end state, and closes.
func (s *session) finish() {
	s.t.Helper()
	s.wait(2*time.Second, s.chk.Settled)
	if s.env != nil {
		if held := s.env.f.t.Stats().QueueBufferBytes - s.env.baseBuffers; held > maxQueueBuffers {
			s.t.Fatalf("one connection holds %d bytes of queue buffers, more than %d", held, maxQueueBuffers)
		}
	}
	s.mu.Lock()
	err := s.chk.Finish(!s.eof)
	s.mu.Unlock()
	s.nc.Close()
	<-s.done
	if err == nil {
		err = s.chk.Err()
	}
	if s.env != nil {
		v, _ := s.chk.Verdict()
		s.env.verdicts[v]++
		s.env.responses += s.chk.Responses()
	}
	if err != nil {
		verdict, why := s.chk.Verdict()
		s.t.Fatalf("%v (host verdict: %v %s)", err, verdict, why)
	}
}

// icReq encodes an ICReq.
func icReq(hpda, digests uint8, maxR2T uint32) []byte {
	b := make([]byte, pdu.ICSize)
	pdu.EncodeICReq(b, hpda, digests, maxR2T)
	return b
}

// capsuleBytes encodes a command capsule with in-capsule data, with the
// digests and alignment of the connection.
func capsuleBytes(sqe nvme.Command, data []byte, hdgst, ddgst bool, align int) []byte {
	b := make([]byte, pdu.MaxHeaderSize+pdu.MaxDataAlign)
	copy(pdu.CapsuleCmd(b).SQE(), sqe)
	n, pdo := pdu.EncodeCapsuleCmd(b, len(data), hdgst, ddgst, align)
	out := append([]byte(nil), b[:n]...)
	if len(data) == 0 {
		return out
	}
	out = append(append(out, make([]byte, pdo-n)...), data...)
	if ddgst {
		out = binary.LittleEndian.AppendUint32(out, pdu.Digest(data))
	}
	return out
}

// Handshakes a FuzzConnStream input may start with.
const (
	prefixNone  = iota // the input is the whole stream
	prefixICReq        // a valid ICReq first
	prefixAdmin        // ICReq and an admin queue Connect
	prefixIO           // ICReq and an I/O queue Connect to the owner's controller
	prefixCount
)

// handshake sends the valid prefix of a session and waits for the
// target's answers, so the stream that follows meets a connected queue.
func (s *session) handshake(e *fuzzEnv, prefix uint8, qid uint16) {
	if prefix == prefixNone {
		return
	}
	s.send(icReq(0, 0, 0))
	if !s.wait(2*time.Second, func() bool { _, _, _, ok := s.chk.Negotiated(); return ok }) || prefix == prefixICReq {
		return
	}
	responses := s.chk.Responses()
	if prefix == prefixAdmin {
		s.send(capsuleBytes(connectCommand(0xfff0, 0, 32, 0, 0), connectData(0xffff, testNQN, fixedHostNQN, fixedHostID), false, false, 0))
	} else {
		s.send(capsuleBytes(connectCommand(0xfff0, qid, 32, 0, 0),
			connectData(e.owner.ControllerID(), testNQN, fuzzHostNQN, fuzzHostID), false, false, 0))
	}
	s.wait(2*time.Second, func() bool { return s.chk.Responses() > responses })
}

// runStream is one FuzzConnStream session: a valid prefix, then stream
// written in pieces whose lengths come from cuts.
func runStream(t *testing.T, e *fuzzEnv, prefix uint8, stream, cuts []byte) {
	s := dialSession(t, e)
	s.handshake(e, prefix%prefixCount, uint16(len(stream)%target.MaxIOQueues)+1)
	for len(stream) > 0 {
		n := len(stream)
		if len(cuts) > 0 {
			n = min(n, int(cuts[0])+1)
			cuts = cuts[1:]
		}
		s.send(stream[:n])
		stream = stream[n:]
		if len(cuts) > 0 && cuts[0] == 0xff { // let the target take this piece alone
			time.Sleep(50 * time.Microsecond)
		}
	}
	s.finish()
	e.after(t)
}

func FuzzConnStream(f *testing.F) {
	e := newFuzzEnv(f)
	// Seeds: a few valid and invalid streams for each prefix.
	read := rawIO(nvme.IORead, 1, 0, 4096, nvme.SGLTransportDataBlock)
	write := rawIO(nvme.IOWrite, 2, 8, 512, nvme.SGLDataBlockOffset)
	ident := rawCommand(nvme.AdminIdentify, 3, 0, 4096)
	ident.SetCDW(10, uint32(nvme.CNSController))
	f.Add(uint8(prefixNone), icReq(0, 0, 0), []byte{3, 7, 200})
	f.Add(uint8(prefixNone), icReq(22, 3, 0), []byte{})
	f.Add(uint8(prefixICReq), capsuleBytes(connectCommand(1, 0, 32, 0, 0), connectData(0xffff, testNQN, fixedHostNQN, fixedHostID), false, false, 0), []byte{10, 0xff, 60})
	f.Add(uint8(prefixAdmin), capsuleBytes(ident, nil, false, false, 0), []byte{})
	f.Add(uint8(prefixIO), append(capsuleBytes(read, nil, false, false, 0), capsuleBytes(write, make([]byte, 512), false, false, 0)...), []byte{1, 2, 3, 0xff})
	f.Add(uint8(prefixIO), []byte{0x06, 0, 24, 24, 0x18, 0, 0, 0}, []byte{})
	f.Fuzz(func(t *testing.T, prefix uint8, stream, cuts []byte) {
		runStream(t, e, prefix, stream, cuts)
	})
}

// choices turns fuzz input into the decisions of a session: each call
// takes bytes, and an exhausted input answers 0 (the plain choice).
type choices struct{ b []byte }

func (c *choices) byte() byte {
	if len(c.b) == 0 {
		return 0
	}
	v := c.b[0]
	c.b = c.b[1:]
	return v
}

func (c *choices) n(n int) int { return int(c.u16()) % n }

func (c *choices) u16() uint16 { return uint16(c.byte()) | uint16(c.byte())<<8 }

func (c *choices) u32() uint32 { return uint32(c.u16()) | uint32(c.u16())<<16 }

// rarely is true for one input byte value in k: mutations stay rare, so
// most of a session is well formed and reaches deep.
func (c *choices) rarely(k int) bool { return c.n(k) == k-1 }

func (c *choices) empty() bool { return len(c.b) == 0 }

// protocolSession is the state of a FuzzConnProtocol session.
type protocolSession struct {
	*session
	c            *choices
	hdgst, ddgst bool
	align        int // CPDA's
	admin        bool
	nextCID      uint16
	pending      []wirecheck.R2T
	data         []byte // what writes send
}

func (p *protocolSession) negotiated() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, d, cpda, ok := p.chk.Negotiated()
	p.hdgst, p.ddgst, p.align = h, d, pdu.DataAlign(min(cpda, pdu.MaxPDA))
	return ok
}

// ended reports whether the target closed the connection.
func (p *protocolSession) ended() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.eof
}

func (p *protocolSession) hostVerdict() wirecheck.Verdict {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, _ := p.chk.Verdict()
	return v
}

// mutate sometimes damages an encoded PDU: a flipped byte in its header,
// or the PDU cut short.
func (p *protocolSession) mutate(b []byte) []byte {
	switch {
	case p.c.rarely(96):
		i := p.c.n(min(len(b), pdu.CapsuleCmdHLen+8))
		b[i] ^= 1 << p.c.n(8)
	case p.c.rarely(192):
		b = b[:p.c.n(len(b))]
	}
	return b
}

// sendPDUs writes b whole or cut in two, as the input chooses.
func (p *protocolSession) sendPDUs(b []byte) {
	if len(b) > 1 && p.c.rarely(4) {
		cut := 1 + p.c.n(len(b)-1)
		p.send(b[:cut])
		time.Sleep(20 * time.Microsecond)
		b = b[cut:]
	}
	p.send(b)
}

var (
	adminOps = []uint8{nvme.AdminIdentify, nvme.AdminGetLogPage, nvme.AdminSetFeatures, nvme.AdminGetFeatures,
		nvme.AdminAsyncEvent, nvme.AdminKeepAlive, nvme.AdminAbort, nvme.OpcodeFabrics, 0x01, 0x10, 0xc1}
	ioOps   = []uint8{nvme.IORead, nvme.IOWrite, nvme.IOFlush, nvme.IOWriteZeroes, nvme.IODatasetMgmt, nvme.IOCompare, nvme.OpcodeFabrics, 0x04, 0x0d, 0x81}
	cnsList = []uint8{nvme.CNSNamespace, nvme.CNSController, nvme.CNSActiveNSList, nvme.CNSNSDescriptors, 0x05, 0x06, 0x10, 0xff}
	logIDs  = []uint8{nvme.LogErrorInfo, nvme.LogSMART, nvme.LogFirmwareSlot, nvme.LogChangedNSList, nvme.LogCommandsEffects, nvme.LogDiscovery, 0x42}
	featIDs = []uint8{nvme.FeatNumQueues, nvme.FeatKeepAliveTimer, nvme.FeatAsyncEventConfig, nvme.FeatVolatileCache, nvme.FeatArbitration, 0x81, 0x7e}
	// Disconnect ends a session: the generator sends it rarely, apart.
	fabricFCs = []uint8{nvme.FabricsPropertyGet, nvme.FabricsPropertySet, nvme.FabricsConnect, nvme.FabricsAuthSend, 0x7f}
)

func pick(c *choices, l []uint8) uint8 { return l[c.n(len(l))] }

// command builds the next command of the session, mostly well formed.
func (p *protocolSession) command() (nvme.Command, []byte) {
	c := p.c
	cid := p.nextCID
	p.nextCID++
	if c.rarely(64) {
		cid = uint16(c.n(int(p.nextCID))) // reuse an ID
	}
	var cmd nvme.Command
	var data []byte
	if p.admin {
		cmd = rawCommand(pick(c, adminOps), cid, 0, 0)
		switch cmd.Opcode() {
		case nvme.AdminIdentify:
			cmd.SetCDW(10, uint32(pick(c, cnsList)))
			cmd.SetNSID([]uint32{0, 1, 2, 0xffffffff}[c.n(4)])
			cmd.SGL().Set(nvme.SGLTransportDataBlock, 0, nvme.IdentifySize)
		case nvme.AdminGetLogPage:
			n := []uint32{4, 64, 512, 1024, 4096, 65536, 256 << 10}[c.n(7)]
			cmd.SetGetLogPage(pick(c, logIDs), n, uint64(c.n(5))*4)
			if c.rarely(8) {
				cmd.SetCDW(10, c.u32())
			}
			cmd.SGL().Set(nvme.SGLTransportDataBlock, 0, n)
		case nvme.AdminSetFeatures, nvme.AdminGetFeatures:
			cmd.SetCDW(10, uint32(pick(c, featIDs)))
			// Keep-alive values stay long enough not to expire in a session.
			cmd.SetCDW(11, []uint32{0, 1, 0x3f003f, 120000, 1 << 8}[c.n(5)])
		case nvme.OpcodeFabrics:
			cmd.SetFCType(pick(c, fabricFCs))
			switch cmd.FCType() {
			case nvme.FabricsPropertyGet:
				cmd.SetProperty(false, c.rarely(2), []uint32{0, 8, 0x14, 0x1c, 0x20, 0x40}[c.n(6)], 0)
			case nvme.FabricsPropertySet:
				// Mostly CC as it is (enabled); now and then a shutdown, a
				// reset (after which only a new enable gets work done), or
				// bad values.
				cc := uint64(1 | 6<<16 | 4<<20)
				if c.rarely(4) {
					cc = []uint64{0, cc | 1<<14, 6<<16 | 4<<20 | 1<<14, 1, cc | 2<<14}[c.n(5)]
				}
				cmd.SetProperty(true, c.rarely(8), 0x14, cc)
			case nvme.FabricsConnect:
				cmd.SGL().Set(nvme.SGLDataBlockOffset, 0, nvme.ConnectDataSize)
				data = connectData(0xffff, testNQN, fixedHostNQN, fixedHostID)
			}
		}
	} else {
		op := pick(c, ioOps)
		blocks := uint32(1 + c.n(256))
		if c.rarely(16) {
			blocks = uint32(c.u16()) + 1
		}
		cmd = rawIO(op, cid, uint64(c.n(4096)), int(blocks)*512, nvme.SGLTransportDataBlock)
		cmd.SetNSID([]uint32{1, 1, 1, 0, 2, 0xffffffff}[c.n(6)])
		bytes := blocks * 512
		switch op {
		case nvme.IOWrite, nvme.IOCompare:
			if bytes <= target.InCapsuleBytes && c.rarely(2) {
				cmd.SGL().Set(nvme.SGLDataBlockOffset, 0, bytes)
				data = p.data[:bytes]
			}
			if c.rarely(4) {
				cmd.SetCDW(12, cmd.CDW(12)|1<<30) // FUA
			}
		case nvme.IODatasetMgmt:
			ranges := 1 + c.n(4)
			cmd.SetCDW(10, uint32(ranges-1))
			cmd.SetCDW(11, uint32(c.n(8)))
			data = make([]byte, 16*ranges)
			for i := range ranges {
				binary.LittleEndian.PutUint32(data[16*i+4:], uint32(c.n(64)))
				binary.LittleEndian.PutUint64(data[16*i+8:], uint64(c.n(8192)))
			}
			cmd.SGL().Set(nvme.SGLDataBlockOffset, 0, uint32(len(data)))
		case nvme.IOFlush, nvme.IOWriteZeroes:
			cmd.SGL().Set(nvme.SGLTransportDataBlock, 0, 0)
		case nvme.OpcodeFabrics:
			cmd.SetFCType(pick(c, fabricFCs))
		}
	}
	// Rarely, any field at all.
	if c.rarely(12) {
		cmd.SetFlags(c.byte())
	}
	if c.rarely(12) {
		sgl := cmd.SGL()
		sgl.Set([]uint8{0x00, 0x01, 0x10, 0x20, 0x40, 0x5a, 0x50, 0xf0}[c.n(8)], uint64(c.n(3))*16, sgl.Length())
	}
	if c.rarely(6) {
		// An SGL that disagrees with the transfer the command asks for: a
		// target must never move more than the SGL describes.
		sgl := cmd.SGL()
		n := sgl.Length()
		n = []uint32{n / 2, n - 4, n + 4, 2 * n, 4, 0, c.u32() % (256 << 10)}[c.n(7)]
		sgl.Set(sgl.ID(), sgl.Address(), n)
	}
	if c.rarely(16) {
		cmd[40+c.n(24)] = c.byte()
	}
	return cmd, data
}

// answer sends the data the target asked for in R2T r, in one or more
// H2CData PDUs, mostly well formed.
func (p *protocolSession) answer(r wirecheck.R2T) {
	c := p.c
	pieces := 1 + c.n(3)
	off, left := r.Offset, r.Len
	var out []byte
	for i := 0; left > 0; i++ {
		n := left
		if i < pieces-1 {
			n = min(left, 512*uint32(1+c.n(16)))
		}
		cid, ttag, o, dl := r.CID, r.TTAG, off, n
		switch {
		case c.rarely(32):
			ttag = c.u16() % 300
		case c.rarely(32):
			o += 512
		case c.rarely(32):
			cid++
		case c.rarely(32):
			dl = n + 4
		}
		flags := uint8(0)
		if n == left {
			flags = pdu.FlagLastPDU
		}
		h := make([]byte, pdu.MaxHeaderSize+pdu.MaxDataAlign)
		hn, pdo := pdu.EncodeData(h, pdu.TypeH2CData, flags, cid, ttag, o, dl, p.hdgst, p.ddgst, p.align)
		if dl != n { // DATAL says more than PLEN carries
			binary.LittleEndian.PutUint32(h[16:], dl)
			_, plen := pdu.Layout(pdu.DataHLen, int(n), p.hdgst, p.ddgst, p.align)
			binary.LittleEndian.PutUint32(h[4:], plen)
			if p.hdgst {
				pdu.PutDigest(h[pdu.DataHLen:], h[:pdu.DataHLen])
			}
		}
		pduBytes := append(append(append([]byte(nil), h[:hn]...), make([]byte, pdo-hn)...), p.data[:n]...)
		if p.ddgst {
			d := pdu.Digest(p.data[:n])
			if c.rarely(32) {
				d++
			}
			pduBytes = binary.LittleEndian.AppendUint32(pduBytes, d)
		}
		out = append(out, p.mutate(pduBytes)...)
		off += n
		left -= n
	}
	p.sendPDUs(out)
}

// takeR2Ts collects the R2Ts the target sent.
func (p *protocolSession) takeR2Ts() {
	p.mu.Lock()
	p.pending = append(p.pending, p.chk.TakeR2Ts()...)
	p.mu.Unlock()
}

// runProtocol is one FuzzConnProtocol session.
func runProtocol(t *testing.T, e *fuzzEnv, input []byte) {
	c := &choices{b: input}
	s := dialSession(t, e)
	p := &protocolSession{session: s, c: c, data: make([]byte, 256<<10)}
	for i := range p.data {
		p.data[i] = byte(i * 7)
	}
	kind := c.n(4) // 0, 1: I/O queue; 2: admin; 3: discovery
	p.admin = kind >= 2

	hpda, digests := uint8(c.n(32)), uint8(c.n(4))
	if c.rarely(32) {
		hpda = c.byte()
	}
	var maxR2T uint32
	if c.rarely(4) {
		maxR2T = uint32(c.n(4))
	}
	p.sendPDUs(p.mutate(icReq(hpda, digests, maxR2T)))
	// Until the ICResp, or until the target owes none (an ICReq cut short
	// or refused).
	s.wait(2*time.Second, func() bool { _, _, _, ok := s.chk.Negotiated(); return ok || s.chk.Settled() })
	if !p.negotiated() {
		s.finish()
		e.after(t)
		return
	}

	// Connect.
	sub, hostNQN, hostID, cntlid, qid := testNQN, fixedHostNQN, fixedHostID, uint16(0xffff), uint16(0)
	switch kind {
	case 0, 1:
		hostNQN, hostID, cntlid = fuzzHostNQN, fuzzHostID, e.owner.ControllerID()
		qid = uint16(1 + c.n(target.MaxIOQueues))
	case 3:
		sub = nqn.Discovery
	}
	switch {
	case c.rarely(24):
		hostNQN = []string{"", "nqn.bad", "nqn.2014-08.org.nvmexpress:uuid:ffffffff-0000-0000-0000-000000000000"}[c.n(3)]
	case c.rarely(24):
		sub = "nqn.2024-01.io.strata:none"
	case c.rarely(24):
		cntlid = c.u16()
	case c.rarely(24):
		qid = c.u16() % 70
	}
	sqsize := uint32([]int{32, 128, 16, 32, 128, 2}[c.n(6)])
	if c.rarely(24) {
		sqsize = uint32(c.u16()) + 1
	}
	var cattr uint8
	if c.rarely(4) {
		cattr = nvme.CAttrDisableSQFlow
	}
	katoMs := uint32(0)
	if c.rarely(8) {
		katoMs = 120000
	}
	conn := connectCommand(p.nextCID, qid, sqsize, cattr, katoMs)
	p.nextCID++
	data := connectData(cntlid, sub, hostNQN, hostID)
	if c.rarely(24) {
		conn.SGL().Set(nvme.SGLDataBlockOffset, 0, uint32(c.n(2048)))
	}
	p.sendPDUs(p.mutate(capsuleBytes(conn, data, p.hdgst, p.ddgst, p.align)))
	if p.admin && !c.rarely(16) {
		// Enable the controller, as a host does before anything else: until
		// then only fabrics commands do anything.
		enable := rawCommand(nvme.OpcodeFabrics, p.nextCID, 0, 0)
		enable.SetProperty(true, false, 0x14, 1|6<<16|4<<20)
		p.nextCID++
		p.sendPDUs(capsuleBytes(enable, nil, p.hdgst, false, p.align))
	}

	// Commands, and data for the target's R2Ts, until the input runs out.
	for step := 0; step < 64 && !c.empty() && p.hostVerdict() != wirecheck.MustEnd && !p.ended(); step++ {
		p.takeR2Ts()
		switch {
		case p.admin && c.rarely(256):
			disc := rawCommand(nvme.OpcodeFabrics, p.nextCID, 0, 0)
			disc.SetFCType(nvme.FabricsDisconnect)
			p.nextCID++
			p.sendPDUs(capsuleBytes(disc, nil, p.hdgst, false, p.align))
		case len(p.pending) > 0 && c.n(3) > 0:
			i := c.n(len(p.pending))
			r := p.pending[i]
			p.pending = append(p.pending[:i], p.pending[i+1:]...)
			p.answer(r)
		case c.rarely(256):
			b := make([]byte, c.n(200))
			for i := range b {
				b[i] = c.byte()
			}
			p.send(b)
		case c.rarely(512):
			b := make([]byte, pdu.MaxTermReqPLen)
			p.send(b[:pdu.EncodeTermReq(b, pdu.TypeH2CTermReq, pdu.FatalStatus(1+c.n(6)), 0, nil)])
		case c.rarely(8):
			s.wait(time.Duration(c.n(2000))*time.Microsecond, func() bool { return false })
		default:
			cmd, data := p.command()
			b := capsuleBytes(cmd, data, p.hdgst, p.ddgst && len(data) > 0, p.align)
			if p.ddgst && len(data) > 0 && c.rarely(32) {
				b[len(b)-1] ^= 0xff // data digest: fails the command alone
			}
			p.sendPDUs(p.mutate(b))
		}
	}
	// Answer the R2Ts that come, so that every write can finish.
	for range 256 {
		p.takeR2Ts()
		if len(p.pending) == 0 {
			s.wait(500*time.Millisecond, func() bool { return s.chk.Settled() || s.chk.NewR2Ts() > 0 })
			if p.takeR2Ts(); len(p.pending) == 0 {
				break
			}
		}
		r := p.pending[0]
		p.pending = p.pending[1:]
		p.answer(r)
	}
	s.finish()
	e.after(t)
}

func FuzzConnProtocol(f *testing.F) {
	e := newFuzzEnv(f)
	rng := rand.New(rand.NewPCG(7, 7))
	for range 16 {
		b := make([]byte, 64+rng.IntN(512))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, input []byte) {
		runProtocol(t, e, input)
	})
}

// TestFuzzSessions runs seeded random sessions of both generators on every
// `go test`, beyond the checked-in corpus.
func TestFuzzSessions(t *testing.T) {
	e := newFuzzEnv(t)
	goroutines := runtime.NumGoroutine()
	rng := rand.New(rand.NewPCG(2026, 12))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	for i := range 200 {
		in := random(32 + rng.IntN(1024))
		if !t.Run("protocol", func(t *testing.T) { runProtocol(t, e, in) }) {
			t.Fatalf("protocol session %d failed; input %x", i, in)
		}
	}
	for i := range 100 {
		prefix, stream, cuts := uint8(rng.IntN(prefixCount)), random(rng.IntN(600)), random(rng.IntN(8))
		if !t.Run("stream", func(t *testing.T) { runStream(t, e, prefix, stream, cuts) }) {
			t.Fatalf("stream session %d failed; prefix %d stream %x cuts %x", i, prefix, stream, cuts)
		}
	}
	t.Logf("sessions by host verdict (valid, may end, must end): %v; %d responses checked", e.verdicts, e.responses)
	// Every session's goroutines, the target's and the harness's, are gone.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before the sessions:\n%s", runtime.NumGoroutine(), goroutines, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
