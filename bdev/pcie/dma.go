package pcie

import (
	"encoding/binary"
	"fmt"
)

// pageSize is the memory page size the driver programs in CC.MPS, and so
// the unit of PRP entries: 4 KiB, which every controller supports
// (CAP.MPSMIN is 0 on all known devices; New checks).
const pageSize = 4096

// DMA is memory the controller can reach: Bytes for the CPU, IOVA for the
// device. A piece is contiguous in both spaces.
type DMA struct {
	Bytes []byte
	IOVA  uint64
}

// Slice returns bytes [off, off+n) of d as a DMA piece of its own.
func (d DMA) Slice(off, n int) DMA {
	return DMA{Bytes: d.Bytes[off : off+n : off+n], IOVA: d.IOVA + uint64(off)}
}

// Allocator hands out DMA memory in page-aligned pieces, each contiguous in
// IOVA space. The driver allocates everything it needs when a controller
// or queue is set up, never per I/O; pieces live as long as the allocator.
type Allocator interface {
	Alloc(size int) (DMA, error)
}

// maxPRPPages bounds one transfer so that its PRP list fits in one page
// (pageSize/8 entries, plus the page PRP1 points to): no list chaining.
const maxPRPPages = pageSize / 8

// buildPRP returns the data pointer of a transfer of n bytes at iova (NVMe
// Base 2.0, 4.1.1): PRP1 is the first byte; PRP2 is unused when the
// transfer stays in PRP1's page, the second page when it ends there, and
// otherwise the address of a PRP list, which buildPRP writes into list (one
// page of DMA memory at listIOVA) with the address of every page after the
// first. iova must be 4-byte aligned (PRP offsets are dword aligned).
func buildPRP(iova uint64, n int, list []byte, listIOVA uint64) (prp1, prp2 uint64, err error) {
	if n <= 0 || iova%4 != 0 {
		return 0, 0, fmt.Errorf("pcie: transfer of %d bytes at IOVA %#x: want a positive length and a 4-byte aligned address", n, iova)
	}
	off := int(iova % pageSize)
	first := pageSize - off
	if n <= first {
		return iova, 0, nil
	}
	pages := (n - first + pageSize - 1) / pageSize // after the first
	next := iova - uint64(off) + pageSize
	if pages == 1 {
		return iova, next, nil
	}
	if pages > maxPRPPages || len(list) < pages*8 {
		return 0, 0, fmt.Errorf("pcie: transfer of %d bytes needs %d PRP entries, more than a list page holds", n, pages)
	}
	for i := range pages {
		binary.LittleEndian.PutUint64(list[i*8:], next+uint64(i)*pageSize)
	}
	return iova, listIOVA, nil
}
