package bdev

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/cpu"

	"github.com/strata-storage/strata/internal/invariants"
	"github.com/strata-storage/strata/internal/iomem"
	"github.com/strata-storage/strata/reactor"
)

// UUID is a 16-byte RFC 4122 identifier.
type UUID [16]byte

func (u UUID) String() string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// Info describes a device. It changes only while the device is quiesced
// (a resize), and channels see the change when I/O resumes.
type Info struct {
	Name      string
	Product   string // backend kind: "null", "malloc", "uring"...
	UUID      UUID
	BlockSize uint32 // bytes per logical block, a power of two >= 512
	Blocks    uint64 // number of logical blocks
	// BufAlign is the alignment buffers must have (O_DIRECT needs the
	// logical block size; RAM devices take any buffer).
	BufAlign int
	// VolatileCache reports a write cache that Flush or FUA must drain.
	VolatileCache bool
}

// Size returns the device's capacity in bytes.
func (i Info) Size() uint64 { return uint64(i.BlockSize) * i.Blocks }

// Device is a block device shared by all reactors. Base implements all
// but OpenBackend and Close.
type Device interface {
	Info() Info
	// OpenBackend returns the backend half of a channel for reactor r. It is
	// called on r (see Open).
	OpenBackend(r *reactor.Reactor) (Backend, error)
	// Stats adds up the I/O statistics of every channel.
	Stats() Stats
	// Quiesce holds new I/O and waits for the I/O in flight; Resume lets
	// it go on (see Base.Quiesce).
	Quiesce(ctx context.Context) error
	Resume()
	// Subscribe tells fn of the device's events (see Base.Subscribe).
	Subscribe(fn func(Event)) (cancel func())
	// Close releases the device; its channels must be closed first.
	Close() error
}

// Backend is a device's per-reactor I/O path. Submit gets only requests
// that passed validation and finishes each exactly once, through
// Request.Complete from a completion handler or by deferring the request
// (reactor.Defer) after setting its Status; never from inside Submit.
type Backend interface {
	Submit(req *Request)
	// Close is called on the reactor once no request is in flight.
	Close() error
}

// Aborter is a Backend of a device that can hang (a remote device, a
// drive): requests it has not finished within Timeout are aborted. Abort
// must finish req soon, and exactly once: with StatusAborted when it
// stopped it, or with its outcome when that came first. Until then the
// request and its buffer stay the backend's: an abort never lets a late
// completion write into memory its caller has taken back.
type Aborter interface {
	Backend
	Timeout() time.Duration // 0: none
	Abort(req *Request)
}

// Channel is a device's I/O path on one reactor. Use it only there.
type Channel struct {
	dev     Device
	info    Info
	backend Backend
	r       *reactor.Reactor
	stats   *channelStats
	stopped bool
	onClose func()

	// inflight counts requests submitted and not yet finished, failed
	// ones included until their callback ran.
	inflight int
	// While the device is quiesced, new requests wait in held; drained is
	// called once inflight reaches 0.
	hold    bool
	held    RequestQueue
	nheld   int
	drained func()

	// With a timeout (the backend is an Aborter), requests in flight are
	// listed oldest first, and a timer sweeps the list while it is not
	// empty.
	aborter          Aborter
	timeoutNs        int64
	oldest, youngest *Request
	sweep            sweepTask
	sweepArmed       bool
	sweepTimer       *time.Timer
}

// sweepTask aborts a channel's requests past their timeout.
type sweepTask struct{ c *Channel }

func (t *sweepTask) Run(*reactor.Reactor) { t.c.sweepOld() }

// Open opens a channel to dev on reactor r. It may be called from any
// goroutine but not from r itself (it waits for r).
func Open(dev Device, r *reactor.Reactor) (*Channel, error) {
	var ch *Channel
	err := r.Call(func(r *reactor.Reactor) error {
		var err error
		ch, err = OpenOnReactor(dev, r)
		return err
	})
	return ch, err
}

// OpenOnReactor is Open called on r itself.
func OpenOnReactor(dev Device, r *reactor.Reactor) (*Channel, error) {
	b, err := dev.OpenBackend(r)
	if err != nil {
		return nil, fmt.Errorf("bdev %s: open channel on reactor %d: %w", dev.Info().Name, r.ID(), err)
	}
	ch := &Channel{dev: dev, info: dev.Info(), backend: b, r: r, stats: new(channelStats)}
	ch.sweep.c = ch
	if a, ok := b.(Aborter); ok && a.Timeout() > 0 {
		ch.aborter, ch.timeoutNs = a, int64(a.Timeout())
	}
	if t, ok := dev.(tracker); ok {
		ch.onClose = t.track(ch)
	}
	return ch, nil
}

// Info returns the device's description.
func (c *Channel) Info() Info { return c.info }

// Reactor returns the reactor the channel belongs to.
func (c *Channel) Reactor() *reactor.Reactor { return c.r }

// Submit starts req. Its Callback runs later on this reactor, whatever the
// outcome. While the device is quiesced the request waits, and starts (in
// the order submitted) when I/O resumes. Reactor only.
func (c *Channel) Submit(req *Request) {
	req.ch = c
	req.Status, req.Errno, req.endNs = StatusOK, 0, 0
	if c.hold {
		c.held.Push(req)
		c.nheld++
		return
	}
	c.start(req)
}

func (c *Channel) start(req *Request) {
	c.inflight++
	st := StatusOK
	if p := req.parent; p != nil {
		// A child: its layer checked the parent and made the child's span.
		// One validation and one clock reading per stack.
		req.startNs = p.startNs
		if invariants.Enabled {
			invariants.Assert(c.validate(req) == StatusOK, "bdev: a layer made a child request its device refuses")
		}
	} else {
		req.startNs = nowNs()
		st = c.validate(req)
	}
	if c.aborter != nil {
		c.track(req)
	}
	if st != StatusOK {
		req.Status = st
		c.r.Defer(req)
		return
	}
	c.backend.Submit(req)
}

// Inflight returns how many requests are submitted and not yet finished,
// held ones included. Reactor only.
func (c *Channel) Inflight() int { return c.inflight + c.nheld }

// Held returns how many requests wait for the device to resume. Reactor
// only.
func (c *Channel) Held() int { return c.nheld }

func (c *Channel) validate(req *Request) Status {
	if c.stopped {
		return StatusNotReady
	}
	switch req.Op {
	case OpFlush:
		return StatusOK
	case OpRead, OpWrite:
		if uint64(len(req.Buf)) != req.Bytes(c.info.BlockSize) || len(req.Buf) > MaxIOBytes {
			return StatusInvalidRequest
		}
		if c.info.BufAlign > 1 && !iomem.Aligned(req.Buf, c.info.BufAlign) {
			return StatusInvalidRequest
		}
	case OpWriteZeroes, OpUnmap:
	default:
		return StatusUnsupported
	}
	if req.Blocks == 0 {
		return StatusInvalidRequest
	}
	if req.LBA >= c.info.Blocks || uint64(req.Blocks) > c.info.Blocks-req.LBA {
		return StatusInvalidRange
	}
	return StatusOK
}

func (c *Channel) finish(req *Request) {
	if c.aborter != nil {
		c.untrack(req)
	}
	if req.endNs == 0 { // the bottom of the stack, or a request a layer ends itself
		req.endNs = nowNs()
	}
	c.stats.record(req, c.info.BlockSize, req.endNs-req.startNs)
	c.inflight--
	if c.inflight == 0 && c.drained != nil {
		d := c.drained
		c.drained = nil
		d()
	}
	req.Callback(req)
}

// track lists a request in flight on a channel with a timeout, and arms
// the sweep.
func (c *Channel) track(req *Request) {
	req.timedOut, req.nextOld, req.prevOld = false, nil, c.youngest
	if c.youngest != nil {
		c.youngest.nextOld = req
	} else {
		c.oldest = req
	}
	c.youngest = req
	if !c.sweepArmed {
		c.armSweep()
	}
}

func (c *Channel) untrack(req *Request) {
	if req.prevOld != nil {
		req.prevOld.nextOld = req.nextOld
	} else if c.oldest == req {
		c.oldest = req.nextOld
	}
	if req.nextOld != nil {
		req.nextOld.prevOld = req.prevOld
	} else if c.youngest == req {
		c.youngest = req.prevOld
	}
	req.prevOld, req.nextOld = nil, nil
	if req.timedOut && req.Status == StatusAborted {
		req.Status = StatusTimeout
	}
}

// sweepEvery is how often a channel with a timeout looks for overdue
// requests, as a fraction of the timeout: a request is aborted between one
// and 1+1/sweepEvery timeouts after it started.
const sweepEvery = 4

// armSweep has a timer hand the reactor the sweep: a reactor has no timers
// of its own, and sleeps while its requests are out.
func (c *Channel) armSweep() {
	c.sweepArmed = true
	d := time.Duration(c.timeoutNs / sweepEvery)
	if c.sweepTimer == nil {
		c.sweepTimer = time.AfterFunc(d, func() { c.r.Post(&c.sweep) })
		return
	}
	c.sweepTimer.Reset(d)
}

// sweepOld aborts the requests in flight past the timeout, oldest first.
func (c *Channel) sweepOld() {
	c.sweepArmed = false
	if c.stopped {
		return
	}
	now := nowNs()
	for req := c.oldest; req != nil && now-req.startNs >= c.timeoutNs; {
		next := req.nextOld // Abort may finish req and unlink it
		if !req.timedOut {
			req.timedOut = true
			c.aborter.Abort(req)
		}
		req = next
	}
	if c.oldest != nil {
		c.armSweep()
	}
}

// quiesce holds new requests and calls drained (on the reactor) once none
// is in flight. Reactor only.
func (c *Channel) quiesce(drained func()) {
	c.hold = true
	if c.inflight == 0 {
		drained()
		return
	}
	c.drained = drained
}

// resume takes the device's current Info and starts the requests held
// meanwhile, in the order they came. Reactor only.
func (c *Channel) resume() {
	c.hold, c.drained = false, nil
	c.info = c.dev.Info()
	for req := c.held.Pop(); req != nil; req = c.held.Pop() {
		c.nheld--
		c.start(req)
	}
}

// Close closes the channel; no request may be in flight. Reactor only.
func (c *Channel) Close() error {
	if c.stopped {
		return nil
	}
	invariants.Assert(c.Inflight() == 0, "bdev: channel closed with requests in flight")
	c.stopped = true
	if c.sweepTimer != nil {
		c.sweepTimer.Stop()
	}
	if c.onClose != nil {
		c.onClose()
	}
	return c.backend.Close()
}

// Stats are I/O totals.
type Stats struct {
	ReadOps, WriteOps, FlushOps, ZeroOps, UnmapOps uint64
	ReadBytes, WriteBytes                          uint64
	ReadLatencyNs, WriteLatencyNs                  uint64 // sums, for averages
	// ReadLatency and WriteLatency count completed reads and writes by
	// latency (LatencyBucketBound).
	ReadLatency, WriteLatency LatencyHistogram
	Errors                    uint64
}

// LatencyBuckets is the number of latency histogram buckets: bucket i <
// LatencyBuckets-1 counts latencies up to LatencyBucketBound(i), the last
// one those above.
const LatencyBuckets = 22

// latencyBase is the upper bound of the first bucket; each next bucket
// doubles it, up to 8 µs << 20 ≈ 8.4 s.
const latencyBase = 8000 // ns

// LatencyHistogram counts I/Os by latency.
type LatencyHistogram [LatencyBuckets]uint64

// LatencyBucketBound returns the upper bound (inclusive) of bucket i in
// nanoseconds; the last bucket has none.
func LatencyBucketBound(i int) uint64 { return latencyBase << i }

// latencyBucket returns the bucket of a latency: a shift and a count of
// leading zeros, cheap enough for every I/O.
func latencyBucket(ns int64) int {
	if ns <= latencyBase {
		return 0
	}
	return min(bits.Len64(uint64(ns-1)/latencyBase), LatencyBuckets-1)
}

// Add returns s plus o.
func (s Stats) Add(o Stats) Stats {
	s.ReadOps += o.ReadOps
	s.WriteOps += o.WriteOps
	s.FlushOps += o.FlushOps
	s.ZeroOps += o.ZeroOps
	s.UnmapOps += o.UnmapOps
	s.ReadBytes += o.ReadBytes
	s.WriteBytes += o.WriteBytes
	s.ReadLatencyNs += o.ReadLatencyNs
	s.WriteLatencyNs += o.WriteLatencyNs
	for i := range s.ReadLatency {
		s.ReadLatency[i] += o.ReadLatency[i]
		s.WriteLatency[i] += o.WriteLatency[i]
	}
	s.Errors += o.Errors
	return s
}

// channelStats is written by one reactor and read by anyone: atomics, on
// their own cache lines per channel.
type channelStats struct {
	_                                     cpu.CacheLinePad
	ops                                   [numOps]atomic.Uint64
	readBytes, writeBytes                 atomic.Uint64
	readLatencyNs, writeLatencyNs, errors atomic.Uint64
	readLatency, writeLatency             [LatencyBuckets]atomic.Uint64
	_                                     cpu.CacheLinePad
}

func (s *channelStats) record(req *Request, blockSize uint32, latencyNs int64) {
	if req.Status != StatusOK {
		s.errors.Add(1)
		return
	}
	if req.Op >= numOps {
		return
	}
	s.ops[req.Op].Add(1)
	switch req.Op {
	case OpRead:
		s.readBytes.Add(req.Bytes(blockSize))
		s.readLatencyNs.Add(uint64(latencyNs))
		s.readLatency[latencyBucket(latencyNs)].Add(1)
	case OpWrite:
		s.writeBytes.Add(req.Bytes(blockSize))
		s.writeLatencyNs.Add(uint64(latencyNs))
		s.writeLatency[latencyBucket(latencyNs)].Add(1)
	}
}

func (s *channelStats) load() Stats {
	st := Stats{
		ReadOps: s.ops[OpRead].Load(), WriteOps: s.ops[OpWrite].Load(), FlushOps: s.ops[OpFlush].Load(),
		ZeroOps: s.ops[OpWriteZeroes].Load(), UnmapOps: s.ops[OpUnmap].Load(),
		ReadBytes: s.readBytes.Load(), WriteBytes: s.writeBytes.Load(),
		ReadLatencyNs: s.readLatencyNs.Load(), WriteLatencyNs: s.writeLatencyNs.Load(),
		Errors: s.errors.Load(),
	}
	for i := range st.ReadLatency {
		st.ReadLatency[i] = s.readLatency[i].Load()
		st.WriteLatency[i] = s.writeLatency[i].Load()
	}
	return st
}

type tracker interface {
	track(*Channel) (untrack func())
}

// Base carries what every device has: its Info, its open channels and the
// statistics of every channel it had, and the quiesce and event machinery
// built on them. Backends embed it.
type Base struct {
	mu       sync.Mutex
	info     Info
	open     map[*Channel]struct{}
	closed   Stats // totals of channels already closed
	quiesced bool
	subs     map[int]func(Event)
	nextSub  int
}

// NewBase returns a Base for info.
func NewBase(info Info) Base {
	return Base{info: info, open: make(map[*Channel]struct{}), subs: make(map[int]func(Event))}
}

// Info returns the device's description.
func (b *Base) Info() Info {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.info
}

// Stats adds up every channel's statistics.
func (b *Base) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.closed
	for ch := range b.open {
		s = s.Add(ch.stats.load())
	}
	return s
}

func (b *Base) track(ch *Channel) func() {
	b.mu.Lock()
	b.open[ch] = struct{}{}
	ch.hold = b.quiesced // opened while quiesced: held like the others
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		delete(b.open, ch)
		b.closed = b.closed.Add(ch.stats.load())
		b.mu.Unlock()
	}
}

// OpenChannels returns how many channels are open.
func (b *Base) OpenChannels() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.open)
}

// ErrQuiesced reports a device quiesced already.
var ErrQuiesced = errors.New("bdev: device already quiesced")

// Quiesce holds every new request to the device, on every channel (those
// opened meanwhile too), and returns once every request submitted before
// it has finished: the point from which a reconfiguration (a resize, a
// snapshot, a change of the layers below) sees no I/O in flight. Requests
// submitted from then on wait, in order, until Resume. On ctx's end it
// resumes and returns ctx's error. It must not be called from a reactor
// (it waits for them).
func (b *Base) Quiesce(ctx context.Context) error {
	b.mu.Lock()
	if b.quiesced {
		b.mu.Unlock()
		return ErrQuiesced
	}
	b.quiesced = true
	chans := make([]*Channel, 0, len(b.open))
	for ch := range b.open {
		chans = append(chans, ch)
	}
	b.mu.Unlock()
	drained := make(chan struct{}, len(chans))
	for _, ch := range chans {
		err := ch.r.Post(reactor.TaskFunc(func(*reactor.Reactor) {
			ch.quiesce(func() { drained <- struct{}{} })
		}))
		if err != nil { // a stopped reactor has nothing in flight
			drained <- struct{}{}
		}
	}
	for range chans {
		select {
		case <-drained:
		case <-ctx.Done():
			b.Resume()
			return fmt.Errorf("bdev %s: quiesce: %w", b.Info().Name, ctx.Err())
		}
	}
	return nil
}

// Resume lets I/O flow again after Quiesce: each channel takes the
// device's current Info and starts the requests held meanwhile, in the
// order they were submitted.
func (b *Base) Resume() {
	b.mu.Lock()
	b.quiesced = false
	chans := make([]*Channel, 0, len(b.open))
	for ch := range b.open {
		chans = append(chans, ch)
	}
	b.mu.Unlock()
	for _, ch := range chans {
		ch.r.Post(reactor.TaskFunc(func(*reactor.Reactor) { ch.resume() }))
	}
}

// SetBlocks changes the device's size in blocks; it is for devices that
// resize, while quiesced.
func (b *Base) SetBlocks(blocks uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	invariants.Assert(b.quiesced, "bdev: resized while not quiesced")
	b.info.Blocks = blocks
}

// EventKind says what happened to a device.
type EventKind uint8

const (
	// EventResized: the device's size changed (Info has the new one).
	EventResized EventKind = iota + 1
	// EventRemoved: the device is going away; stop using it.
	EventRemoved
	// EventFaulted: the device can no longer do I/O (Err says why).
	EventFaulted
)

func (k EventKind) String() string {
	switch k {
	case EventResized:
		return "resized"
	case EventRemoved:
		return "removed"
	case EventFaulted:
		return "faulted"
	}
	return "event?"
}

// Event is something that happened to a device, told to its consumers.
type Event struct {
	Kind EventKind
	Info Info  // the device's Info after the event
	Err  error // for EventFaulted
}

// Subscribe calls fn with every event of the device from now on, on the
// goroutine that raises it (a control path, never a reactor's I/O path:
// fn may block briefly, not on I/O). It returns the function that ends
// the subscription.
func (b *Base) Subscribe(fn func(Event)) (cancel func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := b.nextSub
	b.nextSub++
	b.subs[id] = fn
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.subs, id)
	}
}

// Notify tells every subscriber of ev (Info filled in here).
func (b *Base) Notify(ev Event) {
	b.mu.Lock()
	ev.Info = b.info
	fns := make([]func(Event), 0, len(b.subs))
	for _, fn := range b.subs {
		fns = append(fns, fn)
	}
	b.mu.Unlock()
	for _, fn := range fns {
		fn(ev)
	}
}

// NewUUID returns a random (version 4) UUID.
func NewUUID() UUID {
	var u UUID
	_, _ = rand.Read(u[:]) // crypto/rand.Read never fails on Linux
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}
