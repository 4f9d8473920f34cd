package pcie

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/strata-storage/strata/nvmeof/nvme"
)

// adminEntries is the admin queue size.
const adminEntries = 32

// adminTimeout bounds one admin command.
const adminTimeout = 5 * time.Second

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
	n := uint32(c.admin.entries - 1)
	regs.Write32(regAQA, n<<16|n)
	regs.Write64(regASQ, c.admin.sq.IOVA)
	regs.Write64(regACQ, c.admin.cq.IOVA)
	regs.Write32(regCC, ccEnable|ccCSSNVM|0<<ccMPSShift|6<<ccIOSQESShift|4<<ccIOCQESShift)
	if err := c.waitReady(true); err != nil {
		return nil, fmt.Errorf("pcie: enable: %w", err)
	}
	if err := c.identify(); err != nil {
		return nil, err
	}
	if c.ioqs, err = c.setQueueCount(ioQueues); err != nil {
		return nil, err
	}
	for qid := min(c.ioqs, ioQueues); qid >= 1; qid-- {
		c.freeQIDs = append(c.freeQIDs, qid)
	}
	return c, nil
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
			return 0, fmt.Errorf("%w: admin command %#x got no completion in %v", ErrTimeout, cmd.Opcode(), adminTimeout)
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
func (c *Controller) setQueueCount(n int) (int, error) {
	cmd := newAdmin(nvme.AdminSetFeatures)
	cmd.SetCDW(10, nvme.FeatNumQueues)
	v := uint32(n - 1)
	cmd.SetCDW(11, v<<16|v)
	dw0, err := c.AdminCommand(cmd, nil, false)
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

// createQueuePair creates the next I/O completion queue and its submission
// queue (Create I/O CQ, then Create I/O SQ: 5.4, 5.5), polled, without
// interrupts.
func (c *Controller) createQueuePair() (*queuePair, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.freeQIDs) == 0 {
		return nil, fmt.Errorf("%w: all %d in use", ErrQueueShortage, c.ioqs)
	}
	qid := c.freeQIDs[len(c.freeQIDs)-1]
	entries := min(ioQueueEntries, c.cap.maxQueueEntries())
	q, err := newQueuePair(qid, c.regs, c.stride, entries, c.mem)
	if err != nil {
		return nil, err
	}
	size := uint32(entries-1) << 16
	cmd := newAdmin(nvme.AdminCreateIOCQ)
	cmd.SetPRP(q.cq.IOVA, 0)
	cmd.SetCDW(10, size|uint32(qid))
	cmd.SetCDW(11, 1) // physically contiguous, interrupts off
	if _, err := c.adminLocked(cmd, nil, false); err != nil {
		return nil, fmt.Errorf("pcie: create I/O CQ %d: %w", qid, err)
	}
	cmd = newAdmin(nvme.AdminCreateIOSQ)
	cmd.SetPRP(q.sq.IOVA, 0)
	cmd.SetCDW(10, size|uint32(qid))
	cmd.SetCDW(11, uint32(qid)<<16|1) // its CQ, physically contiguous
	if _, err := c.adminLocked(cmd, nil, false); err != nil {
		return nil, fmt.Errorf("pcie: create I/O SQ %d: %w", qid, err)
	}
	c.freeQIDs = c.freeQIDs[:len(c.freeQIDs)-1]
	return q, nil
}

// deleteQueuePair deletes an I/O queue pair with nothing in flight (Delete
// I/O SQ, then its CQ: 5.6, 5.7) and frees its queue ID. Its DMA memory
// stays with the allocator.
func (c *Controller) deleteQueuePair(q *queuePair) error {
	c.mu.Lock()
	defer c.mu.Unlock()
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
