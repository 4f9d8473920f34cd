package iomem

import (
	"os"
	"strconv"
	"strings"
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

// TestMapFaultsInHugePages checks that Map leaves its memory resident, in
// transparent huge pages where the kernel offers them: advice given after the
// pages are faulted in (as MAP_POPULATE does) would leave them 4 KiB pages.
func TestMapFaultsInHugePages(t *testing.T) {
	const size = 8 << 20
	r, err := Map(size)
	require.NoError(t, err)
	defer r.Unmap()
	rss, anonHuge := vmaStats(t, addr(r.Bytes()))
	require.GreaterOrEqual(t, rss, size, "mapped memory is not resident")
	if r.Huge() {
		return // hugetlbfs pages, not transparent ones
	}
	thp, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || strings.Contains(string(thp), "[never]") {
		t.Logf("transparent huge pages are off here (%q, %v): only residency checked", thp, err)
		return
	}
	// A mapping that does not start on a 2 MiB boundary loses a huge page at
	// each end.
	require.GreaterOrEqual(t, anonHuge, size-2*ChunkSize, "no transparent huge pages")
}

// vmaStats returns the Rss and AnonHugePages, in bytes, of the mapping of
// this process that contains addr.
func vmaStats(t *testing.T, addr uintptr) (rss, anonHuge int) {
	t.Helper()
	smaps, err := os.ReadFile("/proc/self/smaps")
	require.NoError(t, err)
	in := false
	for line := range strings.Lines(string(smaps)) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if lo, hi, ok := strings.Cut(f[0], "-"); ok && !strings.HasSuffix(f[0], ":") {
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			in = err1 == nil && err2 == nil && uint64(addr) >= start && uint64(addr) < end
			continue
		}
		if !in || len(f) < 2 {
			continue
		}
		kb, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			rss = kb << 10
		case "AnonHugePages:":
			anonHuge = kb << 10
		}
	}
	return rss, anonHuge
}
