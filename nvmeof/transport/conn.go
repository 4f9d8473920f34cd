// Package transport runs the byte stream of one NVMe/TCP connection on a
// reactor, for the target's I/O queues and the host's alike: a receiver
// that frames the PDUs arriving on the socket, and a sender that writes
// the PDUs queued for it in batches. What a PDU means — which command it
// belongs to, what to answer — is the Handler's: the transport knows
// framing (pdu.Config checks every header), padding, digests and the
// socket, nothing of NVMe commands.
//
// Everything here is reactor-owned: a Conn's methods, and its Handler's,
// run on the reactor that owns the connection, so nothing is locked and
// nothing is allocated per PDU.
//
// A connection's life: the side that accepted or dialed it does the
// ICReq/ICResp exchange (and, on the host, the Connect) on a goroutine
// with a pdu.Reader, then hands the socket to a Conn with Start and the
// bytes that exchange read ahead. Stop ends receiving; the Conn is idle
// (Idle) once no operation of it is in flight, when its owner closes the
// socket.
package transport

import (
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"

	"github.com/strata-storage/strata/internal/rawsock"
	"github.com/strata-storage/strata/nvmeof/pdu"
	"github.com/strata-storage/strata/reactor"
)

// Handler is what a Conn tells of its connection. Its methods run on the
// Conn's reactor, and may call the Conn's methods.
type Handler interface {
	// Header acts on a PDU header: h (digest included and checked) with
	// frame f. It returns where the PDU's data goes, f.DataLen bytes (nil:
	// the data is received and discarded), or an error that ends the
	// connection (End).
	Header(h pdu.Header, f pdu.Frame) ([]byte, error)
	// Received says that the PDU whose header came last is all in:
	// digestOK is false when its data did not match its data digest (TP
	// 8000, 3.6.2.x: not fatal; the handler fails what the data was for).
	// It returns false when the handler ended the connection.
	Received(digestOK bool) bool
	// Handed says that o is in a write handed to the socket: from now on
	// the peer may have it.
	Handed(o *Out)
	// Sent hands o back: written, or never to be (a write failed, the
	// connection closed, or o was queued behind a Last).
	Sent(o *Out, written bool)
	// End says why the connection cannot go on: the peer closed it, a
	// receive or a send failed, or a header was malformed (a
	// *pdu.FatalError). Once per failure; the handler stops the Conn.
	End(err error)
	// Idle says that an operation of the Conn completed; the handler checks
	// Conn.Idle to know whether it may close the socket.
	Idle()
}

// Conn is one NVMe/TCP connection's socket on a reactor.
type Conn struct {
	r  *reactor.Reactor
	fd int
	h  Handler
	rx receiver
	tx sender
}

// New makes a Conn for socket fd, owned by reactor r: recvBuf (at least
// pdu.MaxHeaderSize*2 bytes, off-heap for speed) receives the stream, cfg
// says what may arrive, and maxOuts bounds the Outs queued at once (it
// sizes the send batch; more still work, but allocate).
func New(r *reactor.Reactor, fd int, h Handler, cfg pdu.Config, recvBuf []byte, maxOuts int) *Conn {
	c := &Conn{r: r, fd: fd, h: h}
	c.rx.init(c, cfg, recvBuf)
	c.tx.init(c, maxOuts)
	return c
}

// PollReceive makes the Conn receive with non-blocking system calls, once
// per reactor loop turn, while its reactor spins, and through an io_uring
// RECV only when the reactor sleeps. An armed RECV costs a poll arming, a
// wake-up and a run of task work per PDU batch; a load generator or a
// mirror at queue depth 1 feels that as latency (NVMe/TCP 4 KiB reads at
// QD 1 p50 +1 us, 128 KiB reads at QD 8 0.8x against a polled read). Each
// polled Conn costs its reactor a system call per turn, so it suits the
// few busy connections of a host, not a target's many. Call before Start.
func (c *Conn) PollReceive() { c.rx.poll = true }

// Start begins receiving, with the bytes a handshake read ahead (copied).
func (c *Conn) Start(early []byte) { c.rx.start(early) }

// Stop ends receiving: a receive in flight is cut short by shutting the
// socket's read side. Sending goes on: what is queued is still written.
func (c *Conn) Stop() { c.rx.stop() }

// Close makes the sender drop what is queued and everything pushed from
// now on (Sent, not written); a write in flight completes.
func (c *Conn) Close() { c.tx.close() }

// Idle reports whether no operation of the Conn is in flight or due: no
// receive, no write, nothing staged or queued.
func (c *Conn) Idle() bool {
	return !c.rx.busy && !c.tx.busy && !c.tx.staged && !c.tx.scheduled && c.tx.head == nil
}

// Writes returns how many writes (SENDMSGs) the Conn has issued. Safe
// from any goroutine.
func (c *Conn) Writes() uint64 { return c.tx.writes.Load() }

// Push queues o to be written after everything queued before it.
func (c *Conn) Push(o *Out) { c.tx.push(o) }

// SocketFD returns a descriptor of tc's socket for a Conn to own. Once the
// caller closes tc, the socket is out of Go's net package, whose poller
// would otherwise wake for every segment that arrives, to find no
// goroutine waiting.
func SocketFD(tc *net.TCPConn) (int, error) {
	rc, err := tc.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("transport: socket: %w", err)
	}
	fd := -1
	cerr := rc.Control(func(f uintptr) {
		fd, err = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0)
	})
	if err = errors.Join(cerr, err); err != nil {
		return -1, fmt.Errorf("transport: socket: %w", err)
	}
	return fd, nil
}

// directRecvMin is the data still due for a PDU from which a receive goes
// straight into its destination instead of through the receive buffer
// and a copy.
const directRecvMin = 16 << 10

// receiver frames the PDUs of a connection with a pdu.Framer: RECV into
// the buffer, frame every PDU there, hand each to the handler at once.
// Large data goes straight into its destination.
type receiver struct {
	c          *Conn
	f          pdu.Framer
	buf        []byte
	head, tail int  // buf[head:tail] is received and not yet framed
	busy       bool // a RECV is in flight
	direct     bool // ...into the data's destination
	stopped    bool
	retry      recvRetry
	poll       bool // receive with system calls while the reactor spins
	polling    bool // ...and Poll is waiting for data: no RECV in flight
}

// recvRetry posts a RECV the reactor had no operation slot for.
type recvRetry struct{ rx *receiver }

func (t *recvRetry) Run(*reactor.Reactor) { t.rx.postRing() }

func (rx *receiver) init(c *Conn, cfg pdu.Config, buf []byte) {
	rx.c, rx.f, rx.buf, rx.retry.rx = c, pdu.NewFramer(cfg), buf, rx
}

func (rx *receiver) start(early []byte) {
	rx.tail = copy(rx.buf, early)
	if rx.poll {
		rx.c.r.AddPoller(rx)
	}
	if rx.parse() {
		rx.post()
	}
}

func (rx *receiver) stop() {
	if rx.poll && !rx.stopped {
		rx.c.r.RemovePoller(rx)
	}
	rx.stopped, rx.polling = true, false
	if rx.busy {
		unix.Shutdown(rx.c.fd, unix.SHUT_RD)
	}
}

// post issues the next RECV: into the destination when a large part of
// the data is still due and nothing is buffered, else into buf.
func (rx *receiver) post() {
	if rx.stopped || rx.busy || rx.polling {
		return
	}
	if rx.poll {
		rx.polling = true
		return
	}
	rx.postRing()
}

// wantDirect says whether the next receive goes straight into the
// destination: a large part of the data is still due and nothing is
// buffered.
func (rx *receiver) wantDirect() bool {
	return rx.head == rx.tail && len(rx.f.DataDue()) >= directRecvMin
}

// Poll receives what has arrived, without waiting, while the reactor spins.
func (rx *receiver) Poll() int {
	if !rx.polling {
		return 0
	}
	var b []byte
	direct := rx.wantDirect()
	if direct {
		b = rx.f.DataDue()
	} else {
		b = rx.space()
	}
	n, errno := rawsock.Recv(rx.c.fd, b)
	if errno == unix.EAGAIN || errno == unix.EINTR {
		return 0
	}
	rx.polling = false
	rx.direct = direct
	if errno != 0 {
		n = -int(errno)
	}
	rx.received(int32(n))
	return 1
}

// Busy is false: a polled socket does not keep the reactor awake.
func (rx *receiver) Busy() bool { return false }

// Nap arms a RECV for the data that would otherwise find the reactor
// asleep.
func (rx *receiver) Nap() {
	if rx.polling {
		rx.polling = false
		rx.postRing()
	}
}

func (rx *receiver) postRing() {
	sqe := rx.c.r.PrepWait(rx)
	if sqe == nil { // every operation slot of the reactor is busy: next loop
		rx.c.r.Defer(&rx.retry)
		return
	}
	rx.busy = true
	if rx.wantDirect() {
		rx.direct = true
		// All of it in one completion: the kernel goes on receiving as
		// segments arrive instead of completing each to be posted again.
		// Stop's shutdown still ends it early.
		sqe.PrepRecv(int32(rx.c.fd), rx.f.DataDue(), unix.MSG_WAITALL)
		return
	}
	rx.direct = false
	sqe.PrepRecv(int32(rx.c.fd), rx.space(), 0)
}

// space returns where the next RECV into the buffer goes. What is left
// unparsed is at most part of a header or digest: when too little room
// follows it for the rest, it moves to the front.
func (rx *receiver) space() []byte {
	if rx.head == rx.tail {
		rx.head, rx.tail = 0, 0
	} else if len(rx.buf)-rx.tail < pdu.MaxHeaderSize {
		rx.tail = copy(rx.buf, rx.buf[rx.head:rx.tail])
		rx.head = 0
	}
	return rx.buf[rx.tail:]
}

// Complete handles a RECV's completion.
func (rx *receiver) Complete(res int32, _ uint32) {
	rx.busy = false
	if rx.stopped {
		rx.c.h.Idle()
		return
	}
	rx.received(res)
}

// received handles a receive's result.
func (rx *receiver) received(res int32) {
	h := rx.c.h
	switch {
	case res == 0:
		h.End(io.EOF)
		return
	case res < 0:
		h.End(fmt.Errorf("transport: receive: %w", unix.Errno(-res)))
		return
	}
	n := int(res)
	if rx.direct {
		if !rx.f.Landed(n, rx) {
			return
		}
	} else {
		rx.tail += n
	}
	if rx.parse() {
		rx.post()
	}
}

// parse frames the buffered bytes; false if the connection ended.
func (rx *receiver) parse() bool {
	if rx.stopped {
		return false
	}
	n, more, err := rx.f.Feed(rx.buf[rx.head:rx.tail], rx)
	rx.head += n
	if err != nil {
		rx.c.h.End(err)
		return false
	}
	return more && !rx.stopped
}

// Header is the Framer's: the handler says where the data goes.
func (rx *receiver) Header(h pdu.Header, f pdu.Frame) ([]byte, error) { return rx.c.h.Header(h, f) }

// Received is the Framer's: the handler takes the PDU, and the walk goes
// on unless the connection ended.
func (rx *receiver) Received(digestOK bool) bool { return rx.c.h.Received(digestOK) && !rx.stopped }
