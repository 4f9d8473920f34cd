// Package mmio reads and writes memory that a device shares with the CPU:
// a PCI BAR mapped from VFIO, and DMA rings the device writes on its own.
//
// Plain Go loads and stores are not enough there: the compiler may keep a
// value in a register across a polling loop, merge or split accesses, and
// reorder them. Every access here is one atomic (sequentially consistent)
// load or store of the exact width, which on x86-64 is also what MMIO
// needs (a single, ordered, uncached access for BAR mappings, which the
// kernel maps uncached).
//
// Invariants callers keep: b is memory outside the Go heap (mmap'd), that
// stays mapped while in use; off is a multiple of the access width and the
// access lies within b. Both are checked, with a panic on violation: a
// misaligned device access is a bug, never input.
//
// Package unsafe is used only to turn an aligned offset into a pointer.
package mmio

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

func ptr(b []byte, off, width int) unsafe.Pointer {
	if off < 0 || off%width != 0 || off+width > len(b) {
		panic(fmt.Sprintf("mmio: %d-byte access at offset %d of %d bytes", width, off, len(b)))
	}
	p := unsafe.Pointer(&b[off])
	if uintptr(p)%uintptr(width) != 0 {
		panic(fmt.Sprintf("mmio: %d-byte access at a misaligned address %p", width, p))
	}
	return p
}

// Load32 reads the 32-bit little-endian word at b[off:].
func Load32(b []byte, off int) uint32 { return atomic.LoadUint32((*uint32)(ptr(b, off, 4))) }

// Store32 writes the 32-bit word at b[off:].
func Store32(b []byte, off int, v uint32) { atomic.StoreUint32((*uint32)(ptr(b, off, 4)), v) }

// Load64 reads the 64-bit word at b[off:].
func Load64(b []byte, off int) uint64 { return atomic.LoadUint64((*uint64)(ptr(b, off, 8))) }

// Store64 writes the 64-bit word at b[off:].
func Store64(b []byte, off int, v uint64) { atomic.StoreUint64((*uint64)(ptr(b, off, 8)), v) }
