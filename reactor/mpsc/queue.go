// Package mpsc is a bounded, lock-free, multi-producer single-consumer
// queue: the hand-off between goroutines (network readers, other reactors)
// and a reactor.
//
// It is Dmitry Vyukov's bounded queue: each cell carries a sequence number
// that says whose turn it is, producers claim a position with one CAS on the
// tail, and the single consumer needs no atomic read-modify-write at all.
// Capacity is a power of two; Push and Pop allocate nothing.
//
// Concurrency: any number of goroutines may Push; exactly one goroutine (the
// owner) may Pop, Len and Empty. The head and tail live on separate cache
// lines so that producers and the consumer do not false-share.
package mpsc

import (
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/cpu"
)

type cell[T any] struct {
	seq atomic.Uint64
	val T
}

// Queue is a bounded MPSC queue of T.
type Queue[T any] struct {
	_     cpu.CacheLinePad
	tail  atomic.Uint64 // next position to claim, shared by producers
	_     cpu.CacheLinePad
	head  uint64 // next position to pop, consumer only
	_     cpu.CacheLinePad
	mask  uint64
	cells []cell[T]
}

// New returns a queue holding up to capacity items; capacity must be a
// power of two of at least 2.
func New[T any](capacity int) (*Queue[T], error) {
	if capacity < 2 || capacity&(capacity-1) != 0 {
		return nil, fmt.Errorf("mpsc: capacity %d is not a power of two >= 2", capacity)
	}
	q := &Queue[T]{mask: uint64(capacity - 1), cells: make([]cell[T], capacity)}
	for i := range q.cells {
		q.cells[i].seq.Store(uint64(i))
	}
	return q, nil
}

// Push adds v and reports whether there was room. Safe for concurrent use.
func (q *Queue[T]) Push(v T) bool {
	pos := q.tail.Load()
	for {
		c := &q.cells[pos&q.mask]
		seq := c.seq.Load()
		switch diff := int64(seq - pos); {
		case diff == 0:
			if q.tail.CompareAndSwap(pos, pos+1) {
				c.val = v
				c.seq.Store(pos + 1) // publishes val to the consumer
				return true
			}
			pos = q.tail.Load()
		case diff < 0:
			return false // the consumer has not freed this cell: full
		default:
			pos = q.tail.Load() // another producer took pos
		}
	}
}

// Pop removes the oldest item. Consumer only.
func (q *Queue[T]) Pop() (T, bool) {
	c := &q.cells[q.head&q.mask]
	if c.seq.Load() != q.head+1 {
		var zero T
		return zero, false
	}
	v := c.val
	var zero T
	c.val = zero // drop the reference so the GC can collect it
	c.seq.Store(q.head + q.mask + 1)
	q.head++
	return v, true
}

// Empty reports whether a Pop would fail now. Consumer only.
func (q *Queue[T]) Empty() bool {
	return q.cells[q.head&q.mask].seq.Load() != q.head+1
}

// Len returns how many items are queued: exact for the consumer, a snapshot
// when producers are active.
func (q *Queue[T]) Len() int { return int(q.tail.Load() - q.head) }

// Cap returns the capacity.
func (q *Queue[T]) Cap() int { return len(q.cells) }
