// Package hist is a log-linear latency histogram: 64 buckets per power of
// two, so a recorded value is known to within 1/64 (1.6%) from 64 ns up to
// the largest uint64, in a fixed 30 KiB with no allocation per Record.
package hist

import (
	"math"
	"math/bits"
)

const (
	subBits    = 6
	subBuckets = 1 << subBits
	numBuckets = subBuckets + (64-subBits)*subBuckets
)

// Histogram counts values (nanoseconds, by convention). Not safe for
// concurrent use; Merge per-worker histograms instead.
type Histogram struct {
	counts   [numBuckets]uint64
	n        uint64
	sum      float64
	min, max uint64
}

// New returns an empty histogram.
func New() *Histogram { return &Histogram{min: math.MaxUint64} }

func bucket(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	msb := bits.Len64(v) - 1 // >= subBits
	shift := msb - subBits
	sub := int(v>>shift) & (subBuckets - 1)
	return subBuckets + shift*subBuckets + sub
}

// bounds returns the smallest and largest value that fall in bucket i.
func bounds(i int) (lo, hi uint64) {
	if i < subBuckets {
		return uint64(i), uint64(i)
	}
	shift := (i - subBuckets) / subBuckets
	sub := uint64((i - subBuckets) % subBuckets)
	lo = (subBuckets + sub) << shift
	return lo, lo + (uint64(1) << shift) - 1
}

// Record adds one value.
func (h *Histogram) Record(v uint64) {
	h.counts[bucket(v)]++
	h.n++
	h.sum += float64(v)
	h.min = min(h.min, v)
	h.max = max(h.max, v)
}

// Merge adds o's values to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Count returns the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Mean returns the average, 0 when empty.
func (h *Histogram) Mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// Min and Max return the exact extremes, 0 when empty.
func (h *Histogram) Min() uint64 {
	if h.n == 0 {
		return 0
	}
	return h.min
}

// Max returns the largest value recorded.
func (h *Histogram) Max() uint64 { return h.max }

// Quantile returns a value v such that a fraction q (0..1) of the recorded
// values are <= v, accurate to the bucket width: the midpoint of the bucket
// holding the value of that rank, clamped to the exact min and max.
func (h *Histogram) Quantile(q float64) uint64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bounds(i)
			mid := lo + (hi-lo)/2
			return min(max(mid, h.min), h.max)
		}
	}
	return h.max
}
