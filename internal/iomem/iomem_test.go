package iomem

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMapRoundsToChunksAndAligns(t *testing.T) {
	r, err := Map(1)
	require.NoError(t, err)
	defer r.Unmap()
	require.Len(t, r.Bytes(), ChunkSize)
	require.Zero(t, addr(r.Bytes())%Align)
	r.Bytes()[ChunkSize-1] = 1 // writable to the end
	require.Error(t, func() error { _, err := Map(0); return err }())
}

func TestUnmapTwiceFails(t *testing.T) {
	r, err := Map(ChunkSize)
	require.NoError(t, err)
	require.NoError(t, r.Unmap())
	require.Error(t, r.Unmap())
}

func TestPoolGetPut(t *testing.T) {
	p, err := NewPool(1000, 5) // rounded up to Align
	require.NoError(t, err)
	defer p.Close()
	require.Equal(t, Align, p.BufSize())
	seen := map[int]bool{}
	for range 5 {
		b, i, ok := p.Get()
		require.True(t, ok)
		require.Len(t, b, Align)
		require.Zero(t, addr(b)%Align)
		require.False(t, seen[i])
		seen[i] = true
		b[0] = byte(i) // buffers do not overlap
	}
	_, _, ok := p.Get()
	require.False(t, ok, "pool must be exhausted")
	for i := range seen {
		require.Equal(t, byte(i), p.Buf(i)[0])
		p.Put(i)
	}
	require.Equal(t, 5, p.Free())
}

func TestPoolNoAllocs(t *testing.T) {
	p, err := NewPool(Align, 4)
	require.NoError(t, err)
	defer p.Close()
	allocs := testing.AllocsPerRun(1000, func() {
		_, i, _ := p.Get()
		p.Put(i)
	})
	require.Zero(t, allocs)
}

func TestAligned(t *testing.T) {
	r, err := Map(ChunkSize)
	require.NoError(t, err)
	defer r.Unmap()
	b := r.Bytes()
	require.True(t, Aligned(b, 4096))
	require.True(t, Aligned(b[512:], 512))
	require.False(t, Aligned(b[512:], 4096))
	require.False(t, Aligned(b[1:], 2))
}

func TestReserveIsLazy(t *testing.T) {
	r, err := Reserve(64 << 20)
	require.NoError(t, err)
	defer r.Unmap()
	require.Len(t, r.Bytes(), 64<<20)
	r.Bytes()[32<<20] = 7
	require.EqualValues(t, 7, r.Bytes()[32<<20])
	require.True(t, Aligned(r.Bytes(), Align))
}
