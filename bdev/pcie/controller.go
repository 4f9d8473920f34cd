package pcie

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-storage/strata/nvmeof/nvme"
)

// adminEntries is the admin queue size.
const adminEntries = 32

// adminTimeout bounds one admin command (a variable: tests shorten it).
var adminTimeout = 5 * time.Second

// ioQueueEntries is the size of each I/O queue pair, within CAP.MQES.
const ioQueueEntries = 256

// Errors, matched with errors.Is.
var (
	ErrTimeout       = errors.New("pcie: controller timed out")
	ErrFatal         = errors.New("pcie: controller fatal status (CSTS.CFS)")
	ErrUnsupported   = errors.New("pcie: controller not supported")
	ErrNoNamespace   = errors.New("pcie: namespace not active")
	ErrQueueShortage = errors.New("pcie: controller granted fewer I/O queues than asked")
)

// Controller drives one NVMe controller through its registers and DMA
// memory (NVMe Base 2.0, 3.5: initialization, shutdown). The admin queue
// is used under a lock from any goroutine; each I/O queue pair belongs to
// one owner.
type Controller struct {
	regs   Registers
	mem    Allocator
	cap    capabilities
	stride int

	mu       sync.Mutex // the admin queue
	admin    *queuePair
	adminBuf DMA // one page for admin command data (Identify)
	ident    nvme.IdentifyController
	maxXfer  int   // bytes per command: MDTS, capped by one PRP list
	ioqs     int   // granted I/O queue pairs
	freeQIDs []int // I/O queue IDs not in use
	asked    int   // I/O queue pairs asked for

	// gen counts controller resets: I/O queue pairs made before the
	// current generation are gone and their commands with them.
	gen       atomic.Uint64
	resets    atomic.Uint64
	resetting bool // under mu: a reset is running its own admin commands
}

// sleep passes time between register polls; tests may shorten it.
var sleep = time.Sleep

// Init resets and enables the controller behind regs, identifies it and
// negotiates ioQueues I/O queue pairs. Memory for queues and commands
// comes from mem.
func Init(regs Registers, mem Allocator, ioQueues int) (*Controller, error) {
	c := &Controller{regs: regs, mem: mem, cap: capabilities(regs.Read64(regCAP))}
	c.stride = c.cap.doorbellStride()
	switch {
	case !c.cap.nvmCommandSet():
		return nil, fmt.Errorf("%w: no NVM command set in CAP.CSS", ErrUnsupported)
	case c.cap.minPageSize() > pageSize || c.cap.maxPageSize() < pageSize:
		return nil, fmt.Errorf("%w: page sizes %d-%d exclude %d", ErrUnsupported, c.cap.minPageSize(), c.cap.maxPageSize(), pageSize)
	}
	if err := c.disable(); err != nil {
		return nil, err
	}
	var err error
	if c.admin, err = newQueuePair(0, regs, c.stride, min(adminEntries, c.cap.maxQueueEntries()), mem); err != nil {
		return nil, err
	}
	if c.adminBuf, err = mem.Alloc(pageSize); err != nil {
		return nil, err
	}
	if err := c.enable(); err != nil {
		return nil, err
	}
	if err := c.identify(); err != nil {
		return nil, err
	}
	c.asked = ioQueues
	if err := c.grantQueues(); err != nil {
		return nil, err
	}
	return c, nil
}

// enable programs the admin queue, sets CC.EN and waits for CSTS.RDY.
func (c *Controller) enable() error {
	n := uint32(c.admin.entries - 1)
	c.regs.Write32(regAQA, n<<16|n)
	c.regs.Write64(regASQ, c.admin.sq.IOVA)
	c.regs.Write64(regACQ, c.admin.cq.IOVA)
	c.regs.Write32(regCC, ccEnable|ccCSSNVM|0<<ccMPSShift|6<<ccIOSQESShift|4<<ccIOCQESShift)
	if err := c.waitReady(true); err != nil {
		return fmt.Errorf("pcie: enable: %w", err)
	}
	return nil
}

// grantQueues asks for the I/O queue pairs and makes their IDs free.
func (c *Controller) grantQueues() error {
	var err error
	if c.ioqs, err = c.setQueueCountLocked(c.asked); err != nil {
		return err
	}
	c.freeQIDs = c.freeQIDs[:0]
	for qid := min(c.ioqs, c.asked); qid >= 1; qid-- {
		c.freeQIDs = append(c.freeQIDs, qid)
	}
	return nil
}

// Generation returns the number of controller resets so far.
func (c *Controller) Generation() uint64 { return c.gen.Load() }

// Reset recovers a controller that stopped answering: CC.EN is cleared,
// which stops all its DMA and drops every queue, then it is enabled again
// with a fresh admin queue (NVMe Base 2.0, 3.7.2). Queue pairs made before
// must be recreated (Recreate); their commands are lost and their owners
// fail them. gen is the generation the caller saw: if another caller
// reset the controller since, nothing is done.
func (c *Controller) Reset(gen uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen.Load() != gen {
		return nil
	}
	return c.resetLocked()
}

func (c *Controller) resetLocked() error {
	c.resetting = true
	defer func() { c.resetting = false }()
	c.resets.Add(1)
	defer c.gen.Add(1)
	if err := c.disable(); err != nil {
		return err
	}
	c.admin.reset()
	if err := c.enable(); err != nil {
		return err
	}
	return c.grantQueues()
}

// disable clears CC.EN and waits for CSTS.RDY to follow (a reset).
func (c *Controller) disable() error {
	if c.regs.Read32(regCC)&ccEnable == 0 && c.regs.Read32(regCSTS)&cstsReady == 0 {
		return nil
	}
	c.regs.Write32(regCC, c.regs.Read32(regCC)&^ccEnable)
	if err := c.waitReady(false); err != nil {
		return fmt.Errorf("pcie: reset: %w", err)
	}
	return nil
}

// waitReady waits up to CAP.TO for CSTS.RDY to equal ready.
func (c *Controller) waitReady(ready bool) error {
	deadline := time.Now().Add(max(c.cap.readyTimeout(), 500*time.Millisecond))
	for {
		csts := c.regs.Read32(regCSTS)
		if csts&cstsFatal != 0 && ready {
			return ErrFatal
		}
		if (csts&cstsReady != 0) == ready {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: CSTS.RDY stayed %t for %v (CSTS %#x)", ErrTimeout, !ready, c.cap.readyTimeout(), csts)
		}
		sleep(time.Millisecond)
	}
}

// AdminCommand runs cmd on the admin queue and waits for it. data, when not
// nil, is transferred through the controller's admin buffer (at most one
// page): filled by the controller, or sent to it with toController.
func (c *Controller) AdminCommand(cmd nvme.Command, data []byte, toController bool) (uint32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.adminLocked(cmd, data, toController)
}

func (c *Controller) adminLocked(cmd nvme.Command, data []byte, toController bool) (uint32, error) {
	if len(data) > pageSize {
		return 0, fmt.Errorf("pcie: admin data of %d bytes: at most %d", len(data), pageSize)
	}
	buf := c.adminBuf
	if len(data) > 0 {
		if toController {
			copy(buf.Bytes, data)
		}
		cmd.SetPRP(buf.IOVA, 0)
	}
	cid, ok := c.admin.takeCID()
	if !ok {
		return 0, errors.New("pcie: admin queue full")
	}
	c.admin.push(cmd, cid)
	c.admin.ring()
	var st nvme.Status
	var dw0 uint32
	got := false
	deadline := time.Now().Add(adminTimeout)
	for !got {
		c.admin.poll(func(id uint16, s nvme.Status, d uint32) {
			if id == cid {
				st, dw0, got = s, d, true
			}
		})
		if got {
			break
		}
		if c.regs.Read32(regCSTS)&cstsFatal != 0 {
			return 0, ErrFatal
		}
		if time.Now().After(deadline) {
			err := fmt.Errorf("%w: admin command %#x got no completion in %v", ErrTimeout, cmd.Opcode(), adminTimeout)
			// The command may still complete, and DMA into the admin buffer
			// a later command uses, under a command ID given out again:
			// reset the controller, which stops its DMA and drops every
			// queue (I/O queue pairs see the new generation and recreate).
			if !c.resetting {
				if rerr := c.resetLocked(); rerr != nil {
					err = fmt.Errorf("%w (reset after it: %v)", err, rerr)
				}
			}
			return 0, err
		}
		sleep(10 * time.Microsecond)
	}
	if !st.OK() {
		return dw0, fmt.Errorf("pcie: admin command %#x: %w", cmd.Opcode(), st)
	}
	if len(data) > 0 && !toController {
		copy(data, buf.Bytes)
	}
	return dw0, nil
}

func newAdmin(op uint8) nvme.Command {
	cmd := nvme.Command(make([]byte, nvme.CommandSize))
	cmd.SetOpcode(op)
	return cmd
}

func (c *Controller) identify() error {
	cmd := newAdmin(nvme.AdminIdentify)
	cmd.SetCDW(10, nvme.CNSController)
	b := make([]byte, nvme.IdentifySize)
	if _, err := c.AdminCommand(cmd, b, false); err != nil {
		return fmt.Errorf("pcie: identify controller: %w", err)
	}
	c.ident = nvme.IdentifyController(b)
	c.maxXfer = (maxPRPPages + 1) * pageSize
	if mdts := c.ident.MDTS(); mdts > 0 {
		c.maxXfer = min(c.maxXfer, c.cap.minPageSize()<<mdts)
	}
	return nil
}

// setQueueCount asks for n I/O queue pairs (Set Features, Number of
// Queues) and returns how many the controller granted.
func (c *Controller) setQueueCountLocked(n int) (int, error) {
	cmd := newAdmin(nvme.AdminSetFeatures)
	cmd.SetCDW(10, nvme.FeatNumQueues)
	v := uint32(n - 1)
	cmd.SetCDW(11, v<<16|v)
	dw0, err := c.adminLocked(cmd, nil, false)
	if err != nil {
		return 0, fmt.Errorf("pcie: set number of queues: %w", err)
	}
	return int(min(dw0&0xffff, dw0>>16)) + 1, nil
}

// Identify returns the Identify Controller data.
func (c *Controller) Identify() nvme.IdentifyController { return c.ident }

// MaxTransfer returns the most bytes one command moves.
func (c *Controller) MaxTransfer() int { return c.maxXfer }

// Namespace identifies namespace nsid; an inactive one is ErrNoNamespace.
func (c *Controller) Namespace(nsid uint32) (nvme.IdentifyNamespace, error) {
	cmd := newAdmin(nvme.AdminIdentify)
	cmd.SetNSID(nsid)
	cmd.SetCDW(10, nvme.CNSNamespace)
	b := make([]byte, nvme.IdentifySize)
	if _, err := c.AdminCommand(cmd, b, false); err != nil {
		return nil, fmt.Errorf("pcie: identify namespace %d: %w", nsid, err)
	}
	ns := nvme.IdentifyNamespace(b)
	if ns.Blocks() == 0 {
		return nil, fmt.Errorf("%w: %d", ErrNoNamespace, nsid)
	}
	return ns, nil
}

// createQueuePair makes a queue pair in new DMA memory and creates it on
// the controller.
func (c *Controller) createQueuePair() (*queuePair, uint64, error) {
	entries := min(ioQueueEntries, c.cap.maxQueueEntries())
	q, err := newQueuePair(0, c.regs, c.stride, entries, c.mem)
	if err != nil {
		return nil, 0, err
	}
	gen, err := c.Recreate(q)
	if err != nil {
		return nil, 0, err
	}
	return q, gen, nil
}

// Recreate gives q a free queue ID and creates it on the controller, empty
// (Create I/O CQ, then Create I/O SQ: 5.4, 5.5), polled, without
// interrupts. It returns the generation the queue pair belongs to.
func (c *Controller) Recreate(q *queuePair) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.freeQIDs) == 0 {
		return 0, fmt.Errorf("%w: all %d in use", ErrQueueShortage, c.ioqs)
	}
	// A queue pair keeps its ID across resets when it can: a doorbell its
	// reactor rang just before noticing the reset then hits a queue that
	// does not exist yet, never another reactor's new one.
	i := len(c.freeQIDs) - 1
	for j, id := range c.freeQIDs {
		if id == q.id {
			i = j
		}
	}
	qid := c.freeQIDs[i]
	q.setID(qid, c.stride)
	q.reset()
	size := uint32(q.entries-1) << 16
	cmd := newAdmin(nvme.AdminCreateIOCQ)
	cmd.SetPRP(q.cq.IOVA, 0)
	cmd.SetCDW(10, size|uint32(qid))
	cmd.SetCDW(11, 1) // physically contiguous, interrupts off
	if _, err := c.adminLocked(cmd, nil, false); err != nil {
		return 0, fmt.Errorf("pcie: create I/O CQ %d: %w", qid, err)
	}
	cmd = newAdmin(nvme.AdminCreateIOSQ)
	cmd.SetPRP(q.sq.IOVA, 0)
	cmd.SetCDW(10, size|uint32(qid))
	cmd.SetCDW(11, uint32(qid)<<16|1) // its CQ, physically contiguous
	if _, err := c.adminLocked(cmd, nil, false); err != nil {
		return 0, fmt.Errorf("pcie: create I/O SQ %d: %w", qid, err)
	}
	c.freeQIDs = append(c.freeQIDs[:i], c.freeQIDs[i+1:]...)
	return c.gen.Load(), nil
}

// abort asks the controller to abort command cid of queue qid (5.1); it
// is best effort: the controller may complete the command either way.
func (c *Controller) abort(qid int, cid uint16) error {
	cmd := newAdmin(nvme.AdminAbort)
	cmd.SetCDW(10, uint32(cid)<<16|uint32(qid))
	_, err := c.AdminCommand(cmd, nil, false)
	return err
}

// deleteQueuePair deletes an I/O queue pair with nothing in flight (Delete
// I/O SQ, then its CQ: 5.6, 5.7) and frees its queue ID. Its DMA memory
// stays with the allocator. A queue pair of an earlier generation is gone
// already.
func (c *Controller) deleteQueuePair(q *queuePair, gen uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen.Load() {
		return nil
	}
	cmd := newAdmin(nvme.AdminDeleteIOSQ)
	cmd.SetCDW(10, uint32(q.id))
	if _, err := c.adminLocked(cmd, nil, false); err != nil {
		return fmt.Errorf("pcie: delete I/O SQ %d: %w", q.id, err)
	}
	cmd = newAdmin(nvme.AdminDeleteIOCQ)
	cmd.SetCDW(10, uint32(q.id))
	if _, err := c.adminLocked(cmd, nil, false); err != nil {
		return fmt.Errorf("pcie: delete I/O CQ %d: %w", q.id, err)
	}
	c.freeQIDs = append(c.freeQIDs, q.id)
	return nil
}

// Shutdown tells the controller to shut down normally (CC.SHN) and waits
// for CSTS.SHST to say it is done, so that its volatile cache reaches the
// media.
func (c *Controller) Shutdown(timeout time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.regs.Write32(regCC, c.regs.Read32(regCC)&^uint32(ccShnMask)|ccShnNormal)
	deadline := time.Now().Add(timeout)
	for c.regs.Read32(regCSTS)&cstsShstMask != cstsShstDone {
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: shutdown not complete after %v", ErrTimeout, timeout)
		}
		sleep(time.Millisecond)
	}
	return nil
}
