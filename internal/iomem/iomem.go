// Package iomem provides memory for I/O buffers outside the Go heap.
//
// The kernel (io_uring) and, later, devices (VFIO DMA) read and write these
// buffers while no Go code references them, so they must never be moved or
// freed by the garbage collector: they are anonymous mmap regions, aligned
// to the page size (which satisfies O_DIRECT's alignment), in whole chunks of
// ChunkSize so that a chunk can be one huge page where the system has them.
//
// A Region is unmapped only by Unmap; slices into it must not be used after.
// A Pool is owned by one goroutine (a reactor) and takes no locks.
//
// Package unsafe is used only to read a buffer's address (Aligned).
package iomem

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// ChunkSize is the unit regions are sized in: one x86-64 huge page.
	ChunkSize = 2 << 20
	// Align is the alignment of every buffer handed out: the page size,
	// enough for O_DIRECT on any logical block size up to 4 KiB.
	Align = 4096
)

// Region is a span of mmap'd memory outside the Go heap.
type Region struct {
	mem  []byte
	huge bool
}

// Map maps a region of at least size bytes, rounded up to whole chunks. It
// uses huge pages when the system has them reserved (hugetlbfs), and plain
// anonymous memory otherwise: Strata never requires huge pages.
func Map(size int) (*Region, error) {
	if size <= 0 {
		return nil, fmt.Errorf("iomem: map %d bytes: size must be positive", size)
	}
	size = (size + ChunkSize - 1) / ChunkSize * ChunkSize
	const prot = unix.PROT_READ | unix.PROT_WRITE
	const flags = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_POPULATE
	if mem, err := unix.Mmap(-1, 0, size, prot, flags|unix.MAP_HUGETLB); err == nil {
		return &Region{mem: mem, huge: true}, nil
	}
	mem, err := unix.Mmap(-1, 0, size, prot, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("iomem: map %d bytes: %w", size, err)
	}
	// Transparent huge pages, where enabled, cut TLB misses on large buffers;
	// a refusal changes nothing but speed. The advice only shapes faults to
	// come, so the pages are faulted in after it, not by MAP_POPULATE: I/O
	// then never waits on a page fault either.
	_ = unix.Madvise(mem, unix.MADV_HUGEPAGE)
	if unix.Madvise(mem, unix.MADV_POPULATE_WRITE) != nil { // before Linux 5.14
		page := os.Getpagesize()
		for i := 0; i < len(mem); i += page {
			mem[i] = 0
		}
	}
	return &Region{mem: mem}, nil
}

// Reserve maps a region of at least size bytes whose pages are backed only
// when first touched: for buffers sized for the worst case (a queue's full
// depth of maximum transfers) that are rarely all in use. Pages once touched
// stay resident until Unmap.
func Reserve(size int) (*Region, error) {
	if size <= 0 {
		return nil, fmt.Errorf("iomem: reserve %d bytes: size must be positive", size)
	}
	size = (size + ChunkSize - 1) / ChunkSize * ChunkSize
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("iomem: reserve %d bytes: %w", size, err)
	}
	return &Region{mem: mem}, nil
}

// Bytes returns the whole region.
func (r *Region) Bytes() []byte { return r.mem }

// Huge reports whether the region is backed by hugetlbfs pages.
func (r *Region) Huge() bool { return r.huge }

// Unmap releases the region. No slice into it may be used afterwards, and no
// I/O into it may still be in flight.
func (r *Region) Unmap() error {
	if r.mem == nil {
		return errors.New("iomem: region already unmapped")
	}
	err := unix.Munmap(r.mem)
	r.mem = nil
	if err != nil {
		return fmt.Errorf("iomem: unmap: %w", err)
	}
	return nil
}

// Aligned reports whether b starts at a multiple of align (a power of two),
// as O_DIRECT requires of its buffers.
func Aligned(b []byte, align int) bool {
	return uintptr(unsafe.Pointer(unsafe.SliceData(b)))&uintptr(align-1) == 0
}
