package pcie

import (
	"fmt"

	"github.com/strata-storage/strata/internal/mmio"
	"github.com/strata-storage/strata/nvmeof/nvme"
)

// queuePair is a submission queue and its completion queue, in DMA memory
// (NVMe Base 2.0, 3.3.1). One owner drives it (the admin path under the
// controller's lock, an I/O queue pair its reactor): no locks here.
//
// Commands are identified by their slot: the command ID is the slot
// index, and at most entries-1 are outstanding, so neither ring can fill
// (a full ring is one entry short of its size: head == tail means empty).
type queuePair struct {
	id      int
	regs    Registers
	sqBell  int // doorbell offsets
	cqBell  int
	entries int
	sq, cq  DMA

	sqTail   int  // where the next command goes
	unrung   bool // commands pushed since the last SQ doorbell
	cqHead   int  // the next completion to look at
	phase    uint32
	free     []uint16 // free command IDs
	busy     []bool   // by command ID: outstanding
	inflight int
	// spurious counts completions for no outstanding command: a device
	// fault, never acted on.
	spurious uint64
}

func newQueuePair(id int, regs Registers, stride, entries int, mem Allocator) (*queuePair, error) {
	if entries < 2 {
		return nil, fmt.Errorf("pcie: queue %d of %d entries: want at least 2", id, entries)
	}
	sq, err := mem.Alloc(entries * nvme.CommandSize)
	if err != nil {
		return nil, fmt.Errorf("pcie: queue %d: submission queue: %w", id, err)
	}
	cq, err := mem.Alloc(entries * nvme.CompletionSize)
	if err != nil {
		return nil, fmt.Errorf("pcie: queue %d: completion queue: %w", id, err)
	}
	clear(cq.Bytes) // phase bits 0: the first pass expects 1
	q := &queuePair{
		id: id, regs: regs, sqBell: sqDoorbell(id, stride), cqBell: cqDoorbell(id, stride),
		entries: entries, sq: sq, cq: cq, phase: 1, free: make([]uint16, 0, entries-1),
		busy: make([]bool, entries-1),
	}
	for cid := entries - 2; cid >= 0; cid-- {
		q.free = append(q.free, uint16(cid))
	}
	return q, nil
}

// reset empties the queue pair for a fresh start on the controller (after
// a controller reset): no command outstanding, both rings at 0, phase 1.
func (q *queuePair) reset() {
	clear(q.cq.Bytes)
	q.sqTail, q.cqHead, q.phase, q.unrung, q.inflight = 0, 0, 1, false, 0
	q.free = q.free[:0]
	for cid := q.entries - 2; cid >= 0; cid-- {
		q.free = append(q.free, uint16(cid))
		q.busy[cid] = false
	}
}

// setID gives the queue pair a queue ID (and so its doorbells).
func (q *queuePair) setID(id, stride int) {
	q.id, q.sqBell, q.cqBell = id, sqDoorbell(id, stride), cqDoorbell(id, stride)
}

// capacity returns how many commands may be outstanding.
func (q *queuePair) capacity() int { return q.entries - 1 }

// takeCID reserves a command ID; ok is false when entries-1 are out.
func (q *queuePair) takeCID() (cid uint16, ok bool) {
	n := len(q.free)
	if n == 0 {
		return 0, false
	}
	cid = q.free[n-1]
	q.free = q.free[:n-1]
	q.busy[cid] = true
	return cid, true
}

// push copies cmd into the next submission queue entry with command ID
// cid (from takeCID). The controller sees it at the next ring.
func (q *queuePair) push(cmd nvme.Command, cid uint16) {
	e := q.sq.Bytes[q.sqTail*nvme.CommandSize : (q.sqTail+1)*nvme.CommandSize]
	copy(e, cmd)
	nvme.Command(e).SetCID(cid)
	q.sqTail++
	if q.sqTail == q.entries {
		q.sqTail = 0
	}
	q.unrung = true
	q.inflight++
}

// ring writes the SQ tail doorbell if commands were pushed since the last
// ring: one MMIO write per batch. The doorbell store is atomic (a full
// barrier), so the entries' plain stores are visible to the device first.
func (q *queuePair) ring() {
	if q.unrung {
		q.regs.Write32(q.sqBell, uint32(q.sqTail))
		q.unrung = false
	}
}

// poll hands every new completion to done, frees its command ID (after
// done returns), and then tells the controller how far it read with one
// CQ head doorbell write. It returns how many it reaped.
func (q *queuePair) poll(done func(cid uint16, st nvme.Status, dw0 uint32)) int {
	n := 0
	for {
		off := q.cqHead * nvme.CompletionSize
		// DW3: command ID (15:0), phase (16), status (31:17). The load is
		// atomic: the device writes this memory behind the compiler's back.
		dw3 := mmio.Load32(q.cq.Bytes, off+12)
		if (dw3>>16)&1 != q.phase {
			break
		}
		cid := uint16(dw3)
		st := nvme.Status(dw3 >> 17)
		dw0 := mmio.Load32(q.cq.Bytes, off)
		q.cqHead++
		if q.cqHead == q.entries {
			q.cqHead, q.phase = 0, q.phase^1
		}
		n++
		if int(cid) >= q.capacity() || !q.busy[cid] {
			// A device bug or a stale entry: never act on it.
			q.spurious++
			continue
		}
		q.busy[cid] = false
		q.inflight--
		done(cid, st, dw0)
		q.free = append(q.free, cid)
	}
	if n > 0 {
		q.regs.Write32(q.cqBell, uint32(q.cqHead))
	}
	return n
}
