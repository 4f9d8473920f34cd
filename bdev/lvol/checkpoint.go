package lvol

import (
	"fmt"

	"github.com/strata-storage/strata/bdev/lvol/clmap"
	"github.com/strata-storage/strata/bdev/lvol/format"
)

// Map encoding in a checkpoint: runs of at least minRun consecutive
// clusters become run items; the rest go into lists, which carry gaps of
// up to maxGap unallocated entries rather than start a new item.
const (
	minRun = 4
	maxGap = 8
)

// mapBases says which map a volume's map is written as differences from
// in a checkpoint (format doc, "Checkpoints"), as the checkpoint's
// volumes come in ID order (parents first): a snapshot's base is the
// snapshot of the same volume before it, or else the volume; a clone's is
// its snapshot; a volume whose parent is gone has none. Snapshots of one
// volume are a series in time, each close to the one before; clones
// diverge from their snapshot each on its own.
type mapBases struct {
	lastSnap map[uint32]uint32 // by parent: its latest snapshot so far
}

// base returns the base of volume rec's map (nil: none) and counts rec
// as its parent's latest snapshot when it is one.
func (b *mapBases) base(t *tables, rec *format.Volume) *volTable {
	p := t.vols[rec.Parent]
	if p == nil {
		return nil
	}
	if rec.Flags&format.VolumeSnapshot == 0 {
		return p
	}
	if b.lastSnap == nil {
		b.lastSnap = make(map[uint32]uint32)
	}
	base := t.vols[b.lastSnap[p.rec.ID]]
	if base == nil {
		base = p
	}
	b.lastSnap[p.rec.ID] = rec.ID
	return base
}

// writeCheckpoint writes the tables through w, volumes in ID order (a
// volume's parent before it). A volume with a base (mapBases) has only
// its differences from the base's map written: a chain of snapshots
// costs what changed along it, and loading it back shares the unchanged
// pages again.
func (t *tables) writeCheckpoint(w *format.CheckpointWriter) error {
	var bases mapBases
	for _, id := range t.ids() {
		v := t.vols[id]
		if err := w.Volume(&v.rec); err != nil {
			return err
		}
		enc := mapEncoder{w: w, id: id}
		if b := bases.base(t, &v.rec); b != nil {
			enc.diff = true
			clmap.Diff(v.m, b.m, func(lc uint64, e, _ uint32) { enc.add(lc, e) })
		} else {
			v.m.Each(enc.add)
		}
		if err := enc.close(); err != nil {
			return err
		}
	}
	return nil
}

// mapEncoder turns entries, in logical order, into run and list items.
type mapEncoder struct {
	w  *format.CheckpointWriter
	id uint32
	// diff: the entries are differences from a base map, where a None
	// entry unmaps what the base has, so a list never pads a gap.
	diff bool
	// The run being gathered: n entries from lc, pc+1 on.
	runLC uint64
	runE  uint32
	runN  uint32
	// The list being gathered, from listLC.
	listLC uint64
	list   []uint32
	err    error
}

func (e *mapEncoder) add(lc uint64, entry uint32) {
	if e.runN > 0 && lc == e.runLC+uint64(e.runN) && entry != clmap.None && entry == e.runE+e.runN && e.runN < 1<<31 {
		e.runN++
		return
	}
	e.endRun()
	e.runLC, e.runE, e.runN = lc, entry, 1
}

// endRun moves the gathered run to a run item or the list.
func (e *mapEncoder) endRun() {
	if e.runN == 0 || e.err != nil {
		return
	}
	if e.runN >= minRun && e.runE != clmap.None {
		e.endList()
		e.err = e.w.Run(format.MapRun{Volume: e.id, LC: e.runLC, PC: e.runE - 1, Count: e.runN})
		e.runN = 0
		return
	}
	if len(e.list) > 0 {
		end := e.listLC + uint64(len(e.list))
		if e.runLC-end > maxGap || e.diff && e.runLC != end || len(e.list) >= format.MaxListEntries {
			e.endList()
		} else {
			for range e.runLC - end {
				e.list = append(e.list, clmap.None)
			}
		}
	}
	if len(e.list) == 0 {
		e.listLC = e.runLC
	}
	for i := range e.runN {
		entry := e.runE
		if entry != clmap.None {
			entry += i
		}
		e.list = append(e.list, entry)
	}
	e.runN = 0
}

func (e *mapEncoder) endList() {
	if len(e.list) == 0 || e.err != nil {
		return
	}
	e.err = e.w.List(e.id, e.listLC, e.list)
	e.list = e.list[:0]
}

func (e *mapEncoder) close() error {
	e.endRun()
	e.endList()
	return e.err
}

// loadTables builds tables from a checkpoint read through read (the
// half's blocks): the volumes and their maps, then the reference counts
// and free clusters they imply. It returns the tables and the
// checkpoint's head.
func loadTables(read func(i uint64) (format.Block, error), blocks uint64, pool [16]byte, off uint64, clusterSize, clusters uint64) (*tables, format.CheckpointHead, uint64, error) {
	t := newTables(clusterSize, clusters)
	var head format.CheckpointHead
	var bases mapBases
	set := func(id uint32, lc uint64, entries func(i uint64) uint32, n uint64) error {
		v := t.vols[id]
		if v == nil {
			return fmt.Errorf("a map item of volume %d, which no volume item came before", id)
		}
		if lc >= v.m.Clusters() || n > v.m.Clusters()-lc {
			return fmt.Errorf("volume %d: clusters %d+%d mapped past its %d", id, lc, n, v.m.Clusters())
		}
		for i := range n {
			e := entries(i)
			if e != clmap.None && uint64(e-1) >= clusters {
				return fmt.Errorf("volume %d: cluster %d mapped to %d, past the pool's %d", id, lc+i, e-1, clusters)
			}
			v.m.Set(lc+i, e)
		}
		return nil
	}
	seq, err := format.ReadCheckpoint(read, blocks, pool, off, format.CheckpointReader{
		Head: func(h format.CheckpointHead) error { head = h; return nil },
		Volume: func(rec format.Volume) error {
			if rec.ID >= head.NextVolumeID {
				return fmt.Errorf("volume %d, not below the next ID %d", rec.ID, head.NextVolumeID)
			}
			if err := t.admit(&rec); err != nil {
				return err
			}
			var base *clmap.Map
			if b := bases.base(t, &rec); b != nil {
				base = b.m
			}
			t.insert(rec, base)
			return nil
		},
		Run: func(r format.MapRun) error {
			return set(r.Volume, r.LC, func(i uint64) uint32 { return r.PC + 1 + uint32(i) }, uint64(r.Count))
		},
		List: func(id uint32, lc uint64, entries []uint32) error {
			return set(id, lc, func(i uint64) uint32 { return entries[i] }, uint64(len(entries)))
		},
	})
	if err != nil {
		return nil, head, 0, err
	}
	t.nextID = head.NextVolumeID
	for _, v := range t.vols {
		v.m.Each(func(_ uint64, e uint32) {
			t.ref(uint64(e - 1))
			v.mapped++
		})
	}
	return t, head, seq, nil
}
