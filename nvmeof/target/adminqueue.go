package target

import (
	"fmt"
	"io"
	"net"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/strata-storage/strata/internal/iomem"
	"github.com/strata-storage/strata/nvmeof/nvme"
	"github.com/strata-storage/strata/nvmeof/pdu"
	"github.com/strata-storage/strata/nvmeof/transport"
	"github.com/strata-storage/strata/reactor"
)

// adminRecvBufSize is an admin queue's receive buffer: a capsule with the
// most in-capsule data an admin command may carry, with room to spare.
const adminRecvBufSize = 4 * (pdu.MaxHeaderSize + adminInCapsuleBytes)

// adminQueue is an admin queue's connection once connected: its bytes go
// through the transport on a reactor, as an I/O queue's do; its commands
// run on the conn's goroutine (adminLoop), since some wait (a shutdown
// flushes every namespace). The reactor hands each capsule over a channel;
// responses come back as Outs pushed on the reactor.
type adminQueue struct {
	c    *conn
	r    *reactor.Reactor
	fd   int
	mem  *iomem.Region
	conn *transport.Conn

	// capsules carries the commands received to the executor; it holds a
	// full queue (SQSIZE), so a host within its queue size never finds it
	// full.
	capsules chan adminCapsule
	ended    chan struct{} // closed when the queue ends; endErr says why
	endOnce  sync.Once
	endErr   error
	closed   chan struct{} // closed once the socket is

	// Reactor-owned.
	dead      bool
	finalized bool
	hostTerm  error // the host's TermReq being received: why it ends the queue
	dataLen   uint32
	cmd       [nvme.CommandSize]byte
	data      [adminInCapsuleBytes]byte
	termBuf   [pdu.MaxTermReqPLen]byte
	termOut   transport.Out
}

// adminCapsule is one command as received, copied off the reactor.
type adminCapsule struct {
	cmd      [nvme.CommandSize]byte
	data     []byte
	digestOK bool
}

func newAdminQueue(c *conn) (*adminQueue, error) {
	fd, err := transport.SocketFD(c.nc)
	if err != nil {
		return nil, err
	}
	mem, err := iomem.Map(adminRecvBufSize)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("target: admin queue buffer: %w", err)
	}
	q := &adminQueue{
		c: c, r: c.t.g.Get(int(c.ctrl.id) % c.t.g.Len()), fd: fd, mem: mem,
		capsules: make(chan adminCapsule, max(int(c.sqsize), 1)),
		ended:    make(chan struct{}), closed: make(chan struct{}),
	}
	cfg := pdu.Config{Accept: hostToController, HeaderDigest: c.hdgst, DataDigest: c.ddgst, MaxData: adminInCapsuleBytes}
	// Outs are made per response; a queue's worth fits in the batch.
	q.conn = transport.New(q.r, fd, q, cfg, mem.Bytes(), 2*max(int(c.sqsize), 1)+1)
	return q, nil
}

// start hands the socket to the reactor, with the bytes the handshake
// read ahead.
func (q *adminQueue) start(early []byte) error {
	q.c.nc.Close() // the reactor owns the socket now, through its own descriptor
	early = append([]byte(nil), early...)
	return q.r.Post(reactor.TaskFunc(func(*reactor.Reactor) {
		if !q.dead {
			q.conn.Start(early)
		}
	}))
}

// Header is the transport's: a command capsule's data lands in the
// queue's buffer; the host's TermReq ends the queue once received.
func (q *adminQueue) Header(h pdu.Header, f pdu.Frame) ([]byte, error) {
	switch h.Type() {
	case pdu.TypeCapsuleCmd:
		q.hostTerm, q.dataLen = nil, f.DataLen
		copy(q.cmd[:], pdu.CapsuleCmd(h).SQE())
		return q.data[:f.DataLen], nil
	case pdu.TypeH2CTermReq:
		q.hostTerm = fmt.Errorf("target: host terminated the connection: %s: %w", pdu.TermReq(h).FES(), io.EOF)
		return nil, nil
	}
	return nil, &pdu.FatalError{Status: pdu.FatalSequence, Reason: fmt.Sprintf("%v on the admin queue", h.Type()), Header: h}
}

// Received is the transport's: the capsule goes to the executor.
func (q *adminQueue) Received(digestOK bool) bool {
	if q.hostTerm != nil {
		q.end(q.hostTerm)
		return false
	}
	c := adminCapsule{cmd: q.cmd, digestOK: digestOK}
	if digestOK {
		c.data = append([]byte(nil), q.data[:q.dataLen]...)
	}
	select {
	case q.capsules <- c:
		return true
	default:
		q.end(&pdu.FatalError{Status: pdu.FatalSequence, Reason: fmt.Sprintf("more than %d admin commands outstanding", cap(q.capsules))})
		return false
	}
}

// Handed and Sent are the transport's; the Outs are garbage once sent.
func (q *adminQueue) Handed(*transport.Out)     {}
func (q *adminQueue) Sent(*transport.Out, bool) {}

// End is the transport's: the connection cannot go on.
func (q *adminQueue) End(err error) { q.end(err) }

// Idle is the transport's.
func (q *adminQueue) Idle() { q.maybeFinalize() }

// end stops the queue on its reactor: a fatal transport error is answered
// with a C2HTermReq, receiving stops, the executor is told, and the
// socket closes once nothing is in flight.
func (q *adminQueue) end(err error) {
	if q.dead {
		return
	}
	q.dead = true
	terminate(q.conn, &q.termOut, q.termBuf[:], err)
	q.conn.Stop()
	q.endOnce.Do(func() {
		q.endErr = err
		close(q.ended)
	})
	q.maybeFinalize()
}

func (q *adminQueue) maybeFinalize() {
	if !q.dead || q.finalized || !q.conn.Idle() {
		return
	}
	q.finalized = true
	unix.Close(q.fd)
	q.mem.Unmap()
	close(q.closed)
}

// send queues a response's bytes (built by the caller, not reused) on the
// reactor, in the order sends are called (the caller holds the conn's
// wmu).
func (q *adminQueue) send(b []byte) error {
	o := &transport.Out{}
	o.Add(b)
	err := q.r.Post(reactor.TaskFunc(func(*reactor.Reactor) {
		if !q.dead {
			q.conn.Push(o)
		}
	}))
	if err != nil {
		return fmt.Errorf("target: send response: %w", err)
	}
	return nil
}

// abort ends the queue from any goroutine.
func (q *adminQueue) abort() {
	q.r.Post(reactor.TaskFunc(func(*reactor.Reactor) { q.end(net.ErrClosed) }))
}

// shutdown ends the queue and waits until its socket is closed, from the
// conn's goroutine.
func (q *adminQueue) shutdown() {
	if err := q.r.Post(reactor.TaskFunc(func(*reactor.Reactor) { q.end(nil) })); err != nil {
		// The reactor is stopping or stopped: once it has, nothing of the
		// queue is in flight, and unless the queue ended on it meanwhile,
		// the socket and buffer can go.
		<-q.r.Done()
		select {
		case <-q.closed:
		default:
			unix.Close(q.fd)
			q.mem.Unmap()
		}
		return
	}
	<-q.closed
}
