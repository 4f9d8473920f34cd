package mpsc

import (
	"runtime"
	"sync"
	"testing"
	"unsafe"

	"github.com/klauspost/cpuid/v2"
	"github.com/stretchr/testify/require"
)

func TestCapacityMustBePowerOfTwo(t *testing.T) {
	for _, c := range []int{-1, 0, 1, 3, 100} {
		_, err := New[int](c)
		require.Error(t, err, "capacity %d", c)
	}
}

func TestFIFOAndFull(t *testing.T) {
	q, err := New[int](4)
	require.NoError(t, err)
	for round := range 3 { // wrap around several times
		require.True(t, q.Empty())
		for i := range 4 {
			require.True(t, q.Push(round*10+i))
		}
		require.False(t, q.Push(99), "full")
		require.Equal(t, 4, q.Len())
		for i := range 4 {
			v, ok := q.Pop()
			require.True(t, ok)
			require.Equal(t, round*10+i, v)
		}
		_, ok := q.Pop()
		require.False(t, ok)
	}
}

// Many producers, one consumer: every item arrives exactly once and each
// producer's items arrive in the order it pushed them.
func TestManyProducers(t *testing.T) {
	const producers, perProducer = 8, 20000
	q, err := New[uint64](256)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perProducer {
				for !q.Push(uint64(p)<<32 | uint64(i)) {
					runtime.Gosched()
				}
			}
		}()
	}
	next := make([]uint64, producers)
	for got := 0; got < producers*perProducer; {
		v, ok := q.Pop()
		if !ok {
			runtime.Gosched()
			continue
		}
		p, i := v>>32, v&0xffffffff
		require.Equal(t, next[p], i, "producer %d out of order", p)
		next[p]++
		got++
	}
	wg.Wait()
	require.True(t, q.Empty())
	for p := range producers {
		require.EqualValues(t, perProducer, next[p])
	}
}

func TestPopReleasesReferences(t *testing.T) {
	q, err := New[*int](2)
	require.NoError(t, err)
	x := 1
	q.Push(&x)
	q.Pop()
	require.Nil(t, q.cells[0].val)
}

func TestNoAllocs(t *testing.T) {
	q, err := New[*[2]uint64](8)
	require.NoError(t, err)
	m := &[2]uint64{}
	require.Zero(t, testing.AllocsPerRun(1000, func() {
		q.Push(m)
		q.Pop()
	}))
}

// The padding must cover a cache line of the CPU we run on, or producers
// and the consumer would false-share.
func TestPaddingCoversCacheLine(t *testing.T) {
	var q Queue[int]
	line := uintptr(cpuid.CPU.CacheLine)
	if line == 0 {
		line = 64
	}
	require.GreaterOrEqual(t, unsafe.Offsetof(q.head)-unsafe.Offsetof(q.tail), line)
	require.GreaterOrEqual(t, unsafe.Offsetof(q.mask)-unsafe.Offsetof(q.head), line)
}
