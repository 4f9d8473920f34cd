// Package host is a Go NVMe/TCP host (initiator): it connects an admin
// queue and I/O queues to a controller, identifies it, and runs commands
// with many in flight per queue. Strata uses it to reach remote replicas,
// to drive the target in the load generator, and in tests.
//
// Each queue is one TCP connection owned by a reactor, as the target's
// I/O queues are: the handshake runs on the dialing goroutine, then the
// socket's bytes go through nvmeof/transport on the reactor. Submit may be
// called from any goroutine; Start, on the queue's reactor, never blocks,
// so a device on that reactor can be built on a queue. Requests are
// caller-owned; a request's Callback runs on the queue's reactor.
package host

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/strata-storage/strata/nvmeof/nqn"
	"github.com/strata-storage/strata/nvmeof/nvme"
	"github.com/strata-storage/strata/reactor"
)

// ErrClosed is the error of requests on a closed queue, matched with
// errors.Is. (A full queue is no error: Start holds what is past its
// depth.)
var ErrClosed = errors.New("host: queue closed")

// Config configures a connection.
type Config struct {
	HostNQN      string   // default: a UUID-based NQN from HostID
	HostID       [16]byte // default: random
	HeaderDigest bool
	DataDigest   bool
	// KeepAlive is KATO; the host sends Keep Alive at half of it (0: none).
	KeepAlive  time.Duration
	IOQueues   int // default 1
	QueueDepth int // entries per I/O queue (default 128, at most the target's MQES+1)
	// AdminOnly connects the admin queue and negotiates IOQueues, but leaves
	// the I/O queues to the caller (tools, tests driving queues by hand).
	AdminOnly bool
	// DisableSQFlowControl asks the target to skip SQ head tracking, which
	// lets it answer reads with C2HData alone (SUCCESS flag).
	DisableSQFlowControl bool
	// Reactors run the queues: the admin queue on the first, I/O queue i
	// on Reactors[(i-1) % len]. Nil: the controller starts a reactor of its
	// own, unpinned, and stops it on Close.
	Reactors []*reactor.Reactor
	// BusyPoll is how long the controller's own reactor polls when idle
	// before it sleeps (0: it sleeps at once). Polling saves the wake-up a
	// sleeping reactor pays for each batch of responses and spends its CPU:
	// for load generators on a core of their own, as SPDK's perf polls.
	// Given Reactors keep their own settings.
	BusyPoll time.Duration
	// AsyncEvents, when set, hears the controller's asynchronous events:
	// each association enables Namespace Attribute Notices and keeps an
	// Asynchronous Event Request outstanding, reads the log page an event
	// names (which lets the controller report the next one) and calls
	// AsyncEvents, one event at a time, on a goroutine of its own. It must
	// not block: hand the event on. Events that happen while no
	// association is up are lost; a caller that cares looks again after a
	// Reconnect.
	AsyncEvents func(AsyncEvent)
}

// AsyncEvent is one asynchronous event of a controller (NVMe Base 2.0,
// 5.2: the completion of an Asynchronous Event Request).
type AsyncEvent struct {
	Type, Info, LogPage uint8
	// ChangedNamespaces lists the namespaces a Namespace Attribute Changed
	// notice is about, from the Changed Namespace List log; nil when the
	// list overflowed (any namespace may have changed) or could not be
	// read.
	ChangedNamespaces []uint32
}

// NamespaceChanged reports whether the event says namespace nsid's
// attributes (its size among them) may have changed.
func (e AsyncEvent) NamespaceChanged(nsid uint32) bool {
	if e.Type != nvme.AsyncEventNotice || e.Info != nvme.AsyncEventNSAttrChanged {
		return false
	}
	return e.ChangedNamespaces == nil || slices.Contains(e.ChangedNamespaces, nsid)
}

func (c *Config) setDefaults() {
	if c.HostID == ([16]byte{}) {
		rand.Read(c.HostID[:])
	}
	if c.HostNQN == "" {
		c.HostNQN = nqn.FromUUID(c.HostID)
	}
	if c.IOQueues == 0 {
		c.IOQueues = 1
	}
	if c.QueueDepth == 0 {
		c.QueueDepth = 128
	}
}

// adminDepth is the admin queue size.
const adminDepth = 32

// Controller is a connected controller: admin queue plus I/O queues. After
// a transport failure, Reconnect replaces them with new ones.
type Controller struct {
	cfg    Config
	addr   string
	subNQN string
	own    *reactor.Group // started for Config.Reactors nil; stopped on Close

	mu     sync.Mutex
	s      *session
	closed bool
}

// session is one association with the controller: its queues, the
// controller ID the target assigned, and the keep-alive sender.
type session struct {
	cfg     *Config
	admin   *Queue
	ioqs    []*Queue
	cntlID  uint16
	ident   nvme.IdentifyController
	granted int // I/O queues the controller granted

	stopKA chan struct{}
	kaDone sync.WaitGroup

	aer    Request        // the outstanding Asynchronous Event Request
	events sync.WaitGroup // the event being handled
}

// Connect connects to subsystem subNQN at addr ("host:port"): admin queue,
// controller enable, identify, then the I/O queues.
func Connect(ctx context.Context, addr, subNQN string, cfg Config) (*Controller, error) {
	cfg.setDefaults()
	c := &Controller{cfg: cfg, addr: addr, subNQN: subNQN}
	if len(c.cfg.Reactors) == 0 {
		spin := cfg.BusyPoll
		if spin <= 0 {
			spin = -1 // never
		}
		// A group, not a lone reactor: it reserves the reactor a P of its
		// own, or the locked thread would starve the process's goroutines
		// on a one-core load generator (reactor.StartGroup).
		g, err := reactor.StartGroup([]int{-1}, reactor.Config{Spin: spin, SpinIO: -1})
		if err != nil {
			return nil, fmt.Errorf("host: %w", err)
		}
		c.own, c.cfg.Reactors = g, g.Reactors()
	}
	s, err := c.dial(ctx)
	if err != nil {
		c.stopReactor()
		return nil, err
	}
	c.s = s
	return c, nil
}

func (c *Controller) stopReactor() {
	if c.own != nil {
		c.own.Stop()
	}
}

// dial makes a new session with the same host identity.
func (c *Controller) dial(ctx context.Context) (*session, error) {
	cfg := &c.cfg
	s := &session{cfg: cfg, stopKA: make(chan struct{})}
	admin, cntlID, err := dialQueue(ctx, cfg.Reactors[0], c.addr, c.subNQN, 0, adminDepth, 0xffff, cfg)
	if err != nil {
		return nil, err
	}
	s.admin, s.cntlID = admin, cntlID
	if err := s.enable(ctx); err != nil {
		admin.Close()
		return nil, err
	}
	b, err := s.admin.Identify(ctx, nvme.CNSController, 0)
	id := nvme.IdentifyController(b)
	if err != nil {
		admin.Close()
		return nil, fmt.Errorf("host: identify controller: %w", err)
	}
	s.ident = id
	if c.subNQN == nqn.Discovery {
		s.startKeepAlive()
		return s, nil
	}
	granted, err := s.setQueueCount(ctx, cfg.IOQueues)
	if err != nil {
		admin.Close()
		return nil, err
	}
	s.granted = granted
	depth := min(cfg.QueueDepth, int(id.MaxCmd()))
	if cfg.AdminOnly {
		granted = 0
	}
	for i := range min(cfg.IOQueues, granted) {
		q, _, err := dialQueue(ctx, cfg.Reactors[i%len(cfg.Reactors)], c.addr, c.subNQN, uint16(i+1), depth, cntlID, cfg)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("host: I/O queue %d: %w", i+1, err)
		}
		q.inCapsule = int(id.IOCCSZ())*16 - nvme.CommandSize
		s.ioqs = append(s.ioqs, q)
	}
	s.startKeepAlive()
	if err := s.startEvents(ctx); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// eventLogTimeout bounds reading the log page an event names.
const eventLogTimeout = 10 * time.Second

// startEvents enables Namespace Attribute Notices and posts the first
// Asynchronous Event Request, when the caller listens for events.
func (s *session) startEvents(ctx context.Context) error {
	if s.cfg.AsyncEvents == nil {
		return nil
	}
	cmd := newCommand(nvme.AdminSetFeatures)
	cmd.SetCDW(10, nvme.FeatAsyncEventConfig)
	cmd.SetCDW(11, 1<<8) // Namespace Attribute Notices
	if _, err := s.admin.Exec(ctx, cmd, nil, false); err != nil {
		return fmt.Errorf("host: enable asynchronous events: %w", err)
	}
	s.aer.Callback = s.eventArrived
	s.postAER()
	return nil
}

func (s *session) postAER() {
	s.aer.SetCommand(newCommand(nvme.AdminAsyncEvent), nil, false)
	s.admin.Submit(&s.aer)
}

// eventArrived is the AER's callback, on the admin queue's reactor: the
// event is handled off it, since reading its log page waits.
func (s *session) eventArrived(req *Request) {
	if req.Err != nil || !req.Status.OK() {
		return // the association ended, or the controller took no AER
	}
	dw0 := req.DW0
	s.events.Add(1)
	go s.handleEvent(dw0)
}

func (s *session) handleEvent(dw0 uint32) {
	defer s.events.Done()
	ev := AsyncEvent{Type: uint8(dw0 & 7), Info: uint8(dw0 >> 8), LogPage: uint8(dw0 >> 16)}
	if ev.LogPage != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), eventLogTimeout)
		b, err := s.admin.GetLogPage(ctx, ev.LogPage, nvme.ChangedNSListSize, 0)
		cancel()
		if err != nil {
			return // the admin queue is gone with the association
		}
		if ev.LogPage == nvme.LogChangedNSList {
			ev.ChangedNamespaces = nvme.ChangedNamespaces(b)
		}
	}
	s.cfg.AsyncEvents(ev)
	s.postAER()
}

// Reconnect replaces the controller's queues with new connections, with
// the same host NQN and host ID: after a transport failure (the target
// restarted, a keep-alive timeout), the caller asks for it when it wants to
// go on. The target assigns a new controller ID; queues and requests of the
// old association are closed and fail with ErrClosed.
func (c *Controller) Reconnect(ctx context.Context) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return ErrClosed
	}
	s, err := c.dial(ctx)
	if err != nil {
		return fmt.Errorf("host: reconnect to %s at %s: %w", c.subNQN, c.addr, err)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		s.close()
		return ErrClosed
	}
	old := c.s
	c.s = s
	c.mu.Unlock()
	old.close() // its connections are likely dead already: errors say nothing new
	return nil
}

func (c *Controller) session() *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s
}

// Property offsets and CC for enabling (NVMe Base 2.0, 3.1.3).
const (
	propCAP  = 0x00
	propCC   = 0x14
	propCSTS = 0x1c
	ccEnable = 1 | 6<<16 | 4<<20 // EN, IOSQES 64 bytes, IOCQES 16 bytes
)

func (s *session) enable(ctx context.Context) error {
	capReg, err := s.admin.PropertyGet(ctx, propCAP, true)
	if err != nil {
		return fmt.Errorf("host: read CAP: %w", err)
	}
	if err := s.admin.PropertySet(ctx, propCC, ccEnable); err != nil {
		return fmt.Errorf("host: enable: %w", err)
	}
	timeout := time.Duration((capReg>>24)&0xff) * 500 * time.Millisecond
	deadline := time.Now().Add(max(timeout, time.Second))
	for {
		csts, err := s.admin.PropertyGet(ctx, propCSTS, false)
		if err != nil {
			return fmt.Errorf("host: read CSTS: %w", err)
		}
		if csts&2 != 0 {
			return errors.New("host: controller fatal status after enable")
		}
		if csts&1 != 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("host: controller did not become ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *session) setQueueCount(ctx context.Context, n int) (int, error) {
	cmd := newCommand(nvme.AdminSetFeatures)
	cmd.SetCDW(10, nvme.FeatNumQueues)
	v := uint32(n - 1)
	cmd.SetCDW(11, v|v<<16)
	dw0, err := s.admin.Exec(ctx, cmd, nil, false)
	if err != nil {
		return 0, fmt.Errorf("host: set number of queues: %w", err)
	}
	return int(min(dw0&0xffff, dw0>>16)) + 1, nil
}

func (s *session) startKeepAlive() {
	if s.cfg.KeepAlive <= 0 {
		return
	}
	s.kaDone.Add(1)
	go func() {
		defer s.kaDone.Done()
		t := time.NewTicker(s.cfg.KeepAlive / 2)
		defer t.Stop()
		for {
			select {
			case <-s.stopKA:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), s.cfg.KeepAlive)
				_, err := s.admin.Exec(ctx, newCommand(nvme.AdminKeepAlive), nil, false)
				cancel()
				if err != nil {
					return
				}
			}
		}
	}()
}

// ConnectIOQueue connects I/O queue qid (1 to GrantedIOQueues) of depth
// entries (at most the controller's MAXCMD), served by reactor r: for a
// controller connected AdminOnly whose caller places its queues itself,
// as a device does one per reactor. Not from r itself: the Connect
// command completes there.
func (c *Controller) ConnectIOQueue(ctx context.Context, r *reactor.Reactor, qid uint16, depth int) (*Queue, error) {
	s := c.session()
	if qid == 0 || int(qid) > s.granted {
		return nil, fmt.Errorf("host: I/O queue %d: the controller granted %d", qid, s.granted)
	}
	depth = min(depth, int(s.ident.MaxCmd()))
	q, _, err := dialQueue(ctx, r, c.addr, c.subNQN, qid, depth, s.cntlID, &c.cfg)
	if err != nil {
		return nil, fmt.Errorf("host: I/O queue %d: %w", qid, err)
	}
	q.inCapsule = int(s.ident.IOCCSZ())*16 - nvme.CommandSize
	return q, nil
}

// GrantedIOQueues returns how many I/O queues the controller granted.
func (c *Controller) GrantedIOQueues() int { return c.session().granted }

// ControllerID returns the controller ID the target assigned.
func (c *Controller) ControllerID() uint16 { return c.session().cntlID }

// Identify returns the Identify Controller data.
func (c *Controller) Identify() nvme.IdentifyController { return c.session().ident }

// Admin returns the admin queue.
func (c *Controller) Admin() *Queue { return c.session().admin }

// IOQueues returns the I/O queues.
func (c *Controller) IOQueues() []*Queue { return c.session().ioqs }

// Namespaces lists the active namespace IDs.
func (c *Controller) Namespaces(ctx context.Context) ([]uint32, error) {
	b, err := c.Admin().Identify(ctx, nvme.CNSActiveNSList, 0)
	if err != nil {
		return nil, err
	}
	var ids []uint32
	for i := 0; i+4 <= len(b); i += 4 {
		id := binary.LittleEndian.Uint32(b[i:])
		if id == 0 {
			break
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// Namespace returns a namespace's Identify data.
func (c *Controller) Namespace(ctx context.Context, nsid uint32) (nvme.IdentifyNamespace, error) {
	b, err := c.Admin().Identify(ctx, nvme.CNSNamespace, nsid)
	return nvme.IdentifyNamespace(b), err
}

// maxDiscoveryRecords bounds the discovery log a host reads (the page would
// be 256 KiB).
const maxDiscoveryRecords = 255

// DiscoveryLog reads the discovery log page (discovery controllers).
func (c *Controller) DiscoveryLog(ctx context.Context) ([]nvme.DiscoveryEntry, error) {
	admin := c.Admin()
	hdr, err := admin.GetLogPage(ctx, nvme.LogDiscovery, nvme.DiscoveryHeaderSize, 0)
	if err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint64(hdr[8:]) // NUMREC
	if n > maxDiscoveryRecords {
		return nil, fmt.Errorf("host: discovery log claims %d records, more than %d", n, maxDiscoveryRecords)
	}
	full, err := admin.GetLogPage(ctx, nvme.LogDiscovery, uint32(nvme.DiscoveryHeaderSize+int(n)*nvme.DiscoveryEntrySize), 0)
	if err != nil {
		return nil, err
	}
	_, entries, err := nvme.DecodeDiscoveryLog(full)
	return entries, err
}

// Close disconnects: I/O queues first, then a controller shutdown and the
// admin queue.
func (c *Controller) Close() error {
	c.mu.Lock()
	s, closed := c.s, c.closed
	c.closed = true
	c.mu.Unlock()
	if closed {
		return ErrClosed
	}
	err := s.close()
	c.stopReactor()
	return err
}

func (s *session) close() error {
	close(s.stopKA)
	s.kaDone.Wait()
	var errs []error
	for _, q := range s.ioqs {
		errs = append(errs, q.Close())
	}
	if s.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.admin.PropertySet(ctx, propCC, ccEnable|1<<14) // normal shutdown notification
		cancel()
		errs = append(errs, s.admin.Close())
	}
	s.events.Wait() // no event is told once the association is closed
	return errors.Join(errs...)
}

// Discover connects to the discovery controller at addr and returns its log.
func Discover(ctx context.Context, addr string, cfg Config) ([]nvme.DiscoveryEntry, error) {
	c, err := Connect(ctx, addr, nqn.Discovery, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.DiscoveryLog(ctx)
}

func newCommand(op uint8) nvme.Command {
	cmd := nvme.Command(make([]byte, nvme.CommandSize))
	cmd.SetOpcode(op)
	cmd.SetFlags(nvme.FlagsSGL)
	return cmd
}
