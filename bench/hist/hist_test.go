package hist

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBucketsCoverEveryValueOnce(t *testing.T) {
	prevHi := uint64(0)
	for i := range numBuckets {
		lo, hi := bounds(i)
		if i > 0 {
			require.Equal(t, prevHi+1, lo, "bucket %d starts where %d ends", i, i-1)
		}
		require.Equal(t, i, bucket(lo))
		require.Equal(t, i, bucket(hi))
		prevHi = hi
	}
	require.Equal(t, ^uint64(0), prevHi, "the last bucket ends at MaxUint64")
}

// Quantiles agree with an exact sort within the bucket precision.
func TestQuantilesMatchSortedReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	h := New()
	var vals []uint64
	for range 100000 {
		v := uint64(rng.ExpFloat64()*50000) + 1000
		vals = append(vals, v)
		h.Record(v)
	}
	slices.Sort(vals)
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
		exact := vals[int(q*float64(len(vals)))-1]
		got := h.Quantile(q)
		require.InEpsilon(t, float64(exact), float64(got), 1.0/64, "q=%v", q)
	}
	require.Equal(t, vals[0], h.Min())
	require.Equal(t, vals[len(vals)-1], h.Max())
	var sum float64
	for _, v := range vals {
		sum += float64(v)
	}
	require.InDelta(t, sum/float64(len(vals)), h.Mean(), 1e-6*sum)
}

func TestMergeAndEmpty(t *testing.T) {
	a, b := New(), New()
	require.Zero(t, a.Quantile(0.5))
	require.Zero(t, a.Min())
	require.Zero(t, a.Mean())
	for v := range uint64(100) {
		a.Record(v)
		b.Record(v + 1000)
	}
	a.Merge(b)
	require.EqualValues(t, 200, a.Count())
	require.EqualValues(t, 0, a.Min())
	require.EqualValues(t, 1099, a.Max())
	require.InEpsilon(t, 1000, float64(a.Quantile(0.51)), 1.0/64)
}

func TestRecordAllocatesNothing(t *testing.T) {
	h := New()
	v := uint64(1)
	require.Zero(t, testing.AllocsPerRun(1000, func() { h.Record(v); v *= 3 }))
}
