// Package clmap is a volume's resolved cluster map: for each logical
// cluster of a volume, the physical cluster of the pool that holds it (or
// none). A map is pages of PageEntries entries; a snapshot shares every
// page of the map it is taken of, and a page is copied only when a map
// that shares it changes it (copy on write per page). So a snapshot costs
// the memory of what changed after it, and a lookup is one page and one
// entry however long a chain of snapshots and clones is.
//
// Concurrency: Lookup is safe from any goroutine at any time (every
// reactor's mapped path calls it, with no lock); everything that changes
// maps (Set, Resize, Snapshot, Release) comes from one goroutine at a
// time, the store's metadata owner. A lookup concurrent with a Set of the
// same cluster sees the old entry or the new one.
package clmap

import "sync/atomic"

// PageEntries is how many clusters one page maps: with its share count,
// a page is 4096 bytes, a size class of Go's allocator (1024 entries and
// the count would take 4100 bytes, in the 4864-byte class).
const PageEntries = 1023

// None is the entry of a logical cluster with no physical cluster: it
// reads as zeroes.
const None = 0

// page is PageEntries entries, shared by the maps that point at it.
type page struct {
	maps atomic.Int32 // how many maps point at it
	e    [PageEntries]atomic.Uint32
}

// Map is one volume's map. Entries are physical cluster numbers plus one
// (None: unallocated), so that the zero page is an empty one.
type Map struct {
	clusters uint64
	pages    atomic.Pointer[[]atomic.Pointer[page]]
}

// New returns an empty map of clusters logical clusters.
func New(clusters uint64) *Map {
	m := &Map{clusters: clusters}
	slots := make([]atomic.Pointer[page], pagesFor(clusters))
	m.pages.Store(&slots)
	return m
}

func pagesFor(clusters uint64) uint64 { return (clusters + PageEntries - 1) / PageEntries }

// Clusters returns the map's length in logical clusters. The owner only
// (lookups stay within the volume's size, which its device checks).
func (m *Map) Clusters() uint64 { return m.clusters }

// Lookup returns the entry of logical cluster lc: the physical cluster
// plus one, or None. Any goroutine; lc must be within the map.
func (m *Map) Lookup(lc uint64) uint32 {
	slots := *m.pages.Load()
	p := slots[lc/PageEntries].Load()
	if p == nil {
		return None
	}
	return p.e[lc%PageEntries].Load()
}

// Set makes logical cluster lc's entry v (a physical cluster plus one, or
// None). A page shared with another map is copied first; the other map
// keeps the page as it was. The owner only.
func (m *Map) Set(lc uint64, v uint32) {
	slots := *m.pages.Load()
	slot := &slots[lc/PageEntries]
	p := slot.Load()
	switch {
	case p == nil:
		if v == None {
			return
		}
		p = &page{}
		p.maps.Store(1)
		p.e[lc%PageEntries].Store(v)
		slot.Store(p)
	case p.maps.Load() > 1:
		c := &page{}
		c.maps.Store(1)
		for i := range p.e {
			c.e[i].Store(p.e[i].Load())
		}
		c.e[lc%PageEntries].Store(v)
		slot.Store(c)
		p.maps.Add(-1)
	default:
		p.e[lc%PageEntries].Store(v)
	}
}

// Snapshot returns a map that shares every page of m: what m maps now,
// for as long as the snapshot lives, whatever m maps later. The owner
// only.
func (m *Map) Snapshot() *Map {
	slots := *m.pages.Load()
	s := &Map{clusters: m.clusters}
	shared := make([]atomic.Pointer[page], len(slots))
	for i := range slots {
		if p := slots[i].Load(); p != nil {
			p.maps.Add(1)
			shared[i].Store(p)
		}
	}
	s.pages.Store(&shared)
	return s
}

// Resize makes the map clusters long: new clusters are unallocated;
// clusters cut off are dropped, and the caller learns which physical
// clusters they held through dropped (which may be nil). The owner only.
func (m *Map) Resize(clusters uint64, dropped func(v uint32)) {
	n := pagesFor(clusters)
	for lc := clusters; lc < m.clusters; lc++ {
		v := m.Lookup(lc)
		if v == None {
			continue
		}
		if dropped != nil {
			dropped(v)
		}
		if lc < n*PageEntries {
			// In the last page kept: cleared, so that growing again
			// finds it unallocated.
			m.Set(lc, None)
		}
	}
	old := *m.pages.Load()
	slots := make([]atomic.Pointer[page], n)
	for i := range min(n, uint64(len(old))) {
		slots[i].Store(old[i].Load())
	}
	for i := n; i < uint64(len(old)); i++ {
		if p := old[i].Load(); p != nil {
			p.maps.Add(-1)
		}
	}
	m.clusters = clusters
	m.pages.Store(&slots)
}

// Release drops the map: its pages are no longer shared with it. The map
// must not be used after. The owner only.
func (m *Map) Release() {
	for i, slots := 0, *m.pages.Load(); i < len(slots); i++ {
		if p := slots[i].Load(); p != nil {
			p.maps.Add(-1)
		}
	}
	m.pages.Store(&[]atomic.Pointer[page]{})
	m.clusters = 0
}

// Each calls fn with every allocated entry, in logical order. The owner
// only.
func (m *Map) Each(fn func(lc uint64, v uint32)) {
	slots := *m.pages.Load()
	for i := range slots {
		p := slots[i].Load()
		if p == nil {
			continue
		}
		for j := range p.e {
			if v := p.e[j].Load(); v != None {
				fn(uint64(i)*PageEntries+uint64(j), v)
			}
		}
	}
}

// Pages returns how many pages the map points at, and how many of those
// it shares with other maps: its memory, and what snapshots save.
func (m *Map) Pages() (pages, shared int) {
	slots := *m.pages.Load()
	for i := range slots {
		if p := slots[i].Load(); p != nil {
			pages++
			if p.maps.Load() > 1 {
				shared++
			}
		}
	}
	return pages, shared
}

// Diff calls fn, in logical order, with every logical cluster whose entry
// in m differs from its entry in base (a cluster beyond base's length has
// None there), for clusters within m's length. Pages the two maps share
// are skipped whole: a snapshot's difference from its volume costs the
// pages that changed. The owner only.
func Diff(m, base *Map, fn func(lc uint64, v, baseV uint32)) {
	slots, bslots := *m.pages.Load(), *base.pages.Load()
	for i := range slots {
		p := slots[i].Load()
		var bp *page
		if i < len(bslots) {
			bp = bslots[i].Load()
		}
		if p == bp {
			continue
		}
		for j := range uint64(PageEntries) {
			lc := uint64(i)*PageEntries + j
			if lc >= m.clusters {
				return
			}
			var v, bv uint32
			if p != nil {
				v = p.e[j].Load()
			}
			if bp != nil && lc < base.clusters {
				bv = bp.e[j].Load()
			}
			if v != bv {
				fn(lc, v, bv)
			}
		}
	}
}
