package iomem

import (
	"fmt"

	"github.com/strata-storage/strata/internal/invariants"
)

// Pool hands out buffers of one size from a Region it owns. Get and Put take
// no locks and allocate nothing: a Pool belongs to one goroutine.
type Pool struct {
	region  *Region
	bufSize int
	bufs    [][]byte // every buffer, by index
	free    []int32  // stack of free indices
	inUse   []bool   // double-Put detection, checked only with invariants
}

// NewPool maps count buffers of bufSize bytes each (rounded up to Align).
func NewPool(bufSize, count int) (*Pool, error) {
	if bufSize <= 0 || count <= 0 {
		return nil, fmt.Errorf("iomem: pool of %d x %d bytes: sizes must be positive", count, bufSize)
	}
	bufSize = (bufSize + Align - 1) / Align * Align
	r, err := Map(bufSize * count)
	if err != nil {
		return nil, err
	}
	p := &Pool{
		region:  r,
		bufSize: bufSize,
		bufs:    make([][]byte, count),
		free:    make([]int32, count),
		inUse:   make([]bool, count),
	}
	mem := r.Bytes()
	for i := range count {
		p.bufs[i] = mem[i*bufSize : (i+1)*bufSize : (i+1)*bufSize]
		p.free[i] = int32(count - 1 - i)
	}
	return p, nil
}

// Get returns a free buffer and its index, or ok=false when none is left.
// The buffer holds whatever its last user left in it.
func (p *Pool) Get() (buf []byte, index int, ok bool) {
	n := len(p.free)
	if n == 0 {
		return nil, -1, false
	}
	i := p.free[n-1]
	p.free = p.free[:n-1]
	if invariants.Enabled {
		invariants.Assert(!p.inUse[i], "iomem: free buffer marked in use")
		p.inUse[i] = true
	}
	return p.bufs[i], int(i), true
}

// Put returns buffer index to the pool.
func (p *Pool) Put(index int) {
	if invariants.Enabled {
		invariants.Assert(index >= 0 && index < len(p.bufs) && p.inUse[index], "iomem: Put of a buffer not in use")
		p.inUse[index] = false
	}
	p.free = append(p.free, int32(index))
}

// Buf returns buffer index.
func (p *Pool) Buf(index int) []byte { return p.bufs[index] }

// BufSize returns the size of each buffer.
func (p *Pool) BufSize() int { return p.bufSize }

// Free returns the number of buffers available.
func (p *Pool) Free() int { return len(p.free) }

// Cap returns the total number of buffers.
func (p *Pool) Cap() int { return len(p.bufs) }

// Region returns the memory behind the pool (to register it with io_uring
// or map it for DMA).
func (p *Pool) Region() *Region { return p.region }

// Close unmaps the pool's memory.
func (p *Pool) Close() error { return p.region.Unmap() }
