package pcie

import (
	"fmt"
	"time"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/nvmeof/nvme"
	"github.com/strata-storage/strata/nvmeof/status"
	"github.com/strata-storage/strata/reactor"
)

// Product is the Info.Product of NVMe namespaces driven from userspace.
const Product = "nvme-pcie"

// maxCommandBytes bounds one command's data, whatever MDTS allows, and so
// the bounce buffer each command slot keeps.
const maxCommandBytes = 128 << 10

// maxZeroBlocks is the most blocks one Write Zeroes covers (NLB is 16 bits).
const maxZeroBlocks = 1 << 16

// writeZeroesDEAC is Write Zeroes' Deallocate bit (CDW12 bit 25).
const writeZeroesDEAC = 1 << 25

// Device is one namespace of a controller as a block device. Each channel
// gets an I/O queue pair of its own, polled by its reactor.
type Device struct {
	bdev.Base
	ctrl      *Controller
	nsid      uint32
	deac      bool // Write Zeroes may deallocate (DLFEAT bit 3)
	cmdBlocks uint32
	owned     *attachment // the VFIO controller Open took, released on Close
	ioTimeout time.Duration
}

// DefaultIOTimeout is how long a command may stay unanswered before it is
// aborted, and after as long again, the controller reset.
const DefaultIOTimeout = 30 * time.Second

// SetIOTimeout sets the command timeout of channels opened from now on.
func (d *Device) SetIOTimeout(t time.Duration) { d.ioTimeout = t }

// NewDevice makes namespace nsid of ctrl a device called name.
func NewDevice(name string, ctrl *Controller, nsid uint32) (*Device, error) {
	if err := bdev.ValidName(name); err != nil {
		return nil, err
	}
	ns, err := ctrl.Namespace(nsid)
	if err != nil {
		return nil, err
	}
	bs := ns.BlockSize()
	if bs < 512 || bs > pageSize {
		return nil, fmt.Errorf("%w: namespace %d has %d-byte blocks", ErrUnsupported, nsid, bs)
	}
	id := ctrl.Identify()
	var uuid bdev.UUID
	if g := ns.NGUID(); g != ([16]byte{}) {
		uuid = bdev.UUID(g)
	} else {
		uuid = bdev.NewUUID()
	}
	return &Device{
		Base: bdev.NewBase(bdev.Info{
			Name: name, Product: Product, UUID: uuid, BlockSize: bs, Blocks: ns.Blocks(),
			BufAlign: 1, VolatileCache: id.VolatileCache(),
		}),
		ctrl: ctrl, nsid: nsid, deac: ns.WriteZeroesDeallocates(),
		cmdBlocks: uint32(min(ctrl.MaxTransfer(), maxCommandBytes) / int(bs)),
		ioTimeout: DefaultIOTimeout,
	}, nil
}

// Controller returns the controller the namespace is on.
func (d *Device) Controller() *Controller { return d.ctrl }

// Close releases the device; channels first. A device from Open also
// shuts its controller down (CC.SHN) and releases it; one from NewDevice
// leaves the controller to its owner.
func (d *Device) Close() error {
	if n := d.OpenChannels(); n > 0 {
		return fmt.Errorf("pcie %s: %d channels still open", d.Info().Name, n)
	}
	if d.owned != nil {
		a := d.owned
		d.owned = nil
		return a.close()
	}
	return nil
}

// OpenBackend creates an I/O queue pair for r and registers its poller.
// Called on r.
func (d *Device) OpenBackend(r *reactor.Reactor) (bdev.Backend, error) {
	q, gen, err := d.ctrl.createQueuePair()
	if err != nil {
		return nil, err
	}
	n := q.capacity()
	bs := int(d.Info().BlockSize)
	bounce, err := d.ctrl.mem.Alloc(n * int(d.cmdBlocks) * bs)
	if err != nil {
		d.ctrl.deleteQueuePair(q, gen)
		return nil, fmt.Errorf("pcie: bounce buffers: %w", err)
	}
	lists, err := d.ctrl.mem.Alloc(n * pageSize)
	if err != nil {
		d.ctrl.deleteQueuePair(q, gen)
		return nil, fmt.Errorf("pcie: PRP lists: %w", err)
	}
	b := &backend{d: d, r: r, q: q, gen: gen, bs: bs, timeout: int64(d.ioTimeout), slots: make([]slot, n), trackers: make([]tracker, n), freeT: make([]*tracker, 0, n)}
	per := int(d.cmdBlocks) * bs
	for i := range b.slots {
		b.slots[i] = slot{bounce: bounce.Slice(i*per, per), list: lists.Slice(i*pageSize, pageSize)}
	}
	for i := range b.trackers {
		b.freeT = append(b.freeT, &b.trackers[i])
	}
	b.doneFn = b.done // a method value made once, here
	r.AddPoller(b)
	return b, nil
}

// backend is one reactor's I/O queue pair. Reactor-owned.
//
// A request is cut into commands of at most cmdBlocks blocks (and at most
// 65536 for Write Zeroes); a tracker follows it until its last command
// completes. Commands go through per-slot bounce buffers in DMA memory:
// callers' buffers are not mapped for the device.
type backend struct {
	d   *Device
	r   *reactor.Reactor
	q   *queuePair
	gen uint64 // the controller generation q was created in

	// Timeouts: now is read once per Poll; every checkEvery the slots are
	// scanned for commands older than timeout.
	timeout   int64
	now       int64
	lastCheck int64
	bs        int
	slots     []slot // by command ID
	doneFn    func(cid uint16, st nvme.Status, dw0 uint32)
	cmd       [nvme.CommandSize]byte

	trackers []tracker
	freeT    []*tracker
	// pending trackers still have commands to issue, FIFO; waiting
	// requests found no free tracker, FIFO through Request.Next.
	pendHead, pendTail *tracker
	waiting            bdev.RequestQueue
}

type slot struct {
	bounce  DMA
	list    DMA   // PRP list page
	issued  int64 // when the command was pushed (backend.now)
	aborted bool  // an Abort was sent for it
	t       *tracker
	off     int // the command's first byte in the request's buffer
	n       int // its bytes
}

type tracker struct {
	req      *bdev.Request
	next     uint64 // next LBA to issue
	left     uint32 // blocks still to issue
	inflight int
	status   bdev.Status
	pendNext *tracker
}

func (b *backend) Submit(req *bdev.Request) {
	if b.d.ctrl.gen.Load() != b.gen {
		b.recover()
	}
	if b.q.inflight == 0 {
		// Poll reads the clock only while commands are out: after an idle
		// spell its last reading is stale, and a command stamped with it
		// would look overdue at once.
		b.now = time.Now().UnixNano()
	}
	if !b.waiting.Empty() || len(b.freeT) == 0 {
		b.waiting.Push(req)
		return
	}
	b.start(req)
}

func (b *backend) start(req *bdev.Request) {
	t := b.freeT[len(b.freeT)-1]
	b.freeT = b.freeT[:len(b.freeT)-1]
	*t = tracker{req: req, next: req.LBA, left: req.Blocks, status: bdev.StatusOK}
	if req.Op == bdev.OpFlush {
		t.left = 1 // one command, whatever the span
	}
	if !b.issue(t) {
		b.pend(t)
	}
}

// issue sends t's commands while command IDs last; it reports whether all
// were sent.
func (b *backend) issue(t *tracker) bool {
	for t.left > 0 {
		cid, ok := b.q.takeCID()
		if !ok {
			return false
		}
		b.prepare(t, cid)
	}
	return true
}

func (b *backend) prepare(t *tracker, cid uint16) {
	req, s := t.req, &b.slots[cid]
	cmd := nvme.Command(b.cmd[:])
	clear(cmd)
	cmd.SetNSID(b.d.nsid)
	s.t, s.off, s.n = t, int(t.next-req.LBA)*b.bs, 0
	var n uint32
	switch req.Op {
	case bdev.OpRead, bdev.OpWrite:
		n = min(t.left, b.d.cmdBlocks)
		s.n = int(n) * b.bs
		op := uint8(nvme.IORead)
		if req.Op == bdev.OpWrite {
			op = nvme.IOWrite
			copy(s.bounce.Bytes[:s.n], req.Buf[s.off:s.off+s.n])
		}
		cmd.SetOpcode(op)
		cmd.SetSLBA(t.next)
		cmd.SetBlocks(n, req.FUA && req.Op == bdev.OpWrite)
		// The bounce buffer is page aligned and within cmdBlocks, so the
		// PRP list of its slot always suffices.
		prp1, prp2, _ := buildPRP(s.bounce.IOVA, s.n, s.list.Bytes, s.list.IOVA)
		cmd.SetPRP(prp1, prp2)
	case bdev.OpFlush:
		n = 1
		cmd.SetOpcode(nvme.IOFlush)
	case bdev.OpWriteZeroes:
		n = min(t.left, maxZeroBlocks)
		cmd.SetOpcode(nvme.IOWriteZeroes)
		cmd.SetSLBA(t.next)
		cmd.SetBlocks(n, false)
	case bdev.OpUnmap:
		// Write Zeroes with DEAC, not Dataset Management: a deallocated
		// block must read back as zeroes (the bdev contract), and DSM is
		// only a hint that controllers may ignore (QEMU's does without
		// discard on its drive, while claiming DLFEAT read-zeroes). Write
		// Zeroes guarantees the zeroes; DEAC lets the controller free the
		// space.
		n = min(t.left, maxZeroBlocks)
		cmd.SetOpcode(nvme.IOWriteZeroes)
		cmd.SetSLBA(t.next)
		cmd.SetBlocks(n, false)
		if b.d.deac {
			cmd.SetCDW(12, cmd.CDW(12)|writeZeroesDEAC)
		}
	}
	t.next += uint64(n)
	t.left -= n
	t.inflight++
	s.issued, s.aborted = b.now, false
	b.q.push(cmd, cid)
}

func (b *backend) pend(t *tracker) {
	t.pendNext = nil
	if b.pendTail == nil {
		b.pendHead = t
	} else {
		b.pendTail.pendNext = t
	}
	b.pendTail = t
}

// Poll rings the doorbell for commands pushed since the last poll (one
// MMIO write per reactor loop), reaps completions, and issues work that
// waited for the command IDs they freed.
func (b *backend) Poll() int {
	if b.d.ctrl.gen.Load() != b.gen {
		return b.recover()
	}
	b.q.ring()
	n := b.q.poll(b.doneFn)
	if b.q.inflight > 0 {
		b.now = time.Now().UnixNano()
		if b.now-b.lastCheck >= int64(checkEvery) {
			b.lastCheck = b.now
			b.checkTimeouts()
		}
	}
	if n > 0 && (b.pendHead != nil || !b.waiting.Empty()) {
		b.resume()
	}
	b.q.ring()
	return n
}

// checkEvery is how often a busy queue pair looks for overdue commands.
const checkEvery = 10 * time.Millisecond

// checkTimeouts aborts commands older than the timeout, and resets the
// controller when an aborted one stays unanswered as long again (NVMe Base
// 2.0, 3.7.2: a host that cannot get a command back resets the
// controller, which stops its DMA into the command's buffers).
func (b *backend) checkTimeouts() {
	for cid := range b.slots {
		s := &b.slots[cid]
		if s.t == nil || b.now-s.issued < b.timeout {
			continue
		}
		if !s.aborted {
			s.aborted, s.issued = true, b.now
			// Best effort: the abort's own failure leads to the reset.
			_ = b.d.ctrl.abort(b.q.id, uint16(cid))
			continue
		}
		_ = b.d.ctrl.Reset(b.gen)
		b.recover()
		return
	}
}

// recover follows a controller reset: every command this queue pair had
// outstanding is lost, so their requests fail with StatusAborted; the
// queue pair is created again, empty, and work not yet issued goes on.
// Reactor only; it blocks on admin commands, as befits a rare path.
func (b *backend) recover() int {
	n := 0
	for cid := range b.slots {
		s := &b.slots[cid]
		t := s.t
		if t == nil {
			continue
		}
		s.t = nil
		n++
		t.inflight--
		t.status = bdev.StatusAborted
		t.left = 0 // the rest of a cut request is not issued either
		if t.inflight == 0 {
			b.finish(t)
		}
	}
	// Requests cut short above may still be on the pending list: drop the
	// finished ones (their trackers are free).
	var keep *tracker
	for t := b.pendHead; t != nil; t = t.pendNext {
		if t.req == nil {
			continue
		}
		if keep == nil {
			b.pendHead = t
		} else {
			keep.pendNext = t
		}
		keep = t
	}
	if keep == nil {
		b.pendHead, b.pendTail = nil, nil
	} else {
		keep.pendNext, b.pendTail = nil, keep
	}
	gen, err := b.d.ctrl.Recreate(b.q)
	if err != nil {
		// The controller is gone: fail what waits too, and keep failing.
		b.failWaiting()
		b.gen = b.d.ctrl.gen.Load()
		return n
	}
	b.gen = gen
	b.resume()
	b.q.ring()
	return n + 1
}

// failWaiting fails every request not yet issued.
func (b *backend) failWaiting() {
	for b.pendHead != nil {
		t := b.pendHead
		b.pendHead = t.pendNext
		t.status, t.left = bdev.StatusNotReady, 0
		if t.inflight == 0 {
			b.finish(t)
		}
	}
	b.pendTail = nil
	for !b.waiting.Empty() {
		b.waiting.Pop().Complete(bdev.StatusNotReady)
	}
}

// finish completes a tracker's request and frees the tracker.
func (b *backend) finish(t *tracker) {
	req := t.req
	req.Errno = 0
	t.req = nil
	b.freeT = append(b.freeT, t)
	req.Complete(t.status)
}

// Busy keeps the reactor polling while commands are outstanding: the
// queues have no interrupts.
func (b *backend) Busy() bool { return b.q.inflight > 0 || b.q.unrung }

func (b *backend) done(cid uint16, st nvme.Status, _ uint32) {
	s := &b.slots[cid]
	t := s.t
	s.t = nil
	if st.OK() {
		if t.req.Op == bdev.OpRead {
			copy(t.req.Buf[s.off:s.off+s.n], s.bounce.Bytes[:s.n])
		}
	} else if t.status == bdev.StatusOK {
		t.status = status.FromNVMe(t.req.Op, st)
	}
	t.inflight--
	// The command ID goes back to the queue after done returns: Poll
	// issues pending work once the batch is reaped.
	if t.inflight == 0 && t.left == 0 {
		b.finish(t)
	}
}

func (b *backend) resume() {
	for b.pendHead != nil {
		t := b.pendHead
		if !b.issue(t) {
			return
		}
		b.pendHead = t.pendNext
		if b.pendHead == nil {
			b.pendTail = nil
		}
	}
	for !b.waiting.Empty() && len(b.freeT) > 0 {
		b.start(b.waiting.Pop())
		if b.pendHead != nil {
			return
		}
	}
}

// Close deletes the queue pair; nothing is in flight.
func (b *backend) Close() error {
	b.r.RemovePoller(b)
	return b.d.ctrl.deleteQueuePair(b.q, b.gen)
}
