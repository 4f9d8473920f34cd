// Package target is Strata's NVMe-oF/TCP target: NVM subsystems of
// namespaces backed by block devices, exported to hosts over TCP (NVMe over
// Fabrics 1.1 with the TCP transport, TP 8000), and the discovery subsystem
// that lists them.
//
// Execution. Each TCP connection is one queue, first served by a goroutine
// that reads PDUs through Go's netpoller: the handshake, Connect, and all of
// an admin queue. An I/O queue then moves to one reactor for good: the
// reactor receives with io_uring RECV into a per-queue buffer, frames the
// PDUs there, runs each command against the namespace's bdev channel on
// that reactor and sends the responses with io_uring SENDMSG, batched per
// loop iteration. A command never crosses threads: waking a goroutine from
// a reactor thread, or a reactor from a goroutine, costs tens of
// microseconds in the Go scheduler (BenchmarkSendToSleepingReactor,
// docs/benchmarks.md), more than the I/O itself, and a reader goroutine
// competing with its reactor for a core delays both.
//
// Memory. An I/O queue reserves one buffer of MaxTransferBytes per queue
// entry (mapped lazily, outside the Go heap), so a connection's memory is
// bounded by its negotiated queue size whatever its peer sends, and the data
// path allocates nothing per command.
package target

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/nvmeof/nqn"
	"github.com/strata-storage/strata/nvmeof/nvme"
	"github.com/strata-storage/strata/reactor"
)

// Limits and advertised capabilities.
const (
	// MaxQueueEntries is CAP.MQES+1: the largest queue a host may connect.
	MaxQueueEntries = 128
	// MaxIOQueues bounds the I/O queues of one controller.
	MaxIOQueues = 64
	// MaxTransferBytes is the largest data transfer of one command (MDTS).
	MaxTransferBytes = 128 << 10
	mdtsLog2         = 5 // 2^5 * 4 KiB pages = MaxTransferBytes
	// InCapsuleBytes is the most data a host may send inside a command
	// capsule on an I/O queue (IOCCSZ = 64 + InCapsuleBytes); larger writes
	// go through R2T.
	InCapsuleBytes = 8 << 10
	// adminInCapsuleBytes is the admin queue's in-capsule data size: Connect
	// data (1 KiB) must fit, and Linux sends 8 KiB capsules.
	adminInCapsuleBytes = 8 << 10
	// MaxH2CData is MAXH2CDATA: one R2T asks for the whole transfer.
	MaxH2CData = MaxTransferBytes
	// adminQueueEntries bounds the admin queue.
	adminQueueEntries = 32
	// maxAERs is how many Asynchronous Event Requests a controller holds.
	maxAERs = 4
	// kasGranularity is the keep-alive granularity (KAS, 100 ms units).
	kasGranularity = 1
	// defaultKATO applies when a host asks for none on the admin queue.
	defaultKATO = 2 * time.Minute
	// handshakeTimeout bounds ICReq and Connect on a new connection.
	handshakeTimeout = 10 * time.Second
	// capTimeout500ms is CAP.TO: hosts wait up to 5 s for CSTS.RDY.
	capTimeout500ms  = 10
	firmwareRevision = "0.1"
	// DiscoveryPort is the well-known NVMe/TCP discovery port.
	DiscoveryPort = 8009
)

// Config configures a target.
type Config struct {
	Logger *slog.Logger
	// MaxConnections bounds the connections open at once (admin and I/O
	// queues, discovery, and connections still in their handshake);
	// DefaultMaxConnections when zero. Past it a new connection is closed
	// at once: each costs buffers and a goroutine before its host has
	// proved anything, so their number must not be the peers' to choose.
	MaxConnections int
}

// DefaultMaxConnections is Config.MaxConnections when zero: 63 hosts each
// with an admin queue and an I/O queue on each of 64 CPUs.
const DefaultMaxConnections = 4096

// Target serves subsystems on listeners.
type Target struct {
	g        *reactor.Group
	log      *slog.Logger
	maxConns int

	mu         sync.Mutex
	subsystems map[string]*Subsystem
	listeners  map[string]*listener
	genCtr     uint64 // discovery log generation, bumped on every change
	nextPortID uint16
	conns      map[*conn]struct{}
	closed     bool
	wg         sync.WaitGroup
	stats      Stats

	// failed counts commands completed with an error status, by status
	// (SCT and SC: 11 bits). Atomics: any queue may complete a command.
	failed [1 << 11]atomic.Uint64
	// queueMemory is the address space I/O queues hold for buffers.
	queueMemory atomic.Int64
}

// Stats are target-wide counters.
type Stats struct {
	Connections        int // open
	Controllers        int
	FatalPDUErrors     uint64
	KeepAliveExpiries  uint64
	RefusedConnections uint64 // closed at accept: MaxConnections were open
	// QueueBufferBytes is the address space the I/O queues hold for
	// command buffers and receive buffers: 2 x SQSIZE x MaxTransferBytes
	// plus a receive buffer each (rounded up to 2 MiB), touched only as
	// far as used, whatever their hosts send.
	QueueBufferBytes int64
}

// New returns a target whose I/O queues run on the reactors of g.
func New(g *reactor.Group, cfg Config) *Target {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	maxConns := cfg.MaxConnections
	if maxConns <= 0 {
		maxConns = DefaultMaxConnections
	}
	return &Target{
		g: g, log: log.With("component", "nvmeof-target"), maxConns: maxConns,
		subsystems: make(map[string]*Subsystem), listeners: make(map[string]*listener),
		conns: make(map[*conn]struct{}),
	}
}

// AddSubsystem creates a subsystem and opens its namespaces' channels on
// every reactor.
func (t *Target) AddSubsystem(cfg SubsystemConfig) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	s := newSubsystem(cfg)
	for _, ns := range cfg.Namespaces {
		st, err := t.openNamespace(ns)
		if err != nil {
			closeNamespaces(t.g, s.nsList())
			return err
		}
		s.insertNamespace(st)
		t.watch(s, st)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.subsystems[cfg.NQN]; dup {
		closeNamespaces(t.g, s.nsList())
		return fmt.Errorf("%w: %s", ErrSubsystemExists, cfg.NQN)
	}
	t.subsystems[cfg.NQN] = s
	t.genCtr++
	t.log.Info("subsystem added", "nqn", cfg.NQN, "namespaces", len(cfg.Namespaces))
	return nil
}

func (t *Target) openNamespace(ns Namespace) (*nsState, error) {
	if err := validNamespace(ns); err != nil {
		return nil, err
	}
	st := &nsState{Namespace: ns, channels: make([]*bdev.Channel, t.g.Len())}
	for i, r := range t.g.Reactors() {
		ch, err := bdev.Open(ns.Device, r)
		if err != nil {
			closeNamespaces(t.g, []*nsState{st})
			return nil, fmt.Errorf("target: namespace %d: %w", ns.ID, err)
		}
		st.channels[i] = ch
	}
	return st, nil
}

func closeNamespaces(g *reactor.Group, nss []*nsState) {
	for _, ns := range nss {
		if ns.unsubscribe != nil {
			ns.unsubscribe()
		}
		for i, ch := range ns.channels {
			if ch != nil {
				g.Get(i).Call(func(*reactor.Reactor) error { return ch.Close() })
			}
		}
	}
}

// RemoveSubsystem disconnects the subsystem's hosts and closes its
// namespaces' channels.
func (t *Target) RemoveSubsystem(ctx context.Context, name string) error {
	t.mu.Lock()
	s := t.subsystems[name]
	if s == nil {
		t.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNoSubsystem, name)
	}
	delete(t.subsystems, name)
	t.genCtr++
	t.mu.Unlock()
	for _, c := range s.controllersSnapshot() {
		c.fail("subsystem removed")
	}
	if err := s.waitControllers(ctx); err != nil {
		return err
	}
	closeNamespaces(t.g, s.nsList())
	t.log.Info("subsystem removed", "nqn", name)
	return nil
}

// AddNamespace adds a namespace to a live subsystem and tells its hosts
// (Namespace Attribute Changed).
func (t *Target) AddNamespace(subNQN string, ns Namespace) error {
	s, err := t.subsystem(subNQN)
	if err != nil {
		return err
	}
	if s.namespace(ns.ID) != nil {
		return fmt.Errorf("%w: %d", ErrNamespaceExists, ns.ID)
	}
	st, err := t.openNamespace(ns)
	if err != nil {
		return err
	}
	if !s.insertNamespace(st) {
		closeNamespaces(t.g, []*nsState{st})
		return fmt.Errorf("%w: %d", ErrNamespaceExists, ns.ID)
	}
	t.watch(s, st)
	s.namespaceChanged(ns.ID)
	return nil
}

// watch follows the events of a namespace's device: a resize is told to
// the subsystem's hosts (Namespace Attribute Changed; Identify reads the
// device's size as it is), a fault or removal is logged, as the device
// fails the commands that reach it.
func (t *Target) watch(s *Subsystem, ns *nsState) {
	ns.unsubscribe = ns.Device.Subscribe(func(ev bdev.Event) {
		switch ev.Kind {
		case bdev.EventResized:
			t.log.Info("namespace resized", "subsystem", s.NQN(), "nsid", ns.ID, "blocks", ev.Info.Blocks)
			s.namespaceChanged(ns.ID)
		default:
			t.log.Warn("namespace device "+ev.Kind.String(), "subsystem", s.NQN(), "nsid", ns.ID, "err", ev.Err)
		}
	})
}

// Controllers returns the number of controllers of subsystem subNQN.
func (t *Target) Controllers(subNQN string) int {
	s, err := t.subsystem(subNQN)
	if err != nil {
		return 0
	}
	return s.controllerCount()
}

// Connections returns the number of open queues of subsystem subNQN.
func (t *Target) Connections(subNQN string) int {
	s, err := t.subsystem(subNQN)
	if err != nil {
		return 0
	}
	return s.connections()
}

// CloseListener stops listening on addr (as Listen returned it); existing
// connections carry on.
func (t *Target) CloseListener(addr string) error {
	t.mu.Lock()
	l := t.listeners[addr]
	delete(t.listeners, addr)
	t.genCtr++
	t.mu.Unlock()
	if l == nil {
		return fmt.Errorf("target: not listening on %s", addr)
	}
	return l.ln.Close()
}

func (t *Target) subsystem(name string) (*Subsystem, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.subsystems[name]
	if s == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoSubsystem, name)
	}
	return s, nil
}

// Subsystems returns the subsystem NQNs.
func (t *Target) Subsystems() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.subsystems))
	for n := range t.subsystems {
		out = append(out, n)
	}
	return out
}

// Stats returns target-wide counters.
func (t *Target) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.stats
	st.Connections = len(t.conns)
	st.QueueBufferBytes = t.queueMemory.Load()
	for _, s := range t.subsystems {
		st.Controllers += len(s.controllersSnapshot())
	}
	return st
}

type listener struct {
	ln     net.Listener
	addr   string // ln.Addr().String(): the key subsystems name it by
	portID uint16
}

// Listen serves NVMe/TCP (I/O and discovery) on addr ("host:port"), and
// returns the bound address (useful with port 0).
func (t *Target) Listen(addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("target: listen %s: %w", addr, err)
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		ln.Close()
		return nil, errors.New("target: closed")
	}
	// Port IDs (discovery log PORTID) stay unique while listeners come
	// and go.
	t.nextPortID++
	l := &listener{ln: ln, addr: ln.Addr().String(), portID: t.nextPortID}
	t.listeners[l.addr] = l
	t.genCtr++
	t.mu.Unlock()
	t.wg.Add(1)
	go t.accept(l)
	t.log.Info("listening", "addr", ln.Addr().String())
	return ln.Addr(), nil
}

func (t *Target) accept(l *listener) {
	defer t.wg.Done()
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			t.log.Warn("accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			nc.Close()
			continue
		}
		if len(t.conns) >= t.maxConns {
			t.stats.RefusedConnections++
			n := t.stats.RefusedConnections
			t.mu.Unlock()
			if n&(n-1) == 0 { // 1st, 2nd, 4th...: a flood does not flood the log
				t.log.Warn("connection refused: too many open", "peer", nc.RemoteAddr().String(), "max", t.maxConns, "refused", n)
			}
			nc.Close()
			continue
		}
		c := newConn(t, nc.(*net.TCPConn), l)
		t.conns[c] = struct{}{}
		t.mu.Unlock()
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			c.serve()
			t.mu.Lock()
			delete(t.conns, c)
			t.mu.Unlock()
		}()
	}
}

// Close stops listening, disconnects every host and waits for the
// connections to finish their in-flight commands.
func (t *Target) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	for _, l := range t.listeners {
		l.ln.Close()
	}
	conns := make([]*conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	subs := make([]*Subsystem, 0, len(t.subsystems))
	for _, s := range t.subsystems {
		subs = append(subs, s)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.abort()
	}
	t.wg.Wait()
	for _, s := range subs {
		closeNamespaces(t.g, s.nsList())
	}
	return nil
}

// discoveryEntries lists what a host may reach, for the discovery log.
func (t *Target) discoveryEntries(hostNQN string) (uint64, []discoveryTarget) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []discoveryTarget
	for _, addr := range slices.Sorted(maps.Keys(t.listeners)) {
		l := t.listeners[addr]
		out = append(out, discoveryTarget{sub: nqn.Discovery, l: l, current: true})
		for _, name := range slices.Sorted(maps.Keys(t.subsystems)) {
			if s := t.subsystems[name]; s.listensOn(addr) && s.hostAllowed(hostNQN) {
				out = append(out, discoveryTarget{sub: name, l: l})
			}
		}
	}
	return t.genCtr, out
}

type discoveryTarget struct {
	sub     string
	l       *listener
	current bool
}

// countStatus records a command's completion status (successes are not
// counted here: the devices count them).
func (t *Target) countStatus(st nvme.Status) {
	if !st.OK() {
		t.failed[st.Kind()].Add(1)
	}
}

// FailedCommands returns how many commands completed with each kind of
// error status (Status.Kind).
func (t *Target) FailedCommands() map[nvme.Status]uint64 {
	out := map[nvme.Status]uint64{}
	for i := range t.failed {
		if n := t.failed[i].Load(); n > 0 {
			out[nvme.Status(i)] = n
		}
	}
	return out
}

func (t *Target) countFatal() {
	t.mu.Lock()
	t.stats.FatalPDUErrors++
	t.mu.Unlock()
}
