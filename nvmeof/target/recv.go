package target

import (
	"encoding/binary"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/strata-storage/strata/nvmeof/nvme"
	"github.com/strata-storage/strata/nvmeof/pdu"
	"github.com/strata-storage/strata/reactor"
)

const (
	// recvBufSize is the receive buffer of an I/O queue: one RECV brings
	// in every small PDU that has arrived.
	recvBufSize = 64 << 10
	// directRecvMin is the data still due for a command from which a RECV
	// goes straight into the command's buffer instead of through the
	// receive buffer and a copy.
	directRecvMin = 16 << 10
)

// Where the receiver stands in the PDU it is reading.
const (
	inHeader uint8 = iota
	inPad
	inData
	inDigest
)

// What to do with a PDU once its data is in.
const (
	thenNothing uint8 = iota // a TermReq's quoted header
	thenExec                 // execute cur
	thenFail                 // fail cur with failStatus
	thenData                 // H2CData for cur: count it, execute cur when complete
)

// receiver frames the PDUs of an I/O queue on its reactor: RECV into an
// off-heap buffer, parse every PDU there, act on each at once. Large data
// goes straight into the command's buffer. Reactor-owned.
type receiver struct {
	q          *ioQueue
	cfg        pdu.Config
	buf        []byte
	head, tail int  // buf[head:tail] is received and not yet parsed
	busy       bool // a RECV is in flight
	direct     bool // ...into cur's buffer
	stopped    bool
	retry      recvRetry

	// The PDU being received.
	at         uint8
	frame      pdu.Frame
	padLeft    int
	dst        []byte // where the data goes; nil: discard dataLeft bytes
	dataLeft   int
	crc        uint32
	cur        *command
	then       uint8
	failStatus nvme.Status
}

// recvRetry posts a RECV the reactor had no operation slot for.
type recvRetry struct{ in *receiver }

func (t *recvRetry) Run(*reactor.Reactor) { t.in.post() }

func (in *receiver) init(q *ioQueue, buf []byte) {
	in.q, in.buf, in.retry.in = q, buf, in
	in.cfg = pdu.Config{Accept: hostToController, HeaderDigest: q.c.hdgst, DataDigest: q.c.ddgst, MaxData: MaxH2CData}
}

// start takes the bytes the handshake read ahead and begins receiving.
func (in *receiver) start(early []byte) {
	in.tail = copy(in.buf, early)
	if in.parse() {
		in.post()
	}
}

// stop ends receiving; a RECV in flight is cut short by shutting the
// socket's read side.
func (in *receiver) stop() {
	in.stopped = true
	if in.busy {
		unix.Shutdown(in.q.fd, unix.SHUT_RD)
	}
}

// post issues the next RECV: into the command's buffer when a large part
// of its data is still due and nothing is buffered, else into buf.
func (in *receiver) post() {
	if in.stopped || in.busy {
		return
	}
	sqe := in.q.r.PrepWait(in)
	if sqe == nil { // every operation slot of the reactor is busy: next loop
		in.q.r.Defer(&in.retry)
		return
	}
	in.busy = true
	if in.at == inData && in.dst != nil && in.head == in.tail && in.dataLeft >= directRecvMin {
		in.direct = true
		off := len(in.dst) - in.dataLeft
		sqe.PrepRecv(int32(in.q.fd), in.dst[off:], 0)
		return
	}
	in.direct = false
	sqe.PrepRecv(int32(in.q.fd), in.space(), 0)
}

// space returns where the next RECV into the buffer goes. What is left
// unparsed is at most part of a header or digest: when too little room
// follows it for the rest, it moves to the front.
func (in *receiver) space() []byte {
	if in.head == in.tail {
		in.head, in.tail = 0, 0
	} else if len(in.buf)-in.tail < pdu.MaxHeaderSize {
		in.tail = copy(in.buf, in.buf[in.head:in.tail])
		in.head = 0
	}
	return in.buf[in.tail:]
}

// Complete handles a RECV's completion.
func (in *receiver) Complete(res int32, _ uint32) {
	in.busy = false
	q := in.q
	switch {
	case in.stopped:
		q.maybeFinalize()
		return
	case res == 0:
		q.end(io.EOF)
		return
	case res < 0:
		q.end(fmt.Errorf("target: receive: %w", unix.Errno(-res)))
		return
	}
	n := int(res)
	if in.direct {
		off := len(in.dst) - in.dataLeft
		in.consumeData(in.dst[off : off+n])
		if in.dataLeft == 0 && !in.endData() {
			return
		}
	} else {
		in.tail += n
	}
	if in.parse() {
		in.post()
	}
}

// parse works through the buffered bytes; false if the queue ended.
func (in *receiver) parse() bool {
	for {
		avail := in.buf[in.head:in.tail]
		switch in.at {
		case inHeader:
			if len(avail) < pdu.CommonHeaderSize {
				return true
			}
			hend, err := in.cfg.HeaderLen(avail)
			if err != nil {
				in.q.end(err)
				return false
			}
			if len(avail) < hend {
				return true
			}
			in.head += hend
			if !in.header(avail[:hend]) {
				return false
			}
		case inPad:
			n := min(len(avail), in.padLeft)
			in.head += n
			if in.padLeft -= n; in.padLeft > 0 {
				return true
			}
			in.at = inData
		case inData:
			if in.dataLeft > 0 {
				if len(avail) == 0 {
					return true
				}
				n := min(len(avail), in.dataLeft)
				in.head += n
				in.consumeData(avail[:n])
				if in.dataLeft > 0 {
					return true
				}
			}
			if !in.endData() {
				return false
			}
		case inDigest:
			if len(avail) < pdu.DigestSize {
				return true
			}
			in.head += pdu.DigestSize
			// Discarded data's digest does not matter. A mismatch is not
			// fatal: the command fails with a transient transport error
			// (TP 8000, 3.6.2.x).
			if in.dst != nil && binary.LittleEndian.Uint32(avail) != in.crc {
				in.failData()
			}
			if !in.finish() {
				return false
			}
		}
	}
}

func (in *receiver) consumeData(b []byte) {
	if in.dst != nil {
		off := len(in.dst) - in.dataLeft
		if &in.dst[off] != &b[0] { // a direct RECV put it in place already
			copy(in.dst[off:], b)
		}
		if in.frame.DataDigest {
			in.crc = pdu.UpdateDigest(in.crc, b)
		}
	}
	in.dataLeft -= len(b)
}

// endData moves past the data to its digest, or finishes the PDU.
func (in *receiver) endData() bool {
	if in.frame.DataDigest {
		in.at = inDigest
		return true
	}
	return in.finish()
}

// failData marks the current PDU's data as corrupt.
func (in *receiver) failData() {
	switch in.then {
	case thenExec:
		in.then, in.failStatus = thenFail, nvme.TransientTransportError
	case thenData:
		in.cur.status = nvme.TransientTransportError
	}
}

// header acts on a PDU header and sets up the receipt of what follows it.
func (in *receiver) header(h pdu.Header) bool {
	frame, err := in.cfg.ParseHeader(h)
	if err != nil {
		in.q.end(err)
		return false
	}
	in.frame, in.padLeft, in.dataLeft, in.dst, in.crc = frame, frame.PadLen, int(frame.DataLen), nil, 0
	in.cur, in.then = nil, thenNothing
	switch h.Type() {
	case pdu.TypeCapsuleCmd:
		err = in.q.receiveCommand(in, h)
	case pdu.TypeH2CData:
		err = in.q.receiveData(in, pdu.Data(h))
	case pdu.TypeH2CTermReq:
		err = fmt.Errorf("target: host terminated the connection: %s: %w", pdu.TermReq(h).FES(), io.EOF)
	}
	if err != nil {
		in.q.end(err)
		return false
	}
	in.at = inPad
	if in.padLeft == 0 {
		in.at = inData
	}
	return true
}

// finish acts on a PDU whose bytes are all in, and readies the next.
func (in *receiver) finish() bool {
	in.at = inHeader
	q, cmd := in.q, in.cur
	in.cur, in.dst = nil, nil
	switch in.then {
	case thenExec:
		cmd.state = stQueued
		q.execute(cmd)
	case thenFail:
		cmd.state = stQueued
		q.respond(cmd, in.failStatus)
	case thenData:
		cmd.received += in.frame.DataLen
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
