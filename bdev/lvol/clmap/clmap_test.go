package clmap

import (
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

func entries(m *Map) map[uint64]uint32 {
	out := map[uint64]uint32{}
	m.Each(func(lc uint64, v uint32) { out[lc] = v })
	return out
}

func TestSetAndLookup(t *testing.T) {
	m := New(5000)
	require.EqualValues(t, None, m.Lookup(4999))
	m.Set(0, 7)
	m.Set(4999, 9)
	m.Set(2048, None) // unallocated stays without a page
	require.EqualValues(t, 7, m.Lookup(0))
	require.EqualValues(t, 9, m.Lookup(4999))
	require.EqualValues(t, None, m.Lookup(1))
	pages, shared := m.Pages()
	require.Equal(t, 2, pages, "only the pages written")
	require.Zero(t, shared)
	require.Equal(t, map[uint64]uint32{0: 7, 4999: 9}, entries(m))
}

// A snapshot keeps what its map held when it was taken; the map goes on
// changing, copying a page only when it first changes one it shares.
func TestSnapshotIsolatesAndShares(t *testing.T) {
	m := New(10 * PageEntries)
	for lc := range uint64(10 * PageEntries) {
		m.Set(lc, uint32(lc+1))
	}
	s := m.Snapshot()
	pages, shared := m.Pages()
	require.Equal(t, 10, pages)
	require.Equal(t, 10, shared, "a snapshot copies nothing")

	m.Set(5, 100000)
	m.Set(6, 100001) // same page: copied once
	require.EqualValues(t, 6, s.Lookup(5), "the snapshot keeps the old entry")
	require.EqualValues(t, 100000, m.Lookup(5))
	_, shared = m.Pages()
	require.Equal(t, 9, shared)

	// A clone of the snapshot shares its pages too, and diverges alone.
	c := s.Snapshot()
	c.Set(PageEntries*3, 77)
	require.EqualValues(t, PageEntries*3+1, s.Lookup(PageEntries*3))
	require.EqualValues(t, PageEntries*3+1, m.Lookup(PageEntries*3))
	require.EqualValues(t, 77, c.Lookup(PageEntries*3))

	s.Release()
	c.Release()
	_, shared = m.Pages()
	require.Zero(t, shared, "released maps share nothing")
	m.Set(7, 1) // a page no longer shared is changed in place
	require.EqualValues(t, 1, m.Lookup(7))
}

// Lookups cost one page and one entry whatever the chain: a hundred
// snapshots in a row, each after one change, leave every lookup at the
// same cost, and the whole chain holds only the pages that changed.
func TestLongChainCostsWhatChanged(t *testing.T) {
	m := New(100 * PageEntries)
	for lc := range uint64(100 * PageEntries) {
		m.Set(lc, uint32(lc+1))
	}
	var chain []*Map
	for i := range 100 {
		chain = append(chain, m.Snapshot())
		m.Set(uint64(i)*PageEntries, 1<<30+uint32(i))
	}
	distinct := map[*page]bool{}
	for _, s := range append(chain, m) {
		for i, slots := 0, *s.pages.Load(); i < len(slots); i++ {
			distinct[slots[i].Load()] = true
		}
	}
	require.Equal(t, 200, len(distinct), "100 pages, and one copy per change")
	for i, s := range chain {
		for j := range 100 {
			want := uint32(j*PageEntries + 1)
			if j < i {
				want = 1<<30 + uint32(j)
			}
			require.Equal(t, want, s.Lookup(uint64(j)*PageEntries), "snapshot %d, page %d", i, j)
		}
	}
	require.Zero(t, testing.AllocsPerRun(1000, func() { m.Lookup(12345) }), "a lookup allocates nothing")
}

func TestResize(t *testing.T) {
	m := New(3 * PageEntries)
	m.Set(10, 1)
	m.Set(PageEntries+5, 2)
	m.Set(PageEntries+900, 3)
	m.Set(2*PageEntries+1, 4)
	s := m.Snapshot()
	var dropped []uint32
	m.Resize(PageEntries+100, func(v uint32) { dropped = append(dropped, v) })
	require.ElementsMatch(t, []uint32{3, 4}, dropped)
	require.Equal(t, uint64(PageEntries+100), m.Clusters())
	require.Equal(t, map[uint64]uint32{10: 1, PageEntries + 5: 2}, entries(m))
	require.EqualValues(t, 3, s.Lookup(PageEntries+900), "the snapshot keeps the tail")
	require.EqualValues(t, 4, s.Lookup(2*PageEntries+1))

	m.Resize(4*PageEntries, nil)
	require.EqualValues(t, None, m.Lookup(PageEntries+900), "grown back: unallocated")
	require.EqualValues(t, None, m.Lookup(2*PageEntries+1))
	require.EqualValues(t, 2, m.Lookup(PageEntries+5))
	m.Set(4*PageEntries-1, 5)
	require.EqualValues(t, 5, m.Lookup(4*PageEntries-1))
}

// Readers on other goroutines look clusters up while the owner changes
// the map and takes snapshots: each reader sees, for each cluster, an
// entry that never goes back (the owner only raises them), and the race
// detector sees no race.
func TestLookupsDuringChanges(t *testing.T) {
	const clusters = 4 * PageEntries
	m := New(clusters)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen := make([]uint32, clusters)
			for i := 0; !stop.Load(); i++ {
				lc := uint64(i*7+r) % clusters
				v := m.Lookup(lc)
				if v < seen[lc] {
					t.Errorf("cluster %d went back from %d to %d", lc, seen[lc], v)
					return
				}
				seen[lc] = v
			}
		}()
	}
	var snaps []*Map
	for round := uint32(1); round <= 50; round++ {
		for lc := range uint64(clusters) {
			if lc%3 == uint64(round%3) {
				m.Set(lc, round)
			}
		}
		if round%10 == 0 {
			snaps = append(snaps, m.Snapshot())
		}
	}
	stop.Store(true)
	wg.Wait()
	for _, s := range snaps {
		s.Release()
	}
}

// Diff finds exactly the entries that differ, skipping shared pages, and
// treats clusters past the base's end as unallocated there.
func TestDiff(t *testing.T) {
	base := New(3 * PageEntries)
	for lc := range uint64(3 * PageEntries) {
		base.Set(lc, uint32(lc+1))
	}
	m := base.Snapshot()
	m.Resize(4*PageEntries+5, nil)
	m.Set(3, None)
	m.Set(PageEntries+9, 999999)
	m.Set(4*PageEntries+1, 5)
	base.Set(2*PageEntries, 42) // base changes after: a difference too
	type d struct {
		lc    uint64
		v, bv uint32
	}
	var got []d
	Diff(m, base, func(lc uint64, v, bv uint32) { got = append(got, d{lc, v, bv}) })
	require.Equal(t, []d{
		{3, None, 4}, {PageEntries + 9, 999999, PageEntries + 10},
		{2 * PageEntries, 2*PageEntries + 1, 42}, {4*PageEntries + 1, 5, None},
	}, got)
	got = nil
	Diff(m, m, func(lc uint64, v, bv uint32) { got = append(got, d{lc, v, bv}) })
	require.Empty(t, got)
}

// A page fills a size class of the allocator exactly.
func TestPageIsFourKiB(t *testing.T) {
	require.EqualValues(t, 4096, unsafe.Sizeof(page{}))
}
