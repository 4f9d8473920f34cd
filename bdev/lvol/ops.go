package lvol

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/lvol/clmap"
	"github.com/strata-storage/strata/bdev/lvol/format"
	"github.com/strata-storage/strata/reactor"
)

// ErrNoSpace reports a pool without the free clusters a change needs.
var ErrNoSpace = errors.New("lvol: not enough free clusters")

// ErrNotFound reports a volume the store does not have.
var ErrNotFound = errors.New("lvol: no such volume")

// ErrOpen reports a change that needs a volume's device closed.
var ErrOpen = errors.New("lvol: volume open")

// ErrMetadataFull reports a new volume, snapshot or clone the pool's
// metadata region has no room for.
var ErrMetadataFull = errors.New("lvol: the pool's metadata region is full")

// metaReserve is the part of a checkpoint half that new volumes, snapshots
// and clones may not take: room for the maps to grow as thin volumes
// fill, so that a checkpoint always fits (else the store faults).
const metaReserve = 4

// admitNew gives rec the next volume ID and checks it may join the
// tables: a valid record, a name of its own, room in the metadata.
// Metadata reactor only.
func (s *Store) admitNew(rec *format.Volume) error {
	rec.ID = s.t.nextID
	if err := rec.Check(); err != nil {
		return err
	}
	if err := s.t.admit(rec); err != nil {
		return err
	}
	return s.metaRoom(rec.Name)
}

// volumeItemBytes is what a volume record adds to a checkpoint.
const volumeItemBytes = format.RecordHead + format.VolumeSize

// metaGrowth bounds what applying rec adds to the tables' checkpoint: a
// volume item, or, for a change of a map, a new item in the map and in
// the differences of the snapshot based on it. Deletes and shrinks are
// taken as adding nothing; the next checkpoint measures again.
func metaGrowth(rec *format.Record) uint64 {
	switch rec.Type {
	case format.RecVolumeCreate, format.RecSnapshot, format.RecClone:
		return volumeItemBytes
	case format.RecMap, format.RecMapRun:
		return mapItemBound
	}
	return 0
}

// metaRoom refuses a new volume record when the tables' checkpoint,
// with it, would take more than (metaReserve-1)/metaReserve of a half of
// the metadata region. Most calls decide on Store.metaBound; near the
// limit the checkpoint is encoded to measure it exactly. Metadata
// reactor only.
func (s *Store) metaRoom(name string) error {
	limit := s.halfBlocks * format.MetaBlockSize / metaReserve * (metaReserve - 1)
	if s.metaBound+volumeItemBytes+format.MetaBlockSize <= limit {
		return nil
	}
	n, err := s.measureTables()
	if err != nil {
		return err
	}
	if n+format.MetaBlockSize > limit {
		return fmt.Errorf("%w: %q needs room in a checkpoint of %d bytes, %d allowed (%d volumes, snapshots and clones): delete some", ErrMetadataFull, name, n, limit, len(s.t.vols))
	}
	return nil
}

// measureTables encodes the tables as a checkpoint, to count its bytes:
// metaBound becomes exact.
func (s *Store) measureTables() (uint64, error) {
	if s.metaExact {
		return s.metaBound, nil
	}
	var n uint64
	err := s.writeTables(0, format.CheckpointHead{NextVolumeID: s.t.nextID}, func(format.Block) error {
		n += format.MetaBlockSize
		return nil
	})
	if err != nil {
		return 0, err
	}
	s.metaBound, s.metaExact = n, true
	return n, nil
}

// mapRoom says whether a fill may map a new cluster: the tables'
// checkpoint, with this map record and every other fill's in flight
// applied, must still fit a half of the metadata region (the part new
// volumes may not take is what this spends). When it would not, the
// write fails with StatusNoSpace, as on a pool out of clusters, and the
// store goes on: what frees metadata (an unmap, a delete) makes room
// again. Else the next checkpoint would outgrow its half and fault the
// store. Near the limit the tables are measured, once per change of
// them. Metadata reactor only.
func (s *Store) mapRoom() bool {
	limit := s.halfBlocks*format.MetaBlockSize - format.MetaBlockSize
	need := func() uint64 { return s.metaBound + mapItemBound*uint64(len(s.fills.pending)+1) }
	if need() <= limit {
		return true
	}
	if _, err := s.measureTables(); err != nil {
		return false
	}
	return need() <= limit
}

// mapItemBound bounds what one map record adds to a checkpoint.
const mapItemBound = 64

// VolumeSpec is what a new volume is made of.
type VolumeSpec struct {
	Name string
	Size uint64 // bytes, whole blocks of the pool's device
	Thin bool
	// UUID and NGUID identify the volume to hosts; zero draws random ones.
	UUID, NGUID bdev.UUID
}

// VolumeInfo describes a volume.
type VolumeInfo struct {
	ID          uint32
	Name        string
	UUID, NGUID bdev.UUID
	Serial      string
	Size        uint64
	Thin        bool
	Snapshot    bool
	Parent      string // the snapshot a clone is of, the volume a snapshot is of ("" none or gone)
	Created     time.Time
	// Allocated is the bytes of the clusters its map points at, shared
	// ones included.
	Allocated uint64
}

func (s *Store) info(v *volTable) VolumeInfo {
	vi := VolumeInfo{
		ID: v.rec.ID, Name: v.rec.Name, UUID: v.rec.UUID, NGUID: v.rec.NGUID, Serial: v.rec.Serial,
		Size: v.rec.Size, Thin: v.thin(), Snapshot: v.snapshot(),
		Created: time.Unix(0, v.rec.Created), Allocated: v.mapped * s.sb.ClusterSize,
	}
	if p := s.t.vols[v.rec.Parent]; p != nil {
		vi.Parent = p.rec.Name
	}
	return vi
}

// Stats is a pool's space.
type Stats struct {
	Capacity  uint64 // bytes of the data region's clusters
	Allocated uint64 // bytes of clusters not free (mapped, being filled or held back)
	// Committed is what the volumes could map if every one were full:
	// above Capacity, the thin volumes overcommit the pool.
	Committed uint64
	Volumes   int
}

// Stats returns the pool's space.
func (s *Store) Stats() Stats {
	var st Stats
	s.r.Call(func(*reactor.Reactor) error {
		st.Capacity = s.t.clusters * s.sb.ClusterSize
		st.Allocated = (s.t.clusters - s.t.nfree) * s.sb.ClusterSize
		for _, v := range s.t.vols {
			if !v.snapshot() {
				st.Committed += v.m.Clusters() * s.sb.ClusterSize
			}
		}
		st.Volumes = len(s.t.vols)
		return nil
	})
	return st
}

// Volumes returns every volume, in ID order.
func (s *Store) Volumes() []VolumeInfo {
	var out []VolumeInfo
	s.r.Call(func(*reactor.Reactor) error {
		for _, id := range s.t.ids() {
			out = append(out, s.info(s.t.vols[id]))
		}
		return nil
	})
	return out
}

// Volume returns the volume named name.
func (s *Store) Volume(name string) (VolumeInfo, error) {
	var vi VolumeInfo
	err := s.r.Call(func(*reactor.Reactor) error {
		v, err := s.byName(name)
		if err == nil {
			vi = s.info(v)
		}
		return err
	})
	return vi, err
}

func (s *Store) byName(name string) (*volTable, error) {
	if id := s.t.names[name]; id != 0 {
		return s.t.vols[id], nil
	}
	return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
}

// Check verifies every invariant of the tables from scratch (the base of
// `strata pool check`); clusters being filled or held back are accounted
// for. It returns every fault found.
func (s *Store) Check() []error {
	var errs []error
	s.r.Call(func(*reactor.Reactor) error {
		limbo := s.grace.limbo()
		for pc := range s.fills.allocated {
			limbo[pc] = true
		}
		errs = s.t.check(limbo, false)
		return nil
	})
	return errs
}

// CreateVolume makes a volume. A thick one has all its clusters mapped
// (and zeroed: a volume never shows another's old data) before it is
// returned; a thin one maps them on first write.
func (s *Store) CreateVolume(spec VolumeSpec) (VolumeInfo, error) {
	s.ctl.Lock()
	defer s.ctl.Unlock()
	if spec.Size == 0 || spec.Size%s.bs != 0 {
		return VolumeInfo{}, fmt.Errorf("lvol: volume %q: %d bytes, not whole %d-byte blocks", spec.Name, spec.Size, s.bs)
	}
	rec := format.Volume{
		Size: spec.Size, UUID: spec.UUID, NGUID: spec.NGUID,
		Created: time.Now().UnixNano(), Name: spec.Name,
	}
	if spec.Thin {
		rec.Flags |= format.VolumeThin
	}
	for _, u := range []*[16]byte{&rec.UUID, &rec.NGUID} {
		if *u == ([16]byte{}) {
			*u = bdev.NewUUID()
		}
	}
	rec.Serial = serial()
	var vi VolumeInfo
	err := s.run(func(done func(error)) {
		if err := s.admitNew(&rec); err != nil {
			done(err)
			return
		}
		if n := s.t.clustersFor(rec.Size); !spec.Thin && n > s.t.nfree {
			done(fmt.Errorf("%w: volume %q needs %d clusters, %d are free", ErrNoSpace, rec.Name, n, s.t.nfree))
			return
		}
		s.commit([]format.Record{{Type: format.RecVolumeCreate, Volume: rec}}, true, func(err error) {
			if err != nil || spec.Thin {
				s.created(rec.ID, &vi, err, done)
				return
			}
			s.mapThick(rec.ID, func(err error) {
				if err == nil {
					s.created(rec.ID, &vi, nil, done)
					return
				}
				// Not whole: undone, its clusters back to the pool.
				s.commit([]format.Record{{Type: format.RecVolumeDelete, ID: rec.ID}}, true, func(derr error) {
					done(errors.Join(err, derr))
				})
			})
		})
	})
	return vi, err
}

func (s *Store) created(id uint32, vi *VolumeInfo, err error, done func(error)) {
	if err == nil {
		*vi = s.info(s.t.vols[id])
	}
	done(err)
}

// serial draws a volume's serial number: 20 hex digits.
func serial() string {
	var b [10]byte
	rand.Read(b[:])
	return fmt.Sprintf("%x", b)
}

// DeleteVolume removes a volume; its device must be closed. The clusters
// only it maps return to the pool (once no I/O can reach them); its
// snapshots stay, with what they map.
func (s *Store) DeleteVolume(name string) error {
	s.ctl.Lock()
	defer s.ctl.Unlock()
	return s.run(func(done func(error)) {
		v, err := s.byName(name)
		if err != nil {
			done(err)
			return
		}
		if s.isOpen(v.rec.ID) {
			done(fmt.Errorf("%w: %q", ErrOpen, name))
			return
		}
		s.commit([]format.Record{{Type: format.RecVolumeDelete, ID: v.rec.ID}}, true, done)
	})
}

func (s *Store) isOpen(id uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open[id] != nil
}

// ResizeVolume grows or shrinks a volume. A thick volume's new clusters
// are mapped and zeroed before the device sees its new size; a shrink
// cuts the device first. An open volume's I/O is quiesced around the
// change of its size.
func (s *Store) ResizeVolume(ctx context.Context, name string, size uint64) error {
	s.ctl.Lock()
	defer s.ctl.Unlock()
	if size == 0 || size%s.bs != 0 {
		return fmt.Errorf("lvol: resize %q to %d bytes, not whole %d-byte blocks", name, size, s.bs)
	}
	vi, err := s.Volume(name)
	if err != nil {
		return err
	}
	if vi.Snapshot {
		return fmt.Errorf("lvol: %q is a snapshot: its size is fixed", name)
	}
	if size == vi.Size {
		return nil
	}
	s.mu.Lock()
	dev := s.open[vi.ID]
	s.mu.Unlock()
	if dev != nil && size < vi.Size {
		// No I/O may go past the new end while the tail goes.
		if err := dev.Quiesce(ctx); err != nil {
			return err
		}
		defer dev.Resume()
		dev.SetBlocks(size / s.bs)
	}
	err = s.run(func(done func(error)) {
		v := s.t.vols[vi.ID]
		if v == nil {
			done(fmt.Errorf("%w: %q", ErrNotFound, name))
			return
		}
		if grow := s.t.clustersFor(size) - min(s.t.clustersFor(size), v.m.Clusters()); !v.thin() && grow > s.t.nfree {
			done(fmt.Errorf("%w: growing %q needs %d clusters, %d are free", ErrNoSpace, name, grow, s.t.nfree))
			return
		}
		resize := func(err error) {
			if err != nil {
				done(err)
				return
			}
			s.commit([]format.Record{{Type: format.RecVolumeResize, ID: vi.ID, Size: size}}, true, func(err error) {
				if err != nil || v.thin() {
					done(err)
					return
				}
				s.mapThick(vi.ID, done)
			})
		}
		if tail := size % s.sb.ClusterSize; size < vi.Size && tail != 0 {
			// The cut cluster's bytes past the new end zeroed first
			// (zeroTail), durable before the record.
			s.zeroTail(vi.ID, size/s.sb.ClusterSize, tail/s.bs, func(err error) {
				if err != nil {
					resize(err)
					return
				}
				s.fl.flush(resize)
			})
			return
		}
		resize(nil)
	})
	if err != nil {
		if dev != nil && size < vi.Size {
			dev.SetBlocks(vi.Size / s.bs) // the tail stays: the change did not happen
		}
		return err
	}
	if dev != nil && size > vi.Size {
		if err := dev.Quiesce(ctx); err != nil {
			return err
		}
		dev.SetBlocks(size / s.bs)
		dev.Resume()
	}
	if dev != nil {
		dev.Notify(bdev.Event{Kind: bdev.EventResized})
	}
	return nil
}

// thickFill maps a thick volume's unmapped clusters, a run of free
// clusters at a time: zeroed, flushed, then the run's record. Metadata
// reactor only.
type thickFill struct {
	s    *Store
	id   uint32
	lc   uint64 // where the search for unmapped clusters goes on
	pc   uint32
	n    uint64 // the run being zeroed
	next uint64 // its zeroing's progress, in clusters
	req  bdev.Request
	done func(error)
}

// zeroPiece is the most clusters one Write Zeroes covers (its block
// count is 32-bit).
const zeroPiece = 1 << 30

func (s *Store) mapThick(id uint32, done func(error)) {
	f := &thickFill{s: s, id: id, done: done}
	f.req.Callback = f.zeroed
	f.step()
}

// step finds the next run of unmapped clusters and allocates for it.
func (f *thickFill) step() {
	s := f.s
	v := s.t.vols[f.id]
	if v == nil {
		f.done(fmt.Errorf("%w: volume %d", ErrNotFound, f.id))
		return
	}
	for f.lc < v.m.Clusters() && v.m.Lookup(f.lc) != clmap.None {
		f.lc++
	}
	if f.lc == v.m.Clusters() {
		f.done(nil)
		return
	}
	end := f.lc
	for end < v.m.Clusters() && v.m.Lookup(end) == clmap.None && end-f.lc < 1<<20 {
		end++
	}
	pc, n := s.t.allocRun(end - f.lc)
	if n == 0 {
		f.done(fmt.Errorf("%w: thick volume %d has %d clusters to map", ErrNoSpace, f.id, end-f.lc))
		return
	}
	f.pc, f.n, f.next = pc, n, 0
	f.zero()
}

func (f *thickFill) zero() {
	s := f.s
	if f.next == f.n {
		s.fl.flush(f.flushed)
		return
	}
	k := min(f.n-f.next, max(zeroPiece/s.sb.ClusterSize, 1))
	f.req.Op, f.req.FUA = bdev.OpWriteZeroes, false
	f.req.LBA = s.dataLBA + (uint64(f.pc)+f.next)*s.csBlocks
	f.req.Blocks = uint32(k * s.csBlocks)
	f.next += k
	s.ch.Submit(&f.req)
}

func (f *thickFill) zeroed(req *bdev.Request) {
	if err := req.Status.Err(); err != nil {
		f.fail(fmt.Errorf("lvol: zeroing clusters %d+%d: %w", f.pc, f.n, err))
		return
	}
	f.zero()
}

func (f *thickFill) fail(err error) {
	for i := range f.n {
		f.s.t.release(f.pc + uint32(i))
	}
	f.done(err)
}

func (f *thickFill) flushed(err error) {
	if err != nil {
		f.fail(err)
		return
	}
	run := format.MapRun{Volume: f.id, LC: f.lc, PC: f.pc, Count: uint32(f.n)}
	f.s.commit([]format.Record{{Type: format.RecMapRun, Run: run}}, true, func(err error) {
		if err != nil {
			f.done(err)
			return
		}
		f.lc += f.n
		f.step()
	})
}
