// Package wirecheck checks one NVMe/TCP connection, as its host sees it,
// against what a target must do whatever the host sends: the transport's
// framing rules (NVMe/TCP Transport Specification 1.0, TP 8000, 3.6) and
// the data transfer rules of NVMe over Fabrics. Fuzzers and tests feed it
// the bytes the host sent and the bytes it received, in the order they
// happened; it reports the first thing the target did wrong.
//
// What it checks of the target:
//
//   - every PDU is well formed: a type a controller may send at that point,
//     the fixed HLEN, header and data digests as negotiated and correct,
//     PDO aligned to the host's HPDA, PLEN consistent;
//   - ICResp within the transport's limits (PFV 0, CPDA <= 31, only the
//     digests asked for, MAXH2CDATA >= 4096 and a multiple of 4);
//   - C2HData only for commands that move data to the host, in order and
//     within the bytes the command's SGL describes; R2T only for commands
//     whose data is due through R2T, within their SGL, no more at once than
//     the host's MAXR2T allows, with transfer tags not in use;
//   - one response per command, on the queue's SQID; a read that succeeds
//     delivered all its data; a write that succeeds received all of its;
//   - a C2HTermReq is the last thing sent before the connection closes;
//   - the connection ends when the host committed a fatal transport error
//     (must), and does not end while the host kept the rules (unless it
//     has a reason: a refused Connect, a Disconnect, a keep-alive timeout);
//   - nothing is left unanswered while the host kept the rules (Settled).
//
// To know what the host asked, the checker parses the host's stream by the
// same rules, independently of the code under test. Host errors a target
// may overlook (a duplicate command ID, more commands than the queue size)
// relax the checks that depend on them; see Verdict.
//
// Limits: one queue per Checker; block sizes are not known, so transfers
// are checked against SGL lengths.
package wirecheck

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// Verdict is what the host's stream so far obliges the target to do.
type Verdict uint8

const (
	// Valid: the host kept every rule; the target must serve it.
	Valid Verdict = iota
	// MayEnd: the host broke a rule a target may overlook (or may refuse
	// by ending the connection). The target must still frame what it
	// sends correctly.
	MayEnd
	// MustEnd: a fatal transport error; the target must end the connection
	// (a C2HTermReq, then close) and act on nothing that follows.
	MustEnd
)

func (v Verdict) String() string {
	return [...]string{"valid", "may end", "must end"}[v]
}

// Limits are what the target under test accepts from a host.
type Limits struct {
	// InCapsule is the in-capsule data an I/O queue takes (IOCCSZ less the
	// 64-byte command); AdminInCapsule the admin queue's.
	InCapsule, AdminInCapsule uint32
	// SlowKATO is the smallest keep-alive timeout that cannot expire while
	// a check runs: a host that asks for less may see its connection end.
	SlowKATO time.Duration
}

// ErrViolation matches every error the checker reports.
var ErrViolation = errors.New("wirecheck: target violated the protocol")

// Violation is something the target did wrong.
type Violation struct {
	Rule   string // a short name, for grouping
	Detail string
}

func (v *Violation) Error() string { return fmt.Sprintf("wirecheck: %s: %s", v.Rule, v.Detail) }

// Is makes errors.Is(err, ErrViolation) true.
func (v *Violation) Is(target error) bool { return target == ErrViolation }

func violation(rule, format string, args ...any) error {
	return &Violation{Rule: rule, Detail: fmt.Sprintf(format, args...)}
}

// PDU types and header sizes (TP 8000, 3.6.1, Figure 19).
const (
	typeICReq       = 0x00
	typeICResp      = 0x01
	typeH2CTermReq  = 0x02
	typeC2HTermReq  = 0x03
	typeCapsuleCmd  = 0x04
	typeCapsuleResp = 0x05
	typeH2CData     = 0x06
	typeC2HData     = 0x07
	typeR2T         = 0x09

	chLen       = 8
	icLen       = 128
	termLen     = 24
	termMaxPLen = 152
	cmdHLen     = 72
	respHLen    = 24
	dataHLen    = 24
	r2tHLen     = 24
	digestLen   = 4

	flagHDGST   = 1 << 0
	flagDDGST   = 1 << 1
	flagLast    = 1 << 2
	flagSuccess = 1 << 3

	maxPDA = 31
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// command is one command the host sent, as far as the checker follows it.
type command struct {
	cid       uint16
	opcode    uint8
	fctype    uint8
	dir       uint8  // 1: host to controller, 2: controller to host, 3: both, 0: none
	sglLen    uint32 // bytes the data pointer describes
	viaR2T    bool   // host data comes through R2T (Transport Data Block, nothing in the capsule)
	held      bool   // an Asynchronous Event Request: answered whenever
	c2h       uint32 // C2HData bytes received
	r2tAsked  uint32 // bytes R2Ts asked for
	h2cSent   uint32 // H2CData bytes sent
	r2tsOpen  int    // R2Ts whose data is not all sent
	connect   bool   // a Fabrics Connect
	ends      bool   // once answered, the target may close (Disconnect, refused Connect...)
	afterFail bool   // sent after a command whose failure ends the connection
}

// r2t is an R2T the host received and has not answered in full.
type r2t struct {
	cmd      *command
	off, len uint32
	sent     uint32
}

// Checker follows one connection. It is not safe for concurrent use; feed
// it in the order things happened.
type Checker struct {
	lim Limits

	// Host side.
	hbuf      []byte
	verdict   Verdict
	why       string // first rule the host broke
	hostTerm  bool   // the host sent an H2CTermReq
	hostEOF   bool   // the host closed its side
	icReqSeen bool
	hpda      uint8
	asked     uint8 // digests asked for
	maxR2T    uint32
	qid       uint16
	sqsize    uint32
	flowOff   bool
	first     bool // a capsule has been sent
	stopped   bool // the target stops reading after an answered command (see command.ends)

	// Target side.
	tbuf      []byte
	icResp    bool
	hdgst     bool
	ddgst     bool
	cpda      uint8
	maxH2C    uint32
	termSeen  bool
	closed    bool
	endOK     string // a reason the target may end the connection
	failed    error
	cmds      map[uint16][]*command // outstanding, by CID (several: a host reusing CIDs)
	order     []*command            // outstanding, in the order sent
	r2ts      map[uint16]*r2t       // by transfer tag
	r2tEvents []R2T
	responses int
}

// New returns a checker for a connection to a target with limits lim.
func New(lim Limits) *Checker {
	return &Checker{lim: lim, cmds: map[uint16][]*command{}, r2ts: map[uint16]*r2t{}}
}

// Verdict returns what the host's stream so far obliges the target to,
// and the first rule it broke.
func (c *Checker) Verdict() (Verdict, string) { return c.verdict, c.why }

// Err returns the first violation found, if any.
func (c *Checker) Err() error { return c.failed }

// Responses counts the command responses received.
func (c *Checker) Responses() int { return c.responses }

// R2T is an R2T the host received: what it asks the host to send.
type R2T struct {
	CID, TTAG   uint16
	Offset, Len uint32
}

// NewR2Ts counts the R2Ts TakeR2Ts would return.
func (c *Checker) NewR2Ts() int { return len(c.r2tEvents) }

// TakeR2Ts returns the R2Ts received since the last call.
func (c *Checker) TakeR2Ts() []R2T {
	out := c.r2tEvents
	c.r2tEvents = nil
	return out
}

// Negotiated returns the digests and the target's data alignment (CPDA)
// once the ICResp arrived.
func (c *Checker) Negotiated() (hdgst, ddgst bool, cpda uint8, ok bool) {
	return c.hdgst, c.ddgst, c.cpda, c.icResp
}

func (c *Checker) hostBroke(v Verdict, format string, args ...any) {
	if v > c.verdict {
		c.verdict = v
		c.why = fmt.Sprintf(format, args...)
	}
}

func (c *Checker) fail(err error) error {
	if c.failed == nil {
		c.failed = err
	}
	return c.failed
}

// Sent records bytes the host wrote.
func (c *Checker) Sent(b []byte) {
	c.hbuf = append(c.hbuf, b...)
	c.parseHost()
}

// HostClosed records that the host shut down its side of the connection.
func (c *Checker) HostClosed() {
	c.parseHost()
	c.hostEOF = true
}

// Received records bytes the host read and checks them.
func (c *Checker) Received(b []byte) error {
	if c.failed != nil {
		return c.failed
	}
	if c.closed {
		return c.fail(violation("after-close", "bytes after the connection closed"))
	}
	c.tbuf = append(c.tbuf, b...)
	for c.failed == nil {
		n, err := c.targetPDU(c.tbuf)
		if err != nil {
			return c.fail(err)
		}
		if n == 0 {
			break
		}
		c.tbuf = c.tbuf[n:]
		c.parseHost() // what a new ICResp lets us frame
	}
	return c.failed
}

// Closed records that the target closed the connection (EOF), and checks
// that it could.
func (c *Checker) Closed() error {
	if c.failed != nil || c.closed {
		return c.failed
	}
	c.closed = true
	if len(c.tbuf) > 0 {
		return c.fail(violation("cut-pdu", "the connection closed %d bytes into a PDU", len(c.tbuf)))
	}
	if reason := c.endReason(); reason == "" {
		return c.fail(violation("closed-valid", "closed a connection whose host kept the rules (%d responses so far)", c.responses))
	}
	return nil
}

// endReason says why the target may end the connection now, or "".
func (c *Checker) endReason() string {
	switch {
	case c.verdict > Valid:
		return "host error: " + c.why
	case c.hostTerm:
		return "the host sent an H2CTermReq"
	case c.hostEOF:
		return "the host closed its side"
	case c.endOK != "":
		return c.endOK
	}
	return ""
}

// Owed counts what the target still owes the host: the ICResp to a whole
// ICReq, responses to commands sent while the host kept the rules, and
// R2Ts for data not yet asked for. AERs are not owed: the target answers
// them when an event comes.
func (c *Checker) Owed() int {
	if c.endReason() != "" || c.closed || c.termSeen {
		return 0
	}
	n := 0
	if c.icReqSeen && !c.icResp {
		n++
	}
	for _, cmd := range c.order {
		switch {
		case cmd.held || cmd.afterFail:
		case cmd.viaR2T && cmd.r2tAsked < cmd.sglLen && cmd.r2tsOpen == 0:
			n++ // an R2T is due
		case cmd.viaR2T && cmd.h2cSent < cmd.sglLen:
			// The host owes data.
		default:
			n++
		}
	}
	return n
}

// Settled reports whether the target has ended the connection, or owes
// nothing (Owed is 0) to a host that did not oblige it to end it.
func (c *Checker) Settled() bool {
	return c.closed || c.termSeen || c.verdict != MustEnd && c.Owed() == 0
}

// Finish checks the end state after the host stopped waiting: open says
// the connection was still open. It is a violation to leave a connection
// open after a fatal error, or to owe a host that kept the rules.
func (c *Checker) Finish(open bool) error {
	if c.failed != nil {
		return c.failed
	}
	if c.verdict == MustEnd && open && !c.termSeen {
		return c.fail(violation("left-open", "the connection stayed open after a fatal error: %s", c.why))
	}
	if open && !c.termSeen {
		if n := c.Owed(); n > 0 {
			return c.fail(violation("unanswered", "%d commands unanswered (%d responses received)", n, c.responses))
		}
	}
	return nil
}

// parseHost frames what the host sent, as far as it can: before the ICResp
// only the ICReq (digests are not known yet), after a fatal error nothing.
func (c *Checker) parseHost() {
	for c.verdict < MustEnd && !c.hostTerm {
		n := c.hostPDU(c.hbuf)
		if n == 0 {
			return
		}
		c.hbuf = c.hbuf[n:]
	}
	if c.verdict == MustEnd || c.hostTerm {
		c.hbuf = c.hbuf[:0] // the target must not act on what follows
	}
}

// hostPDU takes one PDU from b if it is all there; it returns its length,
// or 0 if more bytes are needed (or the header is fatal: see verdict).
func (c *Checker) hostPDU(b []byte) int {
	if len(b) < chLen {
		return 0
	}
	typ, flags, hlen, pdo := b[0], b[1], int(b[2]), int(b[3])
	plen := binary.LittleEndian.Uint32(b[4:])
	if !c.icReqSeen {
		if typ != typeICReq {
			c.hostBroke(MustEnd, "PDU type %#x before ICReq", typ)
			return 0
		}
		if hlen != icLen {
			c.hostBroke(MustEnd, "ICReq HLEN %d", hlen)
			return 0
		}
		if len(b) < icLen {
			return 0 // the rest is judged once the header is in
		}
		if plen != icLen || pdo != 0 {
			c.hostBroke(MustEnd, "ICReq PLEN %d PDO %d", plen, pdo)
			return 0
		}
		c.icReqSeen = true
		if flags != 0 {
			c.hostBroke(MayEnd, "ICReq flags %#x", flags)
		}
		if pfv := binary.LittleEndian.Uint16(b[8:]); pfv != 0 {
			c.hostBroke(MustEnd, "ICReq PFV %d", pfv)
		}
		if c.hpda = b[10]; c.hpda > maxPDA {
			c.hostBroke(MustEnd, "ICReq HPDA %d", c.hpda)
		}
		c.asked = b[11] & 3
		if b[11]&^3 != 0 {
			c.hostBroke(MayEnd, "ICReq DGST reserved bits %#x", b[11])
		}
		c.maxR2T = binary.LittleEndian.Uint32(b[12:])
		return icLen
	}
	if !c.icResp {
		return 0 // framing depends on the digests the target grants
	}
	want := map[uint8]int{typeCapsuleCmd: cmdHLen, typeH2CData: dataHLen, typeH2CTermReq: termLen}[typ]
	if want == 0 {
		c.hostBroke(MustEnd, "PDU type %#x from a host", typ)
		return 0
	}
	if hlen != want {
		c.hostBroke(MustEnd, "type %#x HLEN %d, want %d", typ, hlen, want)
		return 0
	}
	if typ == typeH2CTermReq {
		if len(b) < termLen {
			return 0
		}
		if plen < termLen || plen > termMaxPLen || pdo != 0 && pdo != termLen {
			c.hostBroke(MustEnd, "H2CTermReq PLEN %d PDO %d", plen, pdo)
			return 0
		}
		if uint32(len(b)) < plen {
			return 0
		}
		c.hostTerm = true
		return int(plen)
	}
	// A target judges the rest once the whole header (and its digest) is
	// in: before that it cannot.
	hend := hlen
	if c.hdgst {
		hend += digestLen
	}
	if len(b) < hend {
		return 0
	}
	if flags&flagHDGST != 0 != c.hdgst {
		c.hostBroke(MustEnd, "type %#x HDGST flag %v, negotiated %v", typ, flags&flagHDGST != 0, c.hdgst)
		return 0
	}
	if c.hdgst && binary.LittleEndian.Uint32(b[hlen:]) != crc(b[:hlen]) {
		c.hostBroke(MustEnd, "type %#x header digest", typ)
		return 0
	}
	// Layout: PDO, PLEN, data digest.
	if flags&flagDDGST != 0 && !c.ddgst {
		c.hostBroke(MustEnd, "type %#x DDGST flag without data digests", typ)
		return 0
	}
	var dataLen uint32
	ddgst := false
	if pdo == 0 {
		if plen != uint32(hend) {
			c.hostBroke(MustEnd, "type %#x PLEN %d without data, header %d", typ, plen, hend)
			return 0
		}
		if flags&flagDDGST != 0 {
			c.hostBroke(MayEnd, "type %#x DDGST flag without data", typ)
		}
	} else {
		ddgst = c.ddgst
		if c.ddgst && flags&flagDDGST == 0 {
			c.hostBroke(MustEnd, "type %#x data without the negotiated data digest", typ)
			return 0
		}
		tail := uint32(0)
		if ddgst {
			tail = digestLen
		}
		if pdo < hend || plen < uint32(pdo)+tail {
			c.hostBroke(MustEnd, "type %#x PDO %d PLEN %d, header %d", typ, pdo, plen, hend)
			return 0
		}
		if align := (int(c.cpda) + 1) * 4; pdo%align != 0 {
			c.hostBroke(MayEnd, "type %#x PDO %d not aligned to CPDA %d", typ, pdo, c.cpda)
		}
		dataLen = plen - uint32(pdo) - tail
		if dataLen == 0 {
			c.hostBroke(MayEnd, "type %#x PDO %d with no data", typ, pdo)
		}
	}
	limit := c.lim.InCapsule
	if c.qid == 0 {
		limit = c.lim.AdminInCapsule
	}
	if typ == typeH2CData {
		limit = c.maxH2C
	}
	if dataLen > limit {
		c.hostBroke(MustEnd, "type %#x carries %d data bytes, more than %d", typ, dataLen, limit)
		return 0
	}
	var r *r2t
	if typ == typeH2CData {
		if r = c.hostDataHeader(b[:dataHLen], dataLen); c.verdict == MustEnd {
			return 0
		}
	}
	if uint32(len(b)) < plen {
		return 0
	}
	data := b[pdo : pdo+int(dataLen)]
	digestOK := !ddgst || dataLen == 0 || binary.LittleEndian.Uint32(b[plen-digestLen:]) == crc(data)
	if flags&^(flagHDGST|flagDDGST|flagLast) != 0 || typ == typeCapsuleCmd && flags&flagLast != 0 {
		c.hostBroke(MayEnd, "type %#x reserved flags %#x", typ, flags)
	}
	if typ == typeCapsuleCmd {
		c.hostCommand(b[chLen:cmdHLen], data, digestOK)
	} else if r != nil {
		c.hostData(r, binary.LittleEndian.Uint16(b[10:]), flags, dataLen)
	}
	return int(plen)
}

// Command fields (NVMe Base 2.0, Figure 88; NVMe-oF 1.1, Figures 19-20).
const (
	sqeFlags   = 1
	sqeCID     = 2
	sqeSGLAddr = 24
	sqeSGLLen  = 32
	sqeSGLID   = 39
	sglInline  = 0x01
	sglR2T     = 0x5a

	opFabrics     = 0x7f
	fcConnect     = 0x01
	fcDisconnect  = 0x08
	opAER         = 0x0c
	opSetFeatures = 0x09
	featKATO      = 0x0f
)

// hostCommand follows a command capsule (its SQE and in-capsule data).
func (c *Checker) hostCommand(sqe, data []byte, digestOK bool) {
	cmd := &command{
		cid: binary.LittleEndian.Uint16(sqe[sqeCID:]), opcode: sqe[0],
		sglLen: binary.LittleEndian.Uint32(sqe[sqeSGLLen:]),
	}
	cmd.dir = cmd.opcode & 3
	if cmd.opcode == opFabrics {
		cmd.fctype = sqe[4]
		cmd.dir = cmd.fctype & 3
	}
	sglID := sqe[sqeSGLID]
	cmd.viaR2T = cmd.dir&1 != 0 && sglID == sglR2T && len(data) == 0 && cmd.sglLen > 0
	if sqe[sqeFlags]&0xc0 != 0x40 {
		cmd.viaR2T = false // refused: not an SGL the target may move data by
	}
	firstCapsule := !c.first
	c.first = true
	if cmd.opcode == opFabrics && cmd.fctype == fcConnect && firstCapsule {
		cmd.connect, cmd.ends = true, true // ends only if refused: see response
		c.qid = binary.LittleEndian.Uint16(sqe[42:])
		c.sqsize = uint32(binary.LittleEndian.Uint16(sqe[44:])) + 1
		c.flowOff = sqe[46]&(1<<2) != 0
		if kato := time.Duration(binary.LittleEndian.Uint32(sqe[48:])) * time.Millisecond; c.qid == 0 && kato > 0 && kato < c.lim.SlowKATO {
			c.endOK = "a keep-alive timeout the host asked for"
		}
		cmd.viaR2T = false
	} else if firstCapsule {
		// Anything but Connect first: the target answers it and closes.
		cmd.ends = true
	}
	if cmd.opcode == opFabrics && cmd.fctype == fcDisconnect && c.qid == 0 {
		cmd.ends = true
	}
	if c.qid == 0 && cmd.opcode == opAER && cmd.fctype == 0 {
		cmd.held = true
	}
	if c.qid == 0 && cmd.opcode == opSetFeatures && sqe[40] == featKATO {
		if kato := time.Duration(binary.LittleEndian.Uint32(sqe[44:])) * time.Millisecond; kato < c.lim.SlowKATO {
			c.endOK = "a keep-alive timeout the host set"
		}
	}
	if c.stopped {
		cmd.afterFail = true
	}
	if cmd.ends && !cmd.connect {
		c.stopped = true // the target reads nothing after it
	}
	if len(c.cmds[cmd.cid]) > 0 {
		c.hostBroke(MayEnd, "command ID %d reused while outstanding", cmd.cid)
	}
	if c.sqsize > 0 && uint32(len(c.order)) >= c.sqsize {
		c.hostBroke(MayEnd, "more than %d commands outstanding", c.sqsize)
	}
	if !digestOK {
		cmd.viaR2T = false // fails with a transient transport error
	}
	c.cmds[cmd.cid] = append(c.cmds[cmd.cid], cmd)
	c.order = append(c.order, cmd)
}

// hostDataHeader judges an H2CData header, as a target does before its
// data arrives, and returns the R2T it answers (nil: none the host saw).
func (c *Checker) hostDataHeader(h []byte, n uint32) *r2t {
	cccid, ttag := binary.LittleEndian.Uint16(h[8:]), binary.LittleEndian.Uint16(h[10:])
	off, datal := binary.LittleEndian.Uint32(h[12:]), binary.LittleEndian.Uint32(h[16:])
	r, ok := c.r2ts[ttag]
	if !ok {
		// No R2T the host has seen: a guess, which the target may catch or
		// (for an R2T on its way) take.
		c.hostBroke(MayEnd, "H2CData for transfer tag %d with no R2T received", ttag)
		return nil
	}
	switch {
	case cccid != r.cmd.cid:
		c.hostBroke(MustEnd, "H2CData CCCID %d for transfer tag %d of command %d", cccid, ttag, r.cmd.cid)
	case datal != n || n == 0:
		c.hostBroke(MustEnd, "H2CData DATAL %d with %d data bytes", datal, n)
	case off != r.off+r.sent || uint64(off)+uint64(n) > uint64(r.off)+uint64(r.len):
		c.hostBroke(MustEnd, "H2CData offset %d length %d for R2T %d+%d (%d sent)", off, n, r.off, r.len, r.sent)
	}
	return r
}

// hostData follows an H2CData PDU that hostDataHeader let through.
func (c *Checker) hostData(r *r2t, ttag uint16, flags uint8, n uint32) {
	r.sent += n
	r.cmd.h2cSent += n
	last := r.sent == r.len
	if last != (flags&flagLast != 0) {
		c.hostBroke(MayEnd, "H2CData LAST flag %v at %d of %d", !last, r.sent, r.len)
	}
	if last {
		delete(c.r2ts, ttag)
		r.cmd.r2tsOpen--
	}
}

// targetPDU checks one PDU from the target's stream if it is all in b, and
// returns its length (0: more bytes needed).
func (c *Checker) targetPDU(b []byte) (int, error) {
	if len(b) < chLen {
		return 0, nil
	}
	if c.termSeen {
		return 0, violation("after-termreq", "PDU type %#x after a C2HTermReq", b[0])
	}
	typ, flags, hlen, pdo := b[0], b[1], int(b[2]), int(b[3])
	plen := binary.LittleEndian.Uint32(b[4:])
	if !c.icResp && typ != typeICResp && typ != typeC2HTermReq {
		return 0, violation("before-icresp", "PDU type %#x before the ICResp", typ)
	}
	want := map[uint8]int{typeICResp: icLen, typeC2HTermReq: termLen, typeCapsuleResp: respHLen, typeC2HData: dataHLen, typeR2T: r2tHLen}[typ]
	if want == 0 || c.icResp && typ == typeICResp {
		return 0, violation("pdu-type", "PDU type %#x from a controller here", typ)
	}
	if hlen != want {
		return 0, violation("hlen", "type %#x HLEN %d, want %d", typ, hlen, want)
	}
	switch typ {
	case typeICResp:
		return c.targetICResp(b, flags, pdo, plen)
	case typeC2HTermReq:
		if plen < termLen || plen > termMaxPLen || pdo != 0 && pdo != termLen || pdo == 0 && plen != termLen {
			return 0, violation("termreq", "C2HTermReq PLEN %d PDO %d", plen, pdo)
		}
		if uint32(len(b)) < plen {
			return 0, nil
		}
		if fes := binary.LittleEndian.Uint16(b[8:]); fes < 1 || fes > 6 {
			return 0, violation("termreq", "C2HTermReq FES %d", fes)
		}
		if uint32(len(b)) > plen {
			return 0, violation("after-termreq", "%d bytes after a C2HTermReq", uint32(len(b))-plen)
		}
		c.parseHost()
		if c.endReason() == "" {
			return 0, violation("term-valid", "C2HTermReq (FES %d) to a host that kept the rules", binary.LittleEndian.Uint16(b[8:]))
		}
		c.termSeen = true
		return int(plen), nil
	}
	hend := hlen
	if c.hdgst {
		hend += digestLen
	}
	if flags&flagHDGST != 0 != c.hdgst {
		return 0, violation("hdgst-flag", "type %#x HDGST flag %v, negotiated %v", typ, flags&flagHDGST != 0, c.hdgst)
	}
	if len(b) < hend {
		return 0, nil
	}
	if c.hdgst && binary.LittleEndian.Uint32(b[hlen:]) != crc(b[:hlen]) {
		return 0, violation("hdgst", "type %#x header digest", typ)
	}
	if typ != typeC2HData {
		if pdo != 0 || plen != uint32(hend) || flags&^flagHDGST != 0 {
			return 0, violation("layout", "type %#x PDO %d PLEN %d flags %#x, header %d", typ, pdo, plen, flags, hend)
		}
		if typ == typeCapsuleResp {
			return hend, c.targetResponse(b[chLen:respHLen])
		}
		return hend, c.targetR2T(b[:r2tHLen])
	}
	// C2HData.
	if flags&flagDDGST != 0 != c.ddgst || flags&^(flagHDGST|flagDDGST|flagLast|flagSuccess) != 0 {
		return 0, violation("data-flags", "C2HData flags %#x, data digest negotiated %v", flags, c.ddgst)
	}
	align := (int(c.hpda) + 1) * 4
	if pdo < hend || pdo%align != 0 || pdo-hend >= max(align, 4) {
		return 0, violation("pdo", "C2HData PDO %d: header %d, HPDA alignment %d", pdo, hend, align)
	}
	tail := uint32(0)
	if c.ddgst {
		tail = digestLen
	}
	datal := binary.LittleEndian.Uint32(b[16:])
	if uint64(plen) != uint64(pdo)+uint64(datal)+uint64(tail) || datal == 0 {
		return 0, violation("plen", "C2HData PLEN %d, PDO %d, DATAL %d", plen, pdo, datal)
	}
	if uint32(len(b)) < plen {
		return 0, nil
	}
	for _, p := range b[hend:pdo] {
		if p != 0 {
			return 0, violation("padding", "C2HData padding not zero")
		}
	}
	if c.ddgst && binary.LittleEndian.Uint32(b[plen-digestLen:]) != crc(b[pdo:pdo+int(datal)]) {
		return 0, violation("ddgst", "C2HData data digest")
	}
	return int(plen), c.targetData(b[:dataHLen], flags, datal)
}

func (c *Checker) targetICResp(b []byte, flags uint8, pdo int, plen uint32) (int, error) {
	if plen != icLen || pdo != 0 || flags != 0 {
		return 0, violation("icresp", "ICResp PLEN %d PDO %d flags %#x", plen, pdo, flags)
	}
	if len(b) < icLen {
		return 0, nil
	}
	if !c.icReqSeen {
		return 0, violation("icresp", "ICResp before the ICReq")
	}
	if c.verdict == MustEnd {
		return 0, violation("acted-after-fatal", "ICResp to a fatal ICReq (%s)", c.why)
	}
	pfv, cpda, dgst := binary.LittleEndian.Uint16(b[8:]), b[10], b[11]
	c.maxH2C = binary.LittleEndian.Uint32(b[12:])
	switch {
	case pfv != 0:
		return 0, violation("icresp", "ICResp PFV %d", pfv)
	case cpda > maxPDA:
		return 0, violation("icresp", "ICResp CPDA %d", cpda)
	case dgst&^c.asked != 0:
		return 0, violation("icresp", "ICResp digests %#x, asked for %#x", dgst, c.asked)
	case c.maxH2C < 4096 || c.maxH2C%4 != 0:
		return 0, violation("icresp", "ICResp MAXH2CDATA %d", c.maxH2C)
	}
	c.icResp, c.cpda = true, cpda
	c.hdgst, c.ddgst = dgst&1 != 0, dgst&2 != 0
	return icLen, nil
}

// outstanding returns the outstanding command with cid the target is
// answering, or nil.
// pick returns the command outstanding under cid that a target PDU is
// for: a host that reused a command ID has several, which the target may
// serve in any order, so the first that fits, else the oldest.
func (c *Checker) pick(cid uint16, fits func(*command) bool) *command {
	l := c.cmds[cid]
	for _, cmd := range l {
		if fits(cmd) {
			return cmd
		}
	}
	return l[0]
}

// answerFits says whether a success for cmd would pass the checks of its
// data: all of a read's sent, all of a write's received.
func answerFits(cmd *command) bool {
	if cmd.dir&2 != 0 && cmd.c2h != cmd.sglLen && cmd.dir != 3 {
		return false
	}
	return !cmd.viaR2T || cmd.h2cSent == cmd.sglLen
}

func (c *Checker) outstanding(cid uint16) *command {
	if l := c.cmds[cid]; len(l) > 0 {
		return l[0]
	}
	return nil
}

func (c *Checker) retire(cmd *command) {
	l := c.cmds[cmd.cid]
	for i, o := range l {
		if o == cmd {
			c.cmds[cmd.cid] = append(l[:i:i], l[i+1:]...)
			break
		}
	}
	for i, o := range c.order {
		if o == cmd {
			c.order = append(c.order[:i:i], c.order[i+1:]...)
			break
		}
	}
	for tag, r := range c.r2ts {
		if r.cmd == cmd {
			delete(c.r2ts, tag)
		}
	}
	c.responses++
}

func (c *Checker) targetResponse(cqe []byte) error {
	cid := binary.LittleEndian.Uint16(cqe[12:])
	sqid := binary.LittleEndian.Uint16(cqe[10:])
	status := binary.LittleEndian.Uint16(cqe[14:]) >> 1
	cmd := c.outstanding(cid)
	if cmd == nil {
		return c.actedOrViolation("response", "response for command %d, which is not outstanding", cid)
	}
	if sqid != c.qid {
		return violation("sqid", "response for command %d on SQID %d, queue %d", cid, sqid, c.qid)
	}
	ok := status&0x7ff == 0
	if ok {
		cmd = c.pick(cid, answerFits)
	}
	if ok && cmd.dir&2 != 0 && cmd.c2h != cmd.sglLen && cmd.dir != 3 {
		return violation("short-read", "command %d succeeded with %d of %d bytes sent to the host", cid, cmd.c2h, cmd.sglLen)
	}
	if ok && cmd.viaR2T && cmd.h2cSent != cmd.sglLen {
		return violation("early-write", "command %d succeeded with %d of %d bytes of its data received", cid, cmd.h2cSent, cmd.sglLen)
	}
	c.retire(cmd)
	c.answerEffects(cmd, ok)
	return nil
}

// answerEffects applies what the answer to cmd means for the connection.
func (c *Checker) answerEffects(cmd *command, ok bool) {
	switch {
	case cmd.connect && ok:
		cmd.ends = false
	case cmd.connect:
		c.endOK = "the Connect was refused"
		c.stopped = true
		for _, o := range c.order {
			o.afterFail = true
		}
	case cmd.ends:
		c.endOK = "an answered command ends the connection"
	}
}

// actedOrViolation is the error for a target PDU about a command the
// checker does not know: a violation, worded for whether the host's stream
// had gone bad (the target acted on bytes past a fatal error) or not.
func (c *Checker) actedOrViolation(rule, format string, args ...any) error {
	if c.verdict == MustEnd {
		return violation("acted-after-fatal", format+" (after the host's fatal error: %s)", append(args, c.why)...)
	}
	if c.verdict == MayEnd {
		return nil // e.g. a reused CID answered twice, a guess taken
	}
	return violation(rule, format, args...)
}

func (c *Checker) targetData(h []byte, flags uint8, n uint32) error {
	cid, off := binary.LittleEndian.Uint16(h[8:]), binary.LittleEndian.Uint32(h[12:])
	cmd := c.outstanding(cid)
	if cmd == nil {
		return c.actedOrViolation("c2hdata", "C2HData for command %d, which is not outstanding", cid)
	}
	cmd = c.pick(cid, func(cmd *command) bool { return cmd.dir&2 != 0 && off == cmd.c2h })
	if cmd.dir&2 == 0 {
		return violation("c2hdata-dir", "C2HData for command %d (opcode %#x), which moves no data to the host", cid, cmd.opcode)
	}
	if off != cmd.c2h || uint64(off)+uint64(n) > uint64(cmd.sglLen) {
		return violation("c2hdata-range", "C2HData bytes %d-%d for command %d, whose SGL describes %d (%d received)",
			off, uint64(off)+uint64(n), cid, cmd.sglLen, cmd.c2h)
	}
	cmd.c2h += n
	if flags&flagSuccess != 0 {
		if flags&flagLast == 0 || !c.flowOff {
			return violation("c2hdata-success", "C2HData SUCCESS flag (LAST %v, SQ flow control off %v)", flags&flagLast != 0, c.flowOff)
		}
		if cmd.c2h != cmd.sglLen {
			return violation("short-read", "command %d succeeded with %d of %d bytes", cid, cmd.c2h, cmd.sglLen)
		}
		c.retire(cmd)
	}
	return nil
}

func (c *Checker) targetR2T(h []byte) error {
	cid, ttag := binary.LittleEndian.Uint16(h[8:]), binary.LittleEndian.Uint16(h[10:])
	off, n := binary.LittleEndian.Uint32(h[12:]), binary.LittleEndian.Uint32(h[16:])
	cmd := c.outstanding(cid)
	if cmd == nil {
		return c.actedOrViolation("r2t", "R2T for command %d, which is not outstanding", cid)
	}
	cmd = c.pick(cid, func(cmd *command) bool { return cmd.viaR2T && off == cmd.r2tAsked })
	switch {
	case !cmd.viaR2T:
		return c.actedOrViolation("r2t", "R2T for command %d, whose data is not due through R2T", cid)
	case n == 0 || off != cmd.r2tAsked || uint64(off)+uint64(n) > uint64(cmd.sglLen):
		return violation("r2t-range", "R2T for bytes %d+%d of command %d, whose SGL describes %d (%d asked for)", off, n, cid, cmd.sglLen, cmd.r2tAsked)
	case uint32(cmd.r2tsOpen) > c.maxR2T:
		return violation("r2t-limit", "R2T for command %d with %d open, MAXR2T %d (0's based)", cid, cmd.r2tsOpen, c.maxR2T)
	}
	if _, used := c.r2ts[ttag]; used {
		return violation("r2t-ttag", "R2T transfer tag %d already in use", ttag)
	}
	cmd.r2tAsked += n
	cmd.r2tsOpen++
	c.r2ts[ttag] = &r2t{cmd: cmd, off: off, len: n}
	c.r2tEvents = append(c.r2tEvents, R2T{CID: cid, TTAG: ttag, Offset: off, Len: n})
	return nil
}
