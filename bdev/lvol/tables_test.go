package lvol

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev/lvol/clmap"
	"github.com/strata-storage/strata/bdev/lvol/format"
)

const testCluster = 1 << 20

func testVol(id uint32, name string, size uint64, flags uint32, parent uint32) format.Volume {
	return format.Volume{ID: id, Name: name, Size: size, Flags: flags, Parent: parent, Serial: fmt.Sprintf("S%d", id)}
}

// tablesModel drives tables with random changes as the store would make
// them: allocation, then the record that maps what was allocated.
type tablesModel struct {
	t       *tables
	rng     *rand.Rand
	records []format.Record
}

func (m *tablesModel) apply(tb testing.TB, r format.Record) {
	require.NoError(tb, m.t.apply(&r), "%+v", r)
	m.records = append(m.records, r)
}

func (m *tablesModel) pick(filter func(*volTable) bool) *volTable {
	var vs []*volTable
	for _, id := range m.t.ids() {
		if v := m.t.vols[id]; filter(v) {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return nil
	}
	return vs[m.rng.IntN(len(vs))]
}

func (m *tablesModel) step(tb testing.TB) {
	t := m.t
	writable := func(v *volTable) bool { return !v.snapshot() }
	switch op := m.rng.IntN(10); {
	case op == 0 || len(t.vols) == 0:
		id := t.nextID
		thin := m.rng.IntN(3) > 0
		size := uint64(1+m.rng.IntN(40))*testCluster - uint64(m.rng.IntN(2))*4096
		flags := uint32(0)
		if thin {
			flags = format.VolumeThin
		}
		n := t.clustersFor(size)
		if !thin && t.nfree < n {
			return
		}
		m.apply(tb, format.Record{Type: format.RecVolumeCreate, Volume: testVol(id, fmt.Sprintf("v%d", id), size, flags, 0)})
		for lc := uint64(0); !thin && lc < n; {
			pc, got := t.allocRun(n - lc)
			require.NotZero(tb, got)
			m.apply(tb, format.Record{Type: format.RecMapRun, Run: format.MapRun{Volume: id, LC: lc, PC: pc, Count: uint32(got)}})
			lc += got
		}
	case op <= 4: // a write into a thin cluster, or copy on write
		v := m.pick(writable)
		if v == nil {
			return
		}
		lc := m.rng.Uint64N(v.m.Clusters())
		if e := v.m.Lookup(lc); e != clmap.None && t.refs[e-1].Load() == 1 {
			return // written in place: no change
		}
		pc, ok := t.alloc()
		if !ok {
			return
		}
		m.apply(tb, format.Record{Type: format.RecMap, ID: v.rec.ID, LC: lc, Entry: pc + 1})
	case op == 5: // unmap
		v := m.pick(func(v *volTable) bool { return writable(v) && v.thin() })
		if v != nil {
			m.apply(tb, format.Record{Type: format.RecMap, ID: v.rec.ID, LC: m.rng.Uint64N(v.m.Clusters())})
		}
	case op == 6:
		v := m.pick(writable)
		if v == nil {
			return
		}
		id := t.nextID
		m.apply(tb, format.Record{Type: format.RecSnapshot, Volume: testVol(id, fmt.Sprintf("s%d", id), v.rec.Size, format.VolumeSnapshot, v.rec.ID)})
	case op == 7:
		s := m.pick(func(v *volTable) bool { return v.snapshot() })
		if s == nil {
			return
		}
		id := t.nextID
		m.apply(tb, format.Record{Type: format.RecClone, Volume: testVol(id, fmt.Sprintf("c%d", id), s.rec.Size, format.VolumeThin, s.rec.ID)})
	case op == 8: // resize a thin volume
		v := m.pick(func(v *volTable) bool { return writable(v) && v.thin() })
		if v != nil {
			m.apply(tb, format.Record{Type: format.RecVolumeResize, ID: v.rec.ID, Size: uint64(1+m.rng.IntN(40)) * testCluster})
		}
	case op == 9:
		if v := m.pick(func(*volTable) bool { return true }); v != nil {
			m.apply(tb, format.Record{Type: format.RecVolumeDelete, ID: v.rec.ID})
		}
	}
}

// checkpointOf writes t's checkpoint into memory blocks.
func checkpointOf(tb testing.TB, t *tables, pool [16]byte, head format.CheckpointHead) []format.Block {
	var blocks []format.Block
	w, err := format.NewCheckpointWriter(pool, 100, head, func(b format.Block) error {
		blocks = append(blocks, append(format.Block(nil), b...))
		return nil
	})
	require.NoError(tb, err)
	require.NoError(tb, t.writeCheckpoint(w))
	require.NoError(tb, w.Close())
	return blocks
}

func loadFrom(tb testing.TB, blocks []format.Block, pool [16]byte, clusters uint64) (*tables, format.CheckpointHead) {
	t, head, seq, err := loadTables(func(i uint64) (format.Block, error) {
		if i >= uint64(len(blocks)) {
			return make(format.Block, format.MetaBlockSize), nil
		}
		return blocks[i], nil
	}, uint64(len(blocks))+1, pool, 0, testCluster, clusters)
	require.NoError(tb, err)
	require.EqualValues(tb, 100, seq)
	return t, head
}

// The tables as a state machine: random changes keep every invariant,
// a checkpoint loads back to the same tables at any point, and the
// records after a checkpoint replayed over it give the same tables as
// the live ones: what a store opened after a crash relies on.
func TestTablesCheckpointAndReplay(t *testing.T) {
	pool := [16]byte{1, 2, 3}
	const clusters = 300
	for seed := range uint64(4) {
		m := &tablesModel{t: newTables(testCluster, clusters), rng: rand.New(rand.NewPCG(seed, 1))}
		var ckpt []format.Block
		var ckptAt int
		for step := range 400 {
			m.step(t)
			require.Empty(t, m.t.check(nil, false), "seed %d step %d", seed, step)
			if step%97 == 0 {
				ckpt, ckptAt = checkpointOf(t, m.t, pool, format.CheckpointHead{JournalPos: 5, JournalSeq: 9, NextVolumeID: m.t.nextID}), len(m.records)
				got, head := loadFrom(t, ckpt, pool, clusters)
				require.Equal(t, format.CheckpointHead{JournalPos: 5, JournalSeq: 9, NextVolumeID: m.t.nextID}, head)
				requireSameTables(t, m.t, got, "seed %d step %d: the checkpoint loads back", seed, step)
				require.Empty(t, got.check(nil, false))
			}
		}
		replayed, _ := loadFrom(t, ckpt, pool, clusters)
		for _, r := range m.records[ckptAt:] {
			require.NoError(t, replayed.apply(&r))
		}
		requireSameTables(t, m.t, replayed, "seed %d: checkpoint plus replay is the live tables", seed)
	}
}

// A chain of snapshots checkpoints as differences and loads back sharing
// its pages: memory and checkpoint size follow what changed, not the
// chain's length times the volume.
func TestSnapshotChainCheckpointsAsDifferences(t *testing.T) {
	const clusters = 50 * clmap.PageEntries
	tb := newTables(testCluster, clusters)
	apply := func(r format.Record) { require.NoError(t, tb.apply(&r)) }
	apply(format.Record{Type: format.RecVolumeCreate, Volume: testVol(1, "v", 20*clmap.PageEntries*testCluster, 0, 0)})
	apply(format.Record{Type: format.RecMapRun, Run: format.MapRun{Volume: 1, PC: 0, Count: 20 * clmap.PageEntries}})
	for i := range uint32(100) {
		id := tb.nextID
		apply(format.Record{Type: format.RecSnapshot, Volume: testVol(id, fmt.Sprintf("s%d", i), 20*clmap.PageEntries*testCluster, format.VolumeSnapshot, 1)})
		pc, ok := tb.alloc()
		require.True(t, ok)
		apply(format.Record{Type: format.RecMap, ID: 1, LC: uint64(i) * 7, Entry: pc + 1})
	}
	require.Empty(t, tb.check(nil, false))
	blocks := checkpointOf(t, tb, [16]byte{9}, format.CheckpointHead{NextVolumeID: tb.nextID})
	// The volume's 20480 entries are one run; each snapshot's difference
	// from the volume is the few entries changed since it was taken.
	require.Less(t, len(blocks), 20, "checkpoint blocks")
	got, _ := loadFrom(t, blocks, [16]byte{9}, clusters)
	requireSameTables(t, tb, got)
	var pages int
	for _, v := range got.vols {
		p, shared := v.m.Pages()
		pages += p - shared
	}
	require.Less(t, pages, 150, "pages not shared across 101 maps of 20 pages")
}

// Records that do not fit the tables are refused and change nothing.
func TestTablesRefuseBadRecords(t *testing.T) {
	tb := newTables(testCluster, 10)
	ok := func(r format.Record) { require.NoError(t, tb.apply(&r)) }
	ok(format.Record{Type: format.RecVolumeCreate, Volume: testVol(1, "a", 4*testCluster, format.VolumeThin, 0)})
	ok(format.Record{Type: format.RecSnapshot, Volume: testVol(2, "s", 4*testCluster, format.VolumeSnapshot, 1)})
	before := newTables(testCluster, 10)
	for _, r := range []format.Record{
		{Type: format.RecVolumeCreate, Volume: testVol(1, "a", 4*testCluster, format.VolumeThin, 0)},
		{Type: format.RecSnapshot, Volume: testVol(2, "s", 4*testCluster, format.VolumeSnapshot, 1)},
	} {
		require.NoError(t, before.apply(&r))
	}
	for name, r := range map[string]format.Record{
		"reused ID":         {Type: format.RecVolumeCreate, Volume: testVol(1, "b", testCluster, 0, 0)},
		"taken name":        {Type: format.RecVolumeCreate, Volume: testVol(3, "a", testCluster, 0, 0)},
		"map past volume":   {Type: format.RecMap, ID: 1, LC: 4, Entry: 1},
		"map past pool":     {Type: format.RecMap, ID: 1, LC: 0, Entry: 11},
		"run past pool":     {Type: format.RecMapRun, Run: format.MapRun{Volume: 1, LC: 0, PC: 8, Count: 3}},
		"map of a snapshot": {Type: format.RecMap, ID: 2, LC: 0, Entry: 1},
		"resize a snapshot": {Type: format.RecVolumeResize, ID: 2, Size: testCluster},
		"no such volume":    {Type: format.RecVolumeDelete, ID: 7},
		"snapshot of snap":  {Type: format.RecSnapshot, Volume: testVol(3, "ss", 4*testCluster, format.VolumeSnapshot, 2)},
		"clone of a volume": {Type: format.RecClone, Volume: testVol(3, "c", 4*testCluster, format.VolumeThin, 1)},
		"thick clone":       {Type: format.RecClone, Volume: testVol(3, "c", 4*testCluster, 0, 2)},
		"clone too small":   {Type: format.RecClone, Volume: testVol(3, "c", testCluster, format.VolumeThin, 2)},
		"snapshot resized":  {Type: format.RecSnapshot, Volume: testVol(3, "s2", 5*testCluster, format.VolumeSnapshot, 1)},
		"unknown record":    {Type: 99},
	} {
		require.Error(t, tb.apply(&r), name)
		requireSameTables(t, before, tb, name)
	}
}

// Allocation is next fit and runs stop at the first cluster in use.
func TestAllocation(t *testing.T) {
	tb := newTables(testCluster, 130)
	pc, n := tb.allocRun(70)
	require.EqualValues(t, 0, pc)
	require.EqualValues(t, 70, n)
	pc, n = tb.allocRun(100)
	require.EqualValues(t, 70, pc)
	require.EqualValues(t, 60, n, "to the pool's end")
	tb.release(3)
	tb.release(4)
	tb.release(100)
	pc, n = tb.allocRun(5)
	require.EqualValues(t, 3, pc, "wraps round to the first free")
	require.EqualValues(t, 2, n)
	pc, ok := tb.alloc()
	require.True(t, ok)
	require.EqualValues(t, 100, pc)
	_, ok = tb.alloc()
	require.False(t, ok, "full")
	require.Zero(t, tb.nfree)
}

// requireSameTables compares two tables and names the first difference
// (require.Equal's diff of a large state takes minutes).
func requireSameTables(tb testing.TB, want, got *tables, msg ...any) {
	tb.Helper()
	require.Equal(tb, len(want.vols), len(got.vols), msg...)
	for id, w := range want.vols {
		g := got.vols[id]
		require.NotNil(tb, g, "volume %d: %v", id, msg)
		require.Equal(tb, w.rec, g.rec, msg...)
		require.Equal(tb, w.mapped, g.mapped, "volume %d's mapped clusters: %v", id, msg)
		require.Equal(tb, w.m.Clusters(), g.m.Clusters(), "volume %d's clusters: %v", id, msg)
		for lc := range w.m.Clusters() {
			if w.m.Lookup(lc) != g.m.Lookup(lc) {
				require.Equal(tb, w.m.Lookup(lc), g.m.Lookup(lc), "volume %d cluster %d: %v", id, lc, msg)
			}
		}
	}
	for pc := range want.refs {
		if want.refs[pc].Load() != got.refs[pc].Load() {
			require.Equal(tb, want.refs[pc].Load(), got.refs[pc].Load(), "cluster %d's references: %v", pc, msg)
		}
	}
	require.Equal(tb, want.free, got.free, msg...)
	require.Equal(tb, want.nfree, got.nfree, msg...)
	require.Equal(tb, want.nextID, got.nextID, msg...)
}

// FuzzApply: records from a journal, whatever their bytes, never panic
// the tables, and those the tables accept keep every invariant.
func FuzzApply(f *testing.F) {
	var seed []byte
	for _, r := range []format.Record{
		{Type: format.RecVolumeCreate, Volume: testVol(1, "a", 4*testCluster, format.VolumeThin, 0)},
		{Type: format.RecMap, ID: 1, LC: 2, Entry: 3},
		{Type: format.RecSnapshot, Volume: testVol(2, "s", 4*testCluster, format.VolumeSnapshot, 1)},
		{Type: format.RecClone, Volume: testVol(3, "c", 5*testCluster, format.VolumeThin, 2)},
		{Type: format.RecMapRun, Run: format.MapRun{Volume: 3, LC: 1, PC: 4, Count: 3}},
		{Type: format.RecVolumeResize, ID: 3, Size: testCluster},
		{Type: format.RecVolumeDelete, ID: 1},
	} {
		seed, _ = format.AppendRecord(seed, r.Type, r.Encode())
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, payload []byte) {
		tb := newTables(testCluster, 16)
		_ = format.Records(payload, 0, func(typ format.RecordType, body []byte) bool {
			r, err := format.DecodeRecord(typ, body)
			if err != nil {
				return true
			}
			if tb.apply(&r) == nil {
				// A thick volume between its record and its runs is
				// what Open completes: cut short, not a fault.
				if errs := tb.check(nil, true); len(errs) > 0 {
					t.Fatalf("after %+v: %v", r, errs)
				}
			}
			return true
		})
	})
}
