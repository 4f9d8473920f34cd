// Package fakectrl is a software NVMe controller behind pcie.Registers, for
// tests: it follows the register protocol (CC.EN/CSTS.RDY, shutdown),
// processes the admin and I/O queues when their doorbells are written
// (Identify, Set Features, Create/Delete I/O queues, Read, Write, Flush,
// Write Zeroes, Dataset Management), walks PRP entries and lists as a
// device does, and posts completions with phase bits. Its namespace is RAM.
//
// It is deliberately independent of the driver's helpers: PRPs are parsed
// here from the spec, so a driver bug shows up as wrong data, not as two
// copies of the same mistake. Everything it does is recorded for tests to
// check (doorbell writes, commands seen) and faults can be injected.
package fakectrl

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync"
	"time"

	"github.com/strata-storage/strata/bdev/pcie"
	"github.com/strata-storage/strata/internal/iomem"
	"github.com/strata-storage/strata/internal/mmio"
	"github.com/strata-storage/strata/nvmeof/nvme"
)

// Memory is DMA memory for the fake: iomem regions at made-up IOVAs the
// fake translates back. It implements pcie.Allocator.
type Memory struct {
	mu      sync.Mutex
	regions []region
	next    uint64
}

type region struct {
	iova uint64
	r    *iomem.Region
}

// NewMemory returns an empty memory; IOVAs start high so that a zero or
// small IOVA never translates.
func NewMemory() *Memory { return &Memory{next: 1 << 40} }

// Alloc implements pcie.Allocator: page aligned, contiguous.
func (m *Memory) Alloc(size int) (pcie.DMA, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	size = (size + 4095) &^ 4095
	r, err := iomem.Map(size)
	if err != nil {
		return pcie.DMA{}, err
	}
	iova := m.next
	m.next += uint64(len(r.Bytes())) + 1<<20 // a gap: overruns do not land in the next piece
	m.regions = append(m.regions, region{iova: iova, r: r})
	return pcie.DMA{Bytes: r.Bytes()[:size:size], IOVA: iova}, nil
}

// bytes returns n bytes at iova, or nil if they are not all mapped.
func (m *Memory) bytes(iova uint64, n int) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.regions {
		b := r.r.Bytes()
		if iova >= r.iova && iova+uint64(n) <= r.iova+uint64(len(b)) {
			off := int(iova - r.iova)
			return b[off : off+n]
		}
	}
	return nil
}

// Close unmaps everything.
func (m *Memory) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.regions {
		r.r.Unmap()
	}
	m.regions = nil
}

// Config shapes the fake controller.
type Config struct {
	MQES      uint16 // 0-based largest queue (CAP.MQES); default 1023
	DSTRD     uint8  // doorbell stride exponent
	TO        uint8  // CAP.TO, 500 ms units; default 1
	MDTS      uint8  // max transfer 2^MDTS pages; default 5 (128 KiB)
	Blocks    uint64 // namespace 1 size in blocks; default 32768
	BlockSize int    // 512 or 4096; default 512
	MaxQueues int    // I/O queue pairs granted; default 8
	// NeverReady leaves CSTS.RDY at 0 after CC.EN (a dead controller).
	NeverReady bool
	// Record keeps Log and Doorbells (which allocate; off for allocation
	// tests).
	Record bool
	// Latency, when set, makes I/O commands complete that long after their
	// doorbell, from another goroutine, as a device would; without it they
	// complete inside the doorbell write.
	Latency time.Duration
}

// Controller is the fake. Its methods are safe for concurrent use.
type Controller struct {
	cfg Config
	mem *Memory

	mu      sync.Mutex
	regs    map[int]uint64
	data    []byte
	sqs     map[int]*sq
	cqs     map[int]*cq
	log     []string // commands seen: "qid opcode", in order (Config.Record)
	bells   map[int][]uint32
	dropped map[uint8]bool // opcodes answered with no completion
	fail    map[uint8]nvme.Status
	cmd     [nvme.CommandSize]byte // the command being executed

	droppedIO map[uint8]bool
	resets    int
}

type sq struct {
	base    uint64
	entries int
	head    int
	tail    int // the host's, from its doorbell
	cqid    int
}

type cq struct {
	base    uint64
	entries int
	tail    int
	phase   uint32
	head    int // the host's, from its doorbell
}

// New returns a fake controller over mem.
func New(mem *Memory, cfg Config) *Controller {
	if cfg.MQES == 0 {
		cfg.MQES = 1023
	}
	if cfg.TO == 0 {
		cfg.TO = 1
	}
	if cfg.MDTS == 0 {
		cfg.MDTS = 5
	}
	if cfg.Blocks == 0 {
		cfg.Blocks = 32768
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = 512
	}
	if cfg.MaxQueues == 0 {
		cfg.MaxQueues = 8
	}
	c := &Controller{
		cfg: cfg, mem: mem, regs: map[int]uint64{}, data: make([]byte, cfg.Blocks*uint64(cfg.BlockSize)),
		sqs: map[int]*sq{}, cqs: map[int]*cq{}, bells: map[int][]uint32{}, dropped: map[uint8]bool{}, fail: map[uint8]nvme.Status{}, droppedIO: map[uint8]bool{},
	}
	// CAP: MQES, CQR, TO, DSTRD, CSS NVM (bit 37), MPSMIN 0, MPSMAX 4.
	c.regs[0x00] = uint64(cfg.MQES) | 1<<16 | uint64(cfg.TO)<<24 | uint64(cfg.DSTRD)<<32 | 1<<37 | 4<<52
	c.regs[0x08] = 0x10400 // 1.4
	return c
}

// Data returns the namespace's bytes, for checks behind the driver (read
// them while no command is in flight).
func (c *Controller) Data() []byte { return c.data }

// Commands returns the commands executed so far as "qid opcode" (with
// Config.Record), in order.
func (c *Controller) Commands() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.log...)
}

// Doorbells returns the values written to the doorbell at offset off
// (with Config.Record).
func (c *Controller) Doorbells(off int) []uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]uint32(nil), c.bells[off]...)
}

// DropAdmin makes admin commands with opcode op vanish: no completion (a
// DropAdmin makes admin commands with opcode op vanish (drop true), or
// answer again (false).
func (c *Controller) DropAdmin(op uint8, drop bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if drop {
		c.dropped[op] = true
	} else {
		delete(c.dropped, op)
	}
}

// DropIO makes I/O commands with opcode op vanish (drop true), or answer
// again (false).
func (c *Controller) DropIO(op uint8, drop bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if drop {
		c.droppedIO[op] = true
	} else {
		delete(c.droppedIO, op)
	}
}

// Resets counts the times CC.EN went from 1 to 0.
func (c *Controller) Resets() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resets
}

// FailIO makes I/O commands with opcode op complete with st.
func (c *Controller) FailIO(op uint8, st nvme.Status) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fail[op] = st
}

func (c *Controller) Read32(off int) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return uint32(c.regs[off])
}

func (c *Controller) Read64(off int) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.regs[off]
}

func (c *Controller) Write64(off int, v uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.regs[off] = v
}

func (c *Controller) Write32(off int, v uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if off >= 0x1000 {
		if c.cfg.Record {
			c.bells[off] = append(c.bells[off], v)
		}
		c.doorbell(off, v)
		return
	}
	c.regs[off] = uint64(v)
	if off == 0x14 { // CC
		c.configure(v)
	}
}

func (c *Controller) configure(cc uint32) {
	csts := uint32(c.regs[0x1c])
	switch {
	case cc&1 != 0 && csts&1 == 0 && !c.cfg.NeverReady:
		aqa := uint32(c.regs[0x24])
		c.sqs[0] = &sq{base: c.regs[0x28], entries: int(aqa&0xfff) + 1}
		c.cqs[0] = &cq{base: c.regs[0x30], entries: int(aqa>>16&0xfff) + 1, phase: 1}
		csts |= 1
	case cc&1 == 0:
		if csts&1 != 0 {
			c.resets++
		}
		csts &^= 1
		c.sqs, c.cqs = map[int]*sq{}, map[int]*cq{}
	}
	if cc>>14&3 != 0 { // shutdown notification
		csts = csts&^(3<<2) | 2<<2
	}
	c.regs[0x1c] = uint64(csts)
}

func (c *Controller) stride() int { return 4 << c.cfg.DSTRD }

func (c *Controller) doorbell(off int, v uint32) {
	n := (off - 0x1000) / c.stride()
	qid := n / 2
	if n%2 == 1 {
		if q := c.cqs[qid]; q != nil {
			q.head = int(v)
		}
		return
	}
	q := c.sqs[qid]
	if q == nil {
		return
	}
	q.tail = int(v)
	if qid != 0 && c.cfg.Latency > 0 {
		// Timers may fire out of order: each runs what is queued by then.
		time.AfterFunc(c.cfg.Latency, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.sqs[qid] == q { // not deleted or reset meanwhile
				c.consume(qid, q, q.tail)
			}
		})
		return
	}
	c.consume(qid, q, q.tail)
}

// consume executes q's commands up to tail. Called with c.mu held.
func (c *Controller) consume(qid int, q *sq, tail int) {
	for q.head != tail {
		copy(c.cmd[:], c.mem.bytes(q.base+uint64(q.head*nvme.CommandSize), nvme.CommandSize))
		q.head = (q.head + 1) % q.entries
		c.execute(qid, q, nvme.Command(c.cmd[:]))
	}
}

// execute runs one command and posts its completion.
func (c *Controller) execute(qid int, q *sq, cmd nvme.Command) {
	op := cmd.Opcode()
	if c.cfg.Record {
		c.log = append(c.log, fmt.Sprintf("%d %#02x", qid, op))
	}
	if qid == 0 && c.dropped[op] || qid != 0 && c.droppedIO[op] {
		return
	}
	var st nvme.Status
	var dw0 uint32
	if f, ok := c.fail[op]; ok && qid != 0 {
		st = f
	} else if qid == 0 {
		st, dw0 = c.admin(cmd)
	} else {
		st = c.io(cmd)
	}
	c.complete(q, cmd.CID(), st, dw0)
}

func (c *Controller) complete(q *sq, cid uint16, st nvme.Status, dw0 uint32) {
	cq := c.cqs[q.cqid]
	e := c.mem.bytes(cq.base+uint64(cq.tail*nvme.CompletionSize), nvme.CompletionSize)
	binary.LittleEndian.PutUint32(e[0:], dw0)
	binary.LittleEndian.PutUint32(e[4:], 0)
	binary.LittleEndian.PutUint16(e[8:], uint16(q.head))
	binary.LittleEndian.PutUint16(e[10:], 0)
	// DW3 last, whole and atomic: the phase bit flips the entry to valid,
	// and the driver may be polling it from another goroutine.
	mmio.Store32(e, 12, uint32(cid)|cq.phase<<16|uint32(st)<<17)
	cq.tail++
	if cq.tail == cq.entries {
		cq.tail, cq.phase = 0, cq.phase^1
	}
}

func (c *Controller) admin(cmd nvme.Command) (nvme.Status, uint32) {
	switch cmd.Opcode() {
	case nvme.AdminIdentify:
		b := make([]byte, nvme.IdentifySize)
		switch cmd.CDW(10) & 0xff {
		case nvme.CNSController:
			nvme.EncodeIdentifyController(b, &nvme.ControllerInfo{
				Serial: "FAKE0001", Model: "Strata fake NVMe", Firmware: "1.0", MDTS: c.cfg.MDTS,
				Namespaces: 1, VolatileCache: true, Version: 0x10400,
			})
		case nvme.CNSNamespace:
			if cmd.NSID() == 1 {
				nvme.EncodeIdentifyNamespace(b, &nvme.NamespaceInfo{Blocks: c.cfg.Blocks, BlockSizeLog2: uint8(bits.TrailingZeros(uint(c.cfg.BlockSize))), DeallocatedZeroes: true})
			}
		default:
			return nvme.InvalidField, 0
		}
		if !c.transfer(cmd, b, false) {
			return nvme.DataTransferError, 0
		}
		return nvme.Success, 0
	case nvme.AdminSetFeatures:
		if cmd.CDW(10)&0xff != nvme.FeatNumQueues {
			return nvme.InvalidField, 0
		}
		n := uint32(c.cfg.MaxQueues - 1)
		return nvme.Success, n<<16 | n
	case nvme.AdminCreateIOCQ:
		qid, size := int(cmd.CDW(10)&0xffff), int(cmd.CDW(10)>>16)+1
		prp1, _ := cmd.PRP()
		if qid == 0 || qid > c.cfg.MaxQueues || c.cqs[qid] != nil || size > int(c.cfg.MQES)+1 || cmd.CDW(11)&1 == 0 {
			return nvme.InvalidField, 0
		}
		c.cqs[qid] = &cq{base: prp1, entries: size, phase: 1}
		return nvme.Success, 0
	case nvme.AdminCreateIOSQ:
		qid, size, cqid := int(cmd.CDW(10)&0xffff), int(cmd.CDW(10)>>16)+1, int(cmd.CDW(11)>>16)
		prp1, _ := cmd.PRP()
		if qid == 0 || c.sqs[qid] != nil || c.cqs[cqid] == nil || size > int(c.cfg.MQES)+1 {
			return nvme.InvalidField, 0
		}
		c.sqs[qid] = &sq{base: prp1, entries: size, cqid: cqid}
		return nvme.Success, 0
	case nvme.AdminAbort:
		return nvme.Success, 1 // DW0 bit 0: the command was not aborted
	case nvme.AdminDeleteIOSQ:
		delete(c.sqs, int(cmd.CDW(10)&0xffff))
		return nvme.Success, 0
	case nvme.AdminDeleteIOCQ:
		delete(c.cqs, int(cmd.CDW(10)&0xffff))
		return nvme.Success, 0
	}
	return nvme.InvalidOpcode, 0
}

func (c *Controller) io(cmd nvme.Command) nvme.Status {
	if cmd.NSID() != 1 && !(cmd.Opcode() == nvme.IOFlush && cmd.NSID() == 0xffffffff) {
		return nvme.InvalidNamespace
	}
	bs := uint64(c.cfg.BlockSize)
	switch cmd.Opcode() {
	case nvme.IOFlush:
		return nvme.Success
	case nvme.IORead, nvme.IOWrite, nvme.IOWriteZeroes:
		lba, n := cmd.SLBA(), uint64(cmd.Blocks())
		if lba+n > c.cfg.Blocks {
			return nvme.LBAOutOfRange
		}
		span := c.data[lba*bs : (lba+n)*bs]
		switch cmd.Opcode() {
		case nvme.IORead:
			if !c.transfer(cmd, span, false) {
				return nvme.DataTransferError
			}
		case nvme.IOWrite:
			if int(n*bs) > c.maxTransfer() || !c.transfer(cmd, span, true) {
				return nvme.DataTransferError
			}
		default:
			clear(span)
		}
		return nvme.Success
	case nvme.IODatasetMgmt:
		ranges := make([]byte, 16*(cmd.CDW(10)&0xff+1))
		if !c.transfer(cmd, ranges, true) {
			return nvme.DataTransferError
		}
		for i := 0; i < len(ranges); i += 16 {
			n, lba := uint64(binary.LittleEndian.Uint32(ranges[i+4:])), binary.LittleEndian.Uint64(ranges[i+8:])
			if lba+n > c.cfg.Blocks {
				return nvme.LBAOutOfRange
			}
			clear(c.data[lba*bs : (lba+n)*bs])
		}
		return nvme.Success
	}
	return nvme.InvalidOpcode
}

func (c *Controller) maxTransfer() int { return 4096 << c.cfg.MDTS }

// transfer moves len(buf) bytes between buf and the command's PRPs (NVMe
// Base 2.0, 4.1.1): to buf when toDevice, from it otherwise. It reports
// false on a malformed PRP or unmapped memory, as a device would fail the
// transfer.
func (c *Controller) transfer(cmd nvme.Command, buf []byte, toDevice bool) bool {
	const page = 4096
	if len(buf) > c.maxTransfer() {
		return false
	}
	prp1, prp2 := cmd.PRP()
	if prp1%4 != 0 {
		return false
	}
	first := page - int(prp1%page)
	var list []byte
	if rest := len(buf) - first; rest > 0 {
		n := (rest + page - 1) / page
		switch {
		case prp2 == 0 || prp2%page != 0 && n == 1:
			return false
		case n > 1:
			if list = c.mem.bytes(prp2, n*8); list == nil || prp2%8 != 0 {
				return false
			}
		}
	}
	// Page i of the transfer: PRP1's for i == 0, then PRP2 or the list's.
	off := 0
	for i := 0; off < len(buf); i++ {
		p, n := prp1, first
		if i > 0 {
			n = page
			if list == nil {
				p = prp2
			} else if p = binary.LittleEndian.Uint64(list[(i-1)*8:]); p%page != 0 {
				return false
			}
		}
		n = min(n, len(buf)-off)
		m := c.mem.bytes(p, n)
		if m == nil {
			return false
		}
		if toDevice {
			copy(buf[off:off+n], m)
		} else {
			copy(m, buf[off:off+n])
		}
		off += n
	}
	return true
}
