package target

// Controller properties (NVMe over Fabrics 1.1, 3.5; NVMe Base 2.0, 3.1.3):
// the registers a fabrics host reads and writes with Property Get/Set. This
// file is the controller-enable state machine: no I/O, no clocks, so it is
// tested exhaustively on its own.

// Property offsets.
const (
	propCAP  = 0x00 // 8 bytes
	propVS   = 0x08
	propCC   = 0x14
	propCSTS = 0x1c
	propNSSR = 0x20
)

// CC fields (NVMe Base 2.0, Figure 41).
const (
	ccEN          = 1 << 0
	ccCSSShift    = 4
	ccMPSShift    = 7
	ccSHNShift    = 14
	ccSHNMask     = 3 << ccSHNShift
	ccIOSQESShift = 16
	ccIOCQESShift = 20
)

// CSTS fields (Figure 42).
const (
	cstsRDY          = 1 << 0
	cstsCFS          = 1 << 1
	cstsSHSTShift    = 2
	cstsSHSTComplete = 2 << cstsSHSTShift
)

// Entry sizes as powers of two: 64-byte SQEs, 16-byte CQEs.
const (
	sqEntryLog2 = 6
	cqEntryLog2 = 4
)

// versionNVMe is VS: 1.4.0. The commands and fields Strata implements follow
// the 2.0 specification, but a 2.0 VS makes hosts probe optional 2.0
// features (command set independent Identify, CRIMS) Strata does not claim.
const versionNVMe = 0x00010400

// regs holds one controller's properties.
type regs struct {
	cap  uint64
	cc   uint32
	csts uint32
}

// newRegs returns reset registers for queues of up to maxQueueEntries
// entries; timeout500ms is CAP.TO, how long a host waits for CSTS.RDY.
func newRegs(maxQueueEntries uint16, timeout500ms uint8) regs {
	capReg := uint64(maxQueueEntries-1) | // MQES, 0's based
		1<<16 | // CQR: queues must be contiguous
		uint64(timeout500ms)<<24 | // TO
		1<<37 // CSS bit 0: the NVM command set
	// DSTRD, MPSMIN and MPSMAX are 0: 4 KiB pages, no doorbells on fabrics.
	return regs{cap: capReg}
}

// propEvent tells the caller what a property write asks of the
// controller: a set of the bits below, as one write of CC may ask for
// several things at once.
type propEvent uint8

const (
	propEnabled  propEvent = 1 << iota // CC.EN 0 -> 1 accepted: the controller is ready
	propDisabled                       // CC.EN 1 -> 0: reset; drop I/O queues
	propShutdown                       // CC.SHN set: flush, then report shutdown complete

	propNone propEvent = 0
)

// get reads a property. size8 is the Property Get ATTRIB (8-byte access).
func (r *regs) get(off uint32, size8 bool) (uint64, bool) {
	switch {
	case off == propCAP && size8:
		return r.cap, true
	case off == propVS && !size8:
		return versionNVMe, true
	case off == propCC && !size8:
		return uint64(r.cc), true
	case off == propCSTS && !size8:
		return uint64(r.csts), true
	case off == propNSSR && !size8:
		return 0, true
	}
	return 0, false
}

// set writes a property and says what the controller must do about it;
// ok is false for a property that cannot be written (Invalid Field).
//
// CC.EN and CC.SHN are independent: clearing EN resets the controller
// whatever else the write carries (NVMe Base 2.0, 3.7.2), so a write that
// clears EN and sets SHN asks for a shutdown and a reset. The caller does
// the shutdown first, then the reset; CSTS then reads RDY 0 with SHST
// complete, as after Linux's nvmet.
func (r *regs) set(off uint32, size8 bool, val uint64) (ev propEvent, ok bool) {
	if off != propCC || size8 {
		return propNone, false
	}
	old, cc := r.cc, uint32(val)
	r.cc = cc
	switch {
	case cc&ccEN != 0 && old&ccEN == 0:
		if !ccValid(cc) {
			r.csts |= cstsCFS
		} else {
			r.csts = cstsRDY
			ev |= propEnabled
		}
	case cc&ccEN == 0 && old&ccEN != 0:
		r.csts = 0
		ev |= propDisabled
	}
	switch {
	case cc&ccSHNMask != 0 && old&ccSHNMask == 0:
		ev |= propShutdown
	case cc&ccSHNMask == 0 && old&ccSHNMask != 0:
		r.csts &^= 3 << cstsSHSTShift // a new shutdown may be asked for
	}
	return ev, true
}

// shutdownDone records that a shutdown finished (CSTS.SHST = complete).
func (r *regs) shutdownDone() { r.csts = r.csts&^(3<<cstsSHSTShift) | cstsSHSTComplete }

// ready reports CSTS.RDY.
func (r *regs) ready() bool { return r.csts&cstsRDY != 0 }

// ccValid checks what enabling requires: NVM command set, 4 KiB pages,
// 64-byte SQEs and 16-byte CQEs.
func ccValid(cc uint32) bool {
	return (cc>>ccCSSShift)&7 == 0 &&
		(cc>>ccMPSShift)&0xf == 0 &&
		(cc>>ccIOSQESShift)&0xf == sqEntryLog2 &&
		(cc>>ccIOCQESShift)&0xf == cqEntryLog2
}
