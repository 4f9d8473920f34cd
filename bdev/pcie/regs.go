package pcie

import "time"

// Controller registers in BAR0 (NVMe Base 2.0, 3.1.4, Figure 33).
const (
	regCAP  = 0x00 // Controller Capabilities, 64 bits
	regVS   = 0x08 // Version
	regCC   = 0x14 // Controller Configuration
	regCSTS = 0x1c // Controller Status
	regAQA  = 0x24 // Admin Queue Attributes
	regASQ  = 0x28 // Admin Submission Queue base, 64 bits
	regACQ  = 0x30 // Admin Completion Queue base, 64 bits

	// doorbellBase is where the doorbells start; their stride is
	// 4 << CAP.DSTRD bytes (3.1.4.21, 3.1.4.22).
	doorbellBase = 0x1000
)

// CC fields (Figure 50).
const (
	ccEnable      = 1 << 0
	ccCSSNVM      = 0 << 4
	ccMPSShift    = 7
	ccShnNormal   = 1 << 14
	ccShnMask     = 3 << 14
	ccIOSQESShift = 16
	ccIOCQESShift = 20
)

// CSTS fields (Figure 51).
const (
	cstsReady       = 1 << 0
	cstsFatal       = 1 << 1
	cstsShstMask    = 3 << 2
	cstsShstDone    = 2 << 2
	cstsShstPending = 1 << 2
)

// Registers is a controller's BAR0: VFIO's mmap of it, or a fake in tests.
// Accesses are single, ordered loads and stores of the given width.
type Registers interface {
	Read32(off int) uint32
	Write32(off int, v uint32)
	Read64(off int) uint64
	Write64(off int, v uint64)
}

// capabilities decodes CAP (Figure 36).
type capabilities uint64

// maxQueueEntries returns MQES+1: the largest queue the controller takes.
func (c capabilities) maxQueueEntries() int { return int(c&0xffff) + 1 }

// readyTimeout returns CAP.TO: how long CSTS.RDY may take to follow CC.EN.
func (c capabilities) readyTimeout() time.Duration {
	return time.Duration((c>>24)&0xff) * 500 * time.Millisecond
}

// doorbellStride returns the bytes between doorbells, 4 << DSTRD.
func (c capabilities) doorbellStride() int { return 4 << ((c >> 32) & 0xf) }

// nvmCommandSet reports CSS bit 0: the NVM command set.
func (c capabilities) nvmCommandSet() bool { return (c>>37)&1 != 0 }

// minPageSize and maxPageSize return 2^(12+MPSMIN) and 2^(12+MPSMAX).
func (c capabilities) minPageSize() int { return 1 << (12 + (c>>48)&0xf) }
func (c capabilities) maxPageSize() int { return 1 << (12 + (c>>52)&0xf) }

// sqDoorbell and cqDoorbell return the offsets of queue qid's doorbells.
func sqDoorbell(qid, stride int) int { return doorbellBase + 2*qid*stride }
func cqDoorbell(qid, stride int) int { return doorbellBase + (2*qid+1)*stride }
