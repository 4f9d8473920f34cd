package reactor

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-storage/strata/internal/invariants"
	"github.com/strata-storage/strata/internal/iomem"
	"github.com/strata-storage/strata/reactor/mpsc"
	"github.com/strata-storage/strata/reactor/uring"
)

// Defaults for Config fields left zero.
const (
	DefaultRingEntries = 256
	DefaultWaitEntries = 4096
	DefaultInbox       = 4096
	DefaultSpin        = 50 * time.Microsecond
	DefaultSpinIO      = time.Millisecond
	DefaultSubmitBatch = 8
	DefaultFileSlots   = 64
	// reapBatch is how many CQEs one reap copies out at a time.
	reapBatch = 64
)

// ErrStopped reports a reactor that no longer accepts work.
var ErrStopped = errors.New("reactor: stopped")

// wakeUserData marks the CQE of the armed eventfd read, cancelUserData
// those of the cancellations a stopping reactor asks for; operation slots
// use user data below 2^32.
const (
	wakeUserData   = math.MaxUint64
	cancelUserData = math.MaxUint64 - 1
)

// Config configures one reactor.
type Config struct {
	ID   int
	Core int // CPU to pin to; -1 leaves the thread unpinned
	// RingEntries is the io_uring SQ size, and the bound on operations
	// from Prep in flight on this reactor.
	RingEntries uint32
	// WaitEntries bounds the operations from PrepWait in flight: socket
	// receives, one per connection the reactor serves. They have a bound
	// of their own so that however many idle peers hold a receive open,
	// sends and disk I/O still find a slot. The CQ holds both kinds.
	WaitEntries uint32
	Inbox       int           // capacity of the task queue, a power of two
	Spin        time.Duration // busy-poll time before sleeping
	// SpinIO replaces Spin while an operation from Prep (not PrepWait) is
	// in flight, when longer: such an operation completes on its own
	// within a device's latency, and sleeping through it costs each
	// completion a wake-up.
	SpinIO    time.Duration
	FileSlots int  // registered-file table size
	SQPoll    bool // use a kernel SQ polling thread
	// SubmitBatch is the most prepared operations one io_uring_enter
	// carries: Prep submits what is queued once it holds this many. A
	// virtio disk handed 32 reads at once works through them in a burst
	// and then idles; handed 8 at a time it keeps streaming.
	SubmitBatch int
}

func (c *Config) setDefaults() {
	if c.RingEntries == 0 {
		c.RingEntries = DefaultRingEntries
	}
	if c.WaitEntries == 0 {
		c.WaitEntries = DefaultWaitEntries
	}
	if c.Inbox == 0 {
		c.Inbox = DefaultInbox
	}
	if c.Spin == 0 {
		c.Spin = DefaultSpin
	}
	if c.SpinIO == 0 {
		c.SpinIO = DefaultSpinIO
	}
	if c.FileSlots == 0 {
		c.FileSlots = DefaultFileSlots
	}
	if c.SubmitBatch == 0 {
		c.SubmitBatch = DefaultSubmitBatch
	}
}

// Counters are a reactor's running totals, readable from any goroutine.
type Counters struct {
	BusyNs    uint64 // time in loop iterations that did work
	IdleNs    uint64 // time spinning or asleep
	Submitted uint64 // io_uring operations handed to the kernel
	Completed uint64 // io_uring completions handled
	Tasks     uint64 // Tasks run
	Wakeups   uint64 // sleeps ended
}

// Reactor is one event loop. See the package doc.
type Reactor struct {
	cfg   Config
	inbox *mpsc.Queue[Task]

	// Cross-goroutine state.
	sleeping atomic.Bool
	stopping atomic.Bool
	wakeFD   int
	counters struct {
		busyNs, idleNs, submitted, completed, tasks, wakeups atomic.Uint64
	}
	done chan struct{}

	// Reactor-owned state.
	ring     *uring.Ring
	wakeMem  *iomem.Region // the 8 bytes the eventfd read lands in
	slots    []Completer   // in-flight operations by slot index
	waitSlot []bool        // slots holding an operation from PrepWait
	// slots whose PrepWait operation a stopping reactor asked to cancel
	cancelSent []bool
	freeSlot   []uint32
	deferred   taskQueue
	pollers    []Poller
	cqes       [reapBatch]uring.CQE
	files      []bool // registered-file slots in use
	inflight   int    // operations in flight
	waiting    int    // of which from PrepWait
	started    time.Time
}

// Start creates a reactor and runs its loop on a new goroutine; it returns
// once the ring is set up on the reactor's own thread.
func Start(cfg Config) (*Reactor, error) {
	cfg.setDefaults()
	inbox, err := mpsc.New[Task](cfg.Inbox)
	if err != nil {
		return nil, fmt.Errorf("reactor %d: %w", cfg.ID, err)
	}
	wakeFD, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("reactor %d: eventfd: %w", cfg.ID, err)
	}
	r := &Reactor{cfg: cfg, inbox: inbox, wakeFD: wakeFD, done: make(chan struct{})}
	ready := make(chan error)
	go r.run(ready)
	if err := <-ready; err != nil {
		unix.Close(wakeFD)
		return nil, fmt.Errorf("reactor %d: %w", cfg.ID, err)
	}
	return r, nil
}

// ID returns the reactor's index.
func (r *Reactor) ID() int { return r.cfg.ID }

// Core returns the CPU the reactor is pinned to, or -1.
func (r *Reactor) Core() int { return r.cfg.Core }

// Send hands t to the reactor; false means the inbox is full (or the reactor
// stopped) and the caller must retry later or fail the work. Safe from any
// goroutine; allocates nothing when t is a pointer.
func (r *Reactor) Send(t Task) bool {
	if r.stopping.Load() || !r.inbox.Push(t) {
		return false
	}
	if r.sleeping.Load() && r.sleeping.CompareAndSwap(true, false) {
		r.wake()
	}
	return true
}

// Post is Send that waits, yielding the processor, while the inbox is full.
// It fails only when the reactor has stopped.
func (r *Reactor) Post(t Task) error {
	for !r.Send(t) {
		if r.stopping.Load() {
			return ErrStopped
		}
		runtime.Gosched()
	}
	return nil
}

// Call runs f on the reactor and waits for it: for control paths (it
// allocates).
func (r *Reactor) Call(f func(r *Reactor) error) error {
	res := make(chan error, 1)
	if err := r.Post(TaskFunc(func(r *Reactor) { res <- f(r) })); err != nil {
		return err
	}
	select {
	case err := <-res:
		return err
	case <-r.done:
		return ErrStopped
	}
}

// eventfdOne is the 8-byte increment written to wake a reactor; a package
// variable so the write does not allocate.
var eventfdOne = []byte{1, 0, 0, 0, 0, 0, 0, 0}

func (r *Reactor) wake() {
	// EAGAIN means the counter is saturated: the reactor is being woken anyway.
	_, _ = unix.Write(r.wakeFD, eventfdOne)
}

// Stop stops accepting tasks, lets operations in flight complete, closes the
// ring and waits for the loop to end.
func (r *Reactor) Stop() {
	if r.stopping.CompareAndSwap(false, true) {
		r.wake()
	}
	<-r.done
}

// Done is closed once the reactor has stopped: its loop has ended and no
// operation of it is in flight, so no buffer is the kernel's any more.
func (r *Reactor) Done() <-chan struct{} { return r.done }

// Counters returns the reactor's totals.
func (r *Reactor) Counters() Counters {
	c := &r.counters
	return Counters{
		BusyNs: c.busyNs.Load(), IdleNs: c.idleNs.Load(),
		Submitted: c.submitted.Load(), Completed: c.completed.Load(),
		Tasks: c.tasks.Load(), Wakeups: c.wakeups.Load(),
	}
}

func (r *Reactor) run(ready chan<- error) {
	// Never unlocked: the goroutine exits locked, so the runtime ends the
	// thread with it. Returned to the scheduler, a thread pinned to one
	// core would run other goroutines there, and threads it spawned would
	// inherit the one-core mask.
	runtime.LockOSThread()
	defer close(r.done)
	if err := r.setup(); err != nil {
		ready <- err
		return
	}
	ready <- nil
	r.loop()
	r.drain()
	r.teardown()
}

func (r *Reactor) setup() error {
	if r.cfg.Core >= 0 {
		var set unix.CPUSet
		set.Set(r.cfg.Core)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("pin to core %d: %w", r.cfg.Core, err)
		}
	}
	ring, err := uring.New(uring.Options{
		Entries: r.cfg.RingEntries,
		// Room for every operation Prep and PrepWait may have in flight,
		// with the SQ's worth of slack the kernel gives by default.
		CQEntries:    2*r.cfg.RingEntries + r.cfg.WaitEntries,
		SingleIssuer: true,
		SQPoll:       r.cfg.SQPoll,
		SQThreadCPU:  -1,
	})
	if err != nil {
		return err
	}
	r.ring = ring
	if err := ring.RegisterSparseFiles(r.cfg.FileSlots); err != nil {
		ring.Close()
		return err
	}
	r.files = make([]bool, r.cfg.FileSlots)
	if r.wakeMem, err = iomem.Map(8); err != nil {
		ring.Close()
		return err
	}
	// One slot per CQ entry: the kernel never has more completions to post
	// than the CQ holds without overflowing.
	n := ring.CQEntries()
	r.slots = make([]Completer, n)
	r.waitSlot = make([]bool, n)
	r.cancelSent = make([]bool, n)
	r.freeSlot = make([]uint32, n)
	for i := range n {
		r.freeSlot[i] = n - 1 - i
	}
	r.deferred.init(256)
	r.armWake()
	r.started = time.Now()
	return nil
}

func (r *Reactor) teardown() {
	r.ring.Close()
	r.wakeMem.Unmap()
	unix.Close(r.wakeFD)
}

// armWake keeps a read of the eventfd in the ring so a producer can end the
// reactor's sleep.
func (r *Reactor) armWake() {
	sqe := r.getSQE()
	sqe.PrepRead(int32(r.wakeFD), r.wakeMem.Bytes()[:8], 0)
	sqe.UserData = wakeUserData
}

// getSQE returns an SQE, submitting what is queued when the SQ is full.
func (r *Reactor) getSQE() *uring.SQE {
	for {
		if sqe := r.ring.GetSQE(); sqe != nil {
			return sqe
		}
		r.submit()
	}
}

// Prep reserves an operation slot for c and returns the SQE to fill, or nil
// when RingEntries operations from Prep are already in flight (try again
// after a completion). Fill the SQE before the next Prep, which may submit it; its
// UserData is set, do not change it. Prep is for operations that complete
// on their own (a read or write of a file or device, a send): while one is
// in flight, an idle loop spins for Config.SpinIO. Reactor only.
func (r *Reactor) Prep(c Completer) *uring.SQE { return r.prep(c, false) }

// PrepWait is Prep for an operation that waits on a peer, such as a receive
// on a socket: it may stay in flight indefinitely, so it does not keep the
// reactor spinning, and it counts against WaitEntries rather than
// RingEntries, so that idle peers cannot take the slots others need. It
// returns nil when WaitEntries such operations are in flight. Reactor only.
func (r *Reactor) PrepWait(c Completer) *uring.SQE { return r.prep(c, true) }

func (r *Reactor) prep(c Completer, wait bool) *uring.SQE {
	n := len(r.freeSlot)
	switch {
	case n == 0:
		return nil
	case wait && r.waiting >= int(r.cfg.WaitEntries):
		return nil
	case !wait && r.inflight-r.waiting >= int(r.cfg.RingEntries):
		return nil
	}
	if r.ring.Unsubmitted() >= uint32(r.cfg.SubmitBatch) {
		r.submit()
	}
	slot := r.freeSlot[n-1]
	r.freeSlot = r.freeSlot[:n-1]
	r.slots[slot] = c
	r.waitSlot[slot] = wait
	r.inflight++
	if wait {
		r.waiting++
	}
	sqe := r.getSQE()
	sqe.UserData = uint64(slot)
	return sqe
}

// RingEntries returns how many operations from Prep may be in flight at
// once (Config.RingEntries).
func (r *Reactor) RingEntries() int { return int(r.cfg.RingEntries) }

// Defer runs t on this reactor at its next loop iteration, after the work
// at hand: how synchronous devices complete without recursion. Reactor only.
func (r *Reactor) Defer(t Task) { r.deferred.push(t) }

// AddPoller adds p to the loop. Reactor only.
func (r *Reactor) AddPoller(p Poller) { r.pollers = append(r.pollers, p) }

// RemovePoller removes p from the loop. Reactor only; a poller may remove
// itself (or another) from its Poll: the turn's walk goes on over the list
// it started with.
func (r *Reactor) RemovePoller(p Poller) {
	if i := slices.Index(r.pollers, p); i >= 0 {
		r.pollers = slices.Delete(slices.Clone(r.pollers), i, i+1)
	}
}

// RegisterFile puts fd in the ring's registered-file table and returns its
// slot, for SQEs flagged uring.SQEFixedFile. Reactor only.
func (r *Reactor) RegisterFile(fd int) (int32, error) {
	for i, used := range r.files {
		if !used {
			if err := r.ring.UpdateFiles(uint32(i), []int32{int32(fd)}); err != nil {
				return -1, err
			}
			r.files[i] = true
			return int32(i), nil
		}
	}
	return -1, fmt.Errorf("reactor %d: all %d registered-file slots in use", r.cfg.ID, len(r.files))
}

// UnregisterFile empties a slot from RegisterFile. Reactor only.
func (r *Reactor) UnregisterFile(slot int32) error {
	if err := r.ring.UpdateFiles(uint32(slot), []int32{-1}); err != nil {
		return err
	}
	r.files[slot] = false
	return nil
}

// Inflight returns the number of operations in flight. Reactor only.
func (r *Reactor) Inflight() int { return r.inflight }

func (r *Reactor) loop() {
	c := &r.counters
	last := time.Now()
	lastWork := last
	for !r.stopping.Load() {
		work := r.runTasks() + r.runDeferred() + r.poll()
		r.submit()
		work += r.reap()
		now := time.Now()
		if work > 0 {
			c.busyNs.Add(uint64(now.Sub(last)))
			last, lastWork = now, now
			continue
		}
		// Spin a while before sleeping, I/O in flight or not: a sleep costs
		// the next completion or request a wake-up of tens of microseconds
		// on the VMs measured (NVMe/TCP on loopback at QD 1: 64 -> 33 us at
		// p50, docs/profile-target.md), and a task arriving soon costs its
		// producer no eventfd write. Longer while I/O that completes on its
		// own is in flight: a virtio disk completes a queue of 32 reads in
		// one batch every ~300 us, and a reactor asleep by then made its
		// file volume 15-20% slower through NVMe/TCP. With I/O in flight, each
		// turn yields the core: io-wq workers finishing punted operations
		// share the reactor's affinity and would otherwise wait for the
		// spin to end (128 KiB reads from tmpfs: -37% without the yield).
		// Not with socket receives alone (PrepWait) in flight: they are
		// never punted, and a yield to another thread of the process is a
		// context switch per turn (a host's reactor at QD 1: p50 -0.4 us
		// without it).
		spin := r.cfg.Spin
		if r.inflight > r.waiting && r.cfg.SpinIO > spin {
			spin = r.cfg.SpinIO
		}
		if now.Sub(lastWork) < spin || r.pollersBusy() {
			if r.inflight > r.waiting {
				yieldCore()
			}
			c.idleNs.Add(uint64(now.Sub(last)))
			last = now
			continue
		}
		r.nap()
		r.sleep()
		now = time.Now()
		c.idleNs.Add(uint64(now.Sub(last)))
		last, lastWork = now, now
	}
}

// yieldCore lets another thread that is runnable on this core run; it
// returns at once when there is none.
func yieldCore() { _, _, _ = unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0) }

// sleep blocks in io_uring_enter until a completion arrives: an I/O, or the
// eventfd read that Send's wake-up completes.
func (r *Reactor) sleep() {
	r.sleeping.Store(true)
	// Re-check after announcing the sleep: a producer that pushed before
	// seeing sleeping=true did not wake us.
	if !r.inbox.Empty() || r.deferred.len() > 0 || r.stopping.Load() {
		r.sleeping.Store(false)
		return
	}
	if _, err := r.ring.SubmitAndWait(1); err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EBUSY) {
		panic(fmt.Sprintf("reactor %d: wait: %v", r.cfg.ID, err))
	}
	r.sleeping.Store(false)
	r.counters.wakeups.Add(1)
}

func (r *Reactor) runTasks() int {
	n := 0
	// Bounded so that completions are reaped between bursts of new work.
	for n < r.inbox.Cap() {
		t, ok := r.inbox.Pop()
		if !ok {
			break
		}
		t.Run(r)
		n++
	}
	if n > 0 {
		r.counters.tasks.Add(uint64(n))
	}
	return n
}

func (r *Reactor) runDeferred() int {
	n := r.deferred.len() // tasks deferred by these run next iteration
	for range n {
		r.deferred.pop().Run(r)
	}
	return n
}

func (r *Reactor) poll() int {
	n := 0
	for _, p := range r.pollers {
		n += p.Poll()
	}
	return n
}

// nap tells the pollers that need it that the reactor is about to sleep.
func (r *Reactor) nap() {
	for _, p := range r.pollers {
		if n, ok := p.(Napper); ok {
			n.Nap()
		}
	}
}

func (r *Reactor) pollersBusy() bool {
	for _, p := range r.pollers {
		if p.Busy() {
			return true
		}
	}
	return false
}

func (r *Reactor) submit() {
	if r.ring.Unsubmitted() == 0 && !(r.inflight > 0 && r.ring.NeedsEnter()) {
		return
	}
	n, err := r.ring.Submit()
	if n > 0 {
		r.counters.submitted.Add(uint64(n))
	}
	if err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EBUSY) {
		// The ring itself is broken (EBADF, EFAULT...): a bug, not an I/O error.
		panic(fmt.Sprintf("reactor %d: submit: %v", r.cfg.ID, err))
	}
}

func (r *Reactor) reap() int {
	total := 0
	for {
		n := r.ring.Reap(r.cqes[:])
		for i := range n {
			r.complete(&r.cqes[i])
		}
		total += n
		if n < len(r.cqes) {
			break
		}
	}
	if total > 0 {
		r.counters.completed.Add(uint64(total))
	}
	return total
}

func (r *Reactor) complete(cqe *uring.CQE) {
	switch cqe.UserData {
	case wakeUserData:
		r.armWake()
		return
	case cancelUserData:
		return // the cancelled operation completes on its own
	}
	slot := uint32(cqe.UserData)
	c := r.slots[slot]
	invariants.Assert(c != nil, "reactor: completion for a free slot")
	r.slots[slot] = nil
	r.cancelSent[slot] = false
	r.freeSlot = append(r.freeSlot, slot)
	r.inflight--
	if r.waitSlot[slot] {
		r.waiting--
	}
	c.Complete(cqe.Res, cqe.Flags)
}

// drain runs what was queued and waits for operations in flight, so that no
// buffer is still owned by the kernel when the ring closes. Operations
// that wait on a peer (PrepWait: a socket's receive) might wait for ever:
// they are cancelled, and complete -ECANCELED; the others complete on
// their own.
func (r *Reactor) drain() {
	for {
		work := r.runTasks() + r.runDeferred()
		r.cancelWaiting()
		r.submit()
		work += r.reap()
		if work == 0 && r.inflight == 0 && r.inbox.Empty() && r.deferred.len() == 0 {
			return
		}
		if work == 0 && r.inflight > 0 {
			if _, err := r.ring.SubmitAndWait(1); err != nil && !errors.Is(err, unix.EAGAIN) {
				return
			}
		}
	}
}

// cancelWaiting asks the kernel to cancel every PrepWait operation in
// flight it has not been asked to already.
func (r *Reactor) cancelWaiting() {
	if r.waiting == 0 {
		return
	}
	for slot, c := range r.slots {
		if c != nil && r.waitSlot[slot] && !r.cancelSent[slot] {
			r.cancelSent[slot] = true
			sqe := r.getSQE()
			sqe.PrepCancel(uint64(slot))
			sqe.UserData = cancelUserData
		}
	}
}

// taskQueue is a growable FIFO ring of tasks, owned by the reactor; it grows
// rarely (by doubling) and so allocates nothing in steady state.
type taskQueue struct {
	buf        []Task
	head, size int
}

func (q *taskQueue) init(n int) { q.buf = make([]Task, n) }
func (q *taskQueue) len() int   { return q.size }

func (q *taskQueue) push(t Task) {
	if q.size == len(q.buf) {
		grown := make([]Task, 2*len(q.buf))
		for i := range q.size {
			grown[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = grown, 0
	}
	q.buf[(q.head+q.size)%len(q.buf)] = t
	q.size++
}

func (q *taskQueue) pop() Task {
	t := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.size--
	return t
}
