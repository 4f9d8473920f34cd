package lvol

import (
	"fmt"
	"math/bits"
	"slices"
	"sync/atomic"

	"github.com/strata-storage/strata/bdev/lvol/clmap"
	"github.com/strata-storage/strata/bdev/lvol/format"
)

// tables are the store's metadata: its volumes and their cluster maps,
// and what is derived from them, each physical cluster's reference count
// (how many maps point at it) and the free clusters. They change only by
// records, through apply, live as at replay: a store opened after a crash
// has exactly the tables that the records it kept describe.
//
// The metadata reactor owns the tables. The data path reads maps
// (clmap.Map.Lookup) and reference counts (refs) with atomic loads and no
// lock.
type tables struct {
	clusterSize uint64
	clusters    uint64 // physical clusters in the data region
	vols        map[uint32]*volTable
	names       map[string]uint32
	refs        []atomic.Uint32
	free        []uint64 // bit set: the cluster is free to allocate
	nfree       uint64
	cursor      uint64 // where the next allocation looks first
	nextID      uint32
	// freed is told of each cluster whose last reference went; nil (at
	// replay) makes it free at once. The live store holds such clusters
	// back until no I/O can still reach them.
	freed func(pc uint32)
}

// volTable is a volume's entry in the tables.
type volTable struct {
	rec    format.Volume
	m      *clmap.Map
	mapped uint64 // entries that are not None
}

func (v *volTable) thin() bool     { return v.rec.Flags&format.VolumeThin != 0 }
func (v *volTable) snapshot() bool { return v.rec.Flags&format.VolumeSnapshot != 0 }

func newTables(clusterSize, clusters uint64) *tables {
	t := &tables{
		clusterSize: clusterSize, clusters: clusters,
		vols: make(map[uint32]*volTable), names: make(map[string]uint32),
		refs:   make([]atomic.Uint32, clusters),
		free:   make([]uint64, (clusters+63)/64),
		nextID: 1,
	}
	for pc := range clusters {
		t.setFree(pc)
	}
	return t
}

// clustersFor returns how many clusters a volume of size bytes maps.
func (t *tables) clustersFor(size uint64) uint64 { return (size + t.clusterSize - 1) / t.clusterSize }

func (t *tables) isFree(pc uint64) bool { return t.free[pc/64]&(1<<(pc%64)) != 0 }

func (t *tables) setFree(pc uint64) {
	t.free[pc/64] |= 1 << (pc % 64)
	t.nfree++
}

func (t *tables) clearFree(pc uint64) {
	t.free[pc/64] &^= 1 << (pc % 64)
	t.nfree--
}

// ref counts one more map pointing at pc; a free cluster (as at replay)
// stops being free.
func (t *tables) ref(pc uint64) {
	if t.refs[pc].Load() == 0 && t.isFree(pc) {
		t.clearFree(pc)
	}
	t.refs[pc].Add(1)
}

// unref counts one map fewer pointing at pc.
func (t *tables) unref(pc uint64) {
	if t.refs[pc].Add(^uint32(0)) != 0 {
		return
	}
	if t.freed != nil {
		t.freed(uint32(pc))
		return
	}
	t.setFree(pc)
}

// alloc takes a free cluster, next fit from the cursor; false if none is
// left. It is the caller's until a record maps it or release returns it.
func (t *tables) alloc() (uint32, bool) {
	pc, n := t.allocRun(1)
	return pc, n == 1
}

// allocRun takes up to max free clusters in a row, the first free one
// from the cursor on and those right after it; it returns the first and
// how many (0: the pool is full).
func (t *tables) allocRun(max uint64) (uint32, uint64) {
	if t.nfree == 0 || max == 0 {
		return 0, 0
	}
	words := uint64(len(t.free))
	for i := range words + 1 {
		w := (t.cursor/64 + i) % words
		bitsLeft := t.free[w]
		if i == 0 {
			bitsLeft &^= 1<<(t.cursor%64) - 1 // the word's clusters before the cursor come last
		}
		if bitsLeft == 0 {
			continue
		}
		pc := w*64 + uint64(bits.TrailingZeros64(bitsLeft))
		n := uint64(0)
		for n < max && pc+n < t.clusters && t.isFree(pc+n) {
			t.clearFree(pc + n)
			n++
		}
		t.cursor = (pc + n) % t.clusters
		return uint32(pc), n
	}
	panic("lvol: free clusters counted but none found")
}

// release returns a cluster alloc gave and no record mapped.
func (t *tables) release(pc uint32) { t.setFree(uint64(pc)) }

// apply makes one record's change. An error is the record's fault (what
// replay calls corruption): the tables are then as they were.
func (t *tables) apply(r *format.Record) error {
	switch r.Type {
	case format.RecVolumeCreate, format.RecSnapshot, format.RecClone:
		return t.addVolume(r)
	case format.RecVolumeDelete:
		v, err := t.vol(r.ID)
		if err != nil {
			return err
		}
		v.m.Each(func(_ uint64, e uint32) { t.unref(uint64(e - 1)) })
		v.m.Release()
		delete(t.vols, r.ID)
		delete(t.names, v.rec.Name)
		return nil
	case format.RecVolumeResize:
		v, err := t.writable(r.ID)
		if err != nil {
			return err
		}
		n := t.clustersFor(r.Size)
		if n > 1<<32 {
			return fmt.Errorf("volume %d resized to %d clusters", r.ID, n)
		}
		v.m.Resize(n, func(e uint32) {
			t.unref(uint64(e - 1))
			v.mapped--
		})
		v.rec.Size = r.Size
		return nil
	case format.RecMap:
		v, err := t.writable(r.ID)
		if err != nil {
			return err
		}
		if err := t.checkMap(v, r.LC, 1, r.Entry, 0); err != nil {
			return err
		}
		t.set(v, r.LC, r.Entry)
		return nil
	case format.RecMapRun:
		v, err := t.writable(r.Run.Volume)
		if err != nil {
			return err
		}
		run := r.Run
		if err := t.checkMap(v, run.LC, uint64(run.Count), run.PC+1, uint64(run.Count)); err != nil {
			return err
		}
		for i := range uint64(run.Count) {
			t.set(v, run.LC+i, run.PC+1+uint32(i))
		}
		return nil
	}
	return fmt.Errorf("record type %d", r.Type)
}

// checkMap checks a change of count entries from lc, the first to entry
// (a physical cluster plus one; None), the next ones to entry+1 on when
// run says so.
func (t *tables) checkMap(v *volTable, lc, count uint64, entry uint32, run uint64) error {
	if lc >= v.m.Clusters() || count > v.m.Clusters()-lc {
		return fmt.Errorf("volume %d: clusters %d+%d mapped past its %d", v.rec.ID, lc, count, v.m.Clusters())
	}
	if entry != clmap.None && uint64(entry-1)+max(run, 1) > t.clusters {
		return fmt.Errorf("volume %d: cluster %d mapped to %d, past the pool's %d", v.rec.ID, lc, entry-1, t.clusters)
	}
	return nil
}

// set changes one entry of v's map, counting references.
func (t *tables) set(v *volTable, lc uint64, e uint32) {
	old := v.m.Lookup(lc)
	if old == e {
		return
	}
	if e != clmap.None {
		t.ref(uint64(e - 1))
		v.mapped++
	}
	v.m.Set(lc, e)
	if old != clmap.None {
		t.unref(uint64(old - 1))
		v.mapped--
	}
}

// admit checks what every new volume needs of the tables, made live or
// loaded from a checkpoint: an ID past every earlier one (IDs are never
// reused), a name of its own, a map the 32-bit entries can hold.
func (t *tables) admit(rec *format.Volume) error {
	switch {
	case rec.ID < t.nextID:
		return fmt.Errorf("volume %d after volume %d: IDs are never reused", rec.ID, t.nextID-1)
	case t.names[rec.Name] != 0:
		return fmt.Errorf("volume %d: name %q taken by volume %d", rec.ID, rec.Name, t.names[rec.Name])
	case t.clustersFor(rec.Size) > 1<<32:
		return fmt.Errorf("volume %d: %d bytes", rec.ID, rec.Size)
	}
	return nil
}

// insert adds an admitted volume whose map shares base's pages (nil: an
// empty map), sized to the volume.
func (t *tables) insert(rec format.Volume, base *clmap.Map) *volTable {
	n := t.clustersFor(rec.Size)
	v := &volTable{rec: rec}
	if base == nil {
		v.m = clmap.New(n)
	} else if v.m = base.Snapshot(); v.m.Clusters() != n {
		v.m.Resize(n, nil)
	}
	t.vols[rec.ID], t.names[rec.Name], t.nextID = v, rec.ID, rec.ID+1
	return v
}

func (t *tables) addVolume(r *format.Record) error {
	rec := r.Volume
	if err := t.admit(&rec); err != nil {
		return err
	}
	if r.Type == format.RecVolumeCreate {
		t.insert(rec, nil)
		return nil
	}
	p, err := t.vol(rec.Parent)
	if err != nil {
		return err
	}
	switch {
	case r.Type == format.RecSnapshot && p.snapshot():
		return fmt.Errorf("snapshot %d of snapshot %d", rec.ID, p.rec.ID)
	case r.Type == format.RecSnapshot && rec.Size != p.rec.Size:
		return fmt.Errorf("snapshot %d of %d bytes, its volume %d of %d", rec.ID, rec.Size, p.rec.ID, p.rec.Size)
	case r.Type == format.RecClone && rec.Flags&format.VolumeThin == 0:
		return fmt.Errorf("clone %d not thin: it maps only what its snapshot does", rec.ID)
	case r.Type == format.RecClone && !p.snapshot():
		return fmt.Errorf("clone %d of volume %d, which is no snapshot", rec.ID, p.rec.ID)
	case rec.Size < p.rec.Size:
		return fmt.Errorf("clone %d of %d bytes, smaller than its snapshot %d", rec.ID, rec.Size, p.rec.ID)
	}
	v := t.insert(rec, p.m)
	v.m.Each(func(_ uint64, e uint32) { t.ref(uint64(e - 1)) })
	v.mapped = p.mapped
	return nil
}

func (t *tables) vol(id uint32) (*volTable, error) {
	v := t.vols[id]
	if v == nil {
		return nil, fmt.Errorf("no volume %d", id)
	}
	return v, nil
}

// writable returns a volume whose map may change: not a snapshot.
func (t *tables) writable(id uint32) (*volTable, error) {
	v, err := t.vol(id)
	if err == nil && v.snapshot() {
		err = fmt.Errorf("volume %d is a snapshot: its map is fixed", id)
	}
	return v, err
}

// ids returns the volume IDs in order: parents before what was made of
// them, since IDs only grow.
func (t *tables) ids() []uint32 {
	ids := make([]uint32, 0, len(t.vols))
	for id := range t.vols {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// check verifies the invariants the tables keep, from scratch: reference
// counts are the maps' pointers, free clusters are those with none
// (limbo: the clusters held back, referenced by no map and not free),
// thick volumes map every cluster (unless cutShort: the tables as a
// crash left them, before Open completes a thick volume it cut short),
// names and parents are consistent. It returns every fault found (nil:
// none).
func (t *tables) check(limbo map[uint32]bool, cutShort bool) []error {
	var errs []error
	count := make([]uint32, t.clusters)
	for _, id := range t.ids() {
		v := t.vols[id]
		var mapped uint64
		v.m.Each(func(lc uint64, e uint32) {
			mapped++
			if uint64(e-1) >= t.clusters {
				errs = append(errs, fmt.Errorf("volume %d: cluster %d mapped to %d, past the pool's %d", id, lc, e-1, t.clusters))
				return
			}
			count[e-1]++
		})
		if mapped != v.mapped {
			errs = append(errs, fmt.Errorf("volume %d: %d clusters mapped, %d counted", id, mapped, v.mapped))
		}
		if want := t.clustersFor(v.rec.Size); v.m.Clusters() != want {
			errs = append(errs, fmt.Errorf("volume %d: a map of %d clusters for %d bytes (%d)", id, v.m.Clusters(), v.rec.Size, want))
		}
		if !v.thin() && !v.snapshot() && mapped != v.m.Clusters() && !cutShort {
			errs = append(errs, fmt.Errorf("thick volume %d: %d of its %d clusters mapped", id, mapped, v.m.Clusters()))
		}
		if t.names[v.rec.Name] != id {
			errs = append(errs, fmt.Errorf("volume %d: its name %q is volume %d's", id, v.rec.Name, t.names[v.rec.Name]))
		}
		if id >= t.nextID {
			errs = append(errs, fmt.Errorf("volume %d: not below the next ID %d", id, t.nextID))
		}
	}
	if len(t.names) != len(t.vols) {
		errs = append(errs, fmt.Errorf("%d names for %d volumes", len(t.names), len(t.vols)))
	}
	var nfree uint64
	for pc := range t.clusters {
		refs := t.refs[pc].Load()
		if refs != count[pc] {
			errs = append(errs, fmt.Errorf("cluster %d: %d references counted, %d maps point at it", pc, refs, count[pc]))
		}
		free := t.isFree(pc)
		if free {
			nfree++
		}
		switch {
		case free && count[pc] > 0:
			errs = append(errs, fmt.Errorf("cluster %d: free, and mapped %d times", pc, count[pc]))
		case !free && count[pc] == 0 && !limbo[uint32(pc)]:
			errs = append(errs, fmt.Errorf("cluster %d: mapped by nothing, and not free: lost", pc))
		case limbo[uint32(pc)] && count[pc] > 0:
			errs = append(errs, fmt.Errorf("cluster %d: held back as freed, and mapped %d times", pc, count[pc]))
		}
	}
	if nfree != t.nfree {
		errs = append(errs, fmt.Errorf("%d free clusters, %d counted", nfree, t.nfree))
	}
	return errs
}
