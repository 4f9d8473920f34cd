// Package extent keeps a pool's free space as a list of extents (runs of
// blocks) and allocates from it first-fit.
//
// A List is a value: every operation returns a new list and leaves its
// receiver alone, so the engine can compute the next state, persist it and
// only then make it current. A valid list is sorted by Start, its extents
// are non-empty, and no two overlap or touch (touching extents are merged).
package extent

import (
	"errors"
	"fmt"
	"slices"
)

// Extent is Blocks blocks starting at block Start.
type Extent struct {
	Start  uint64 `json:"start_block"`
	Blocks uint64 `json:"blocks"`
}

// End returns the block just past the extent.
func (e Extent) End() uint64 { return e.Start + e.Blocks }

func (e Extent) String() string { return fmt.Sprintf("[%d, %d)", e.Start, e.End()) }

// Errors, matched with errors.Is.
var (
	ErrNoSpace  = errors.New("extent: no free extent large enough")
	ErrNotFree  = errors.New("extent: blocks not free")
	ErrOverlap  = errors.New("extent: blocks already free")
	ErrInvalid  = errors.New("extent: invalid free list")
	ErrOutRange = errors.New("extent: beyond the end of the pool")
)

// List is a free list. The zero value has no free space.
type List []Extent

// All returns the free list of an empty pool of blocks blocks.
func All(blocks uint64) List {
	if blocks == 0 {
		return nil
	}
	return List{{0, blocks}}
}

// Validate checks l is a valid free list of a pool of total blocks.
func (l List) Validate(total uint64) error {
	var prevEnd uint64
	for i, e := range l {
		switch {
		case e.Blocks == 0:
			return fmt.Errorf("%w: extent %d is empty", ErrInvalid, i)
		case e.Start > total || e.Blocks > total-e.Start:
			return fmt.Errorf("%w: extent %d %v ends beyond the pool's %d blocks", ErrInvalid, i, e, total)
		case i > 0 && e.Start <= prevEnd:
			return fmt.Errorf("%w: extent %d %v overlaps, touches or precedes the one before it", ErrInvalid, i, e)
		}
		prevEnd = e.End()
	}
	return nil
}

// FreeBlocks returns how many blocks are free.
func (l List) FreeBlocks() uint64 {
	var n uint64
	for _, e := range l {
		n += e.Blocks
	}
	return n
}

// Largest returns the size of the largest free extent.
func (l List) Largest() uint64 {
	var n uint64
	for _, e := range l {
		n = max(n, e.Blocks)
	}
	return n
}

// Alloc takes blocks blocks from the start of the first extent that holds
// them.
func (l List) Alloc(blocks uint64) (Extent, List, error) {
	if blocks == 0 {
		return Extent{}, l, fmt.Errorf("%w: zero blocks", ErrInvalid)
	}
	for i, e := range l {
		if e.Blocks < blocks {
			continue
		}
		got := Extent{e.Start, blocks}
		next := slices.Clone(l)
		if e.Blocks == blocks {
			next = slices.Delete(next, i, i+1)
		} else {
			next[i] = Extent{e.Start + blocks, e.Blocks - blocks}
		}
		return got, next, nil
	}
	return Extent{}, l, fmt.Errorf("%w: %d blocks wanted, the largest free extent has %d", ErrNoSpace, blocks, l.Largest())
}

// Take removes x, which must lie within one free extent, from the list:
// growing an allocation in place takes the blocks just past it.
func (l List) Take(x Extent) (List, error) {
	if x.Blocks == 0 {
		return l, fmt.Errorf("%w: zero blocks", ErrInvalid)
	}
	for i, e := range l {
		if x.Start < e.Start || x.Start >= e.End() {
			continue
		}
		if x.Blocks > e.End()-x.Start {
			break
		}
		next := slices.Clone(l[:i])
		if x.Start > e.Start {
			next = append(next, Extent{e.Start, x.Start - e.Start})
		}
		if x.End() < e.End() {
			next = append(next, Extent{x.End(), e.End() - x.End()})
		}
		return append(next, l[i+1:]...), nil
	}
	return l, fmt.Errorf("%w: %v", ErrNotFree, x)
}

// FreeAfter returns how many free blocks follow block b directly (0 when
// block b is in use or past the end).
func (l List) FreeAfter(b uint64) uint64 {
	for _, e := range l {
		if e.Start == b {
			return e.Blocks
		}
	}
	return 0
}

// Free returns x to the list of a pool of total blocks, merging it with its
// neighbours.
func (l List) Free(x Extent, total uint64) (List, error) {
	if x.Blocks == 0 {
		return l, fmt.Errorf("%w: zero blocks", ErrInvalid)
	}
	if x.Start > total || x.Blocks > total-x.Start {
		return l, fmt.Errorf("%w: %v, pool of %d blocks", ErrOutRange, x, total)
	}
	i, _ := slices.BinarySearchFunc(l, x.Start, func(e Extent, start uint64) int {
		switch {
		case e.Start < start:
			return -1
		case e.Start > start:
			return 1
		}
		return 0
	})
	// l[i-1] starts before x and l[i] at or after it.
	if i > 0 && l[i-1].End() > x.Start || i < len(l) && l[i].Start < x.End() {
		return l, fmt.Errorf("%w: %v", ErrOverlap, x)
	}
	next := make(List, 0, len(l)+1)
	next = append(next, l[:i]...)
	if n := len(next); n > 0 && next[n-1].End() == x.Start {
		next[n-1].Blocks += x.Blocks
	} else {
		next = append(next, x)
	}
	rest := l[i:]
	if len(rest) > 0 && rest[0].Start == x.End() {
		next[len(next)-1].Blocks += rest[0].Blocks
		rest = rest[1:]
	}
	return append(next, rest...), nil
}
