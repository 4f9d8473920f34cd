package lvol

import (
	"errors"
	"fmt"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/lvol/clmap"
	"github.com/strata-storage/strata/bdev/lvol/format"
	"github.com/strata-storage/strata/internal/iomem"
	"github.com/strata-storage/strata/reactor"
)

// A fill is the part of a request, within one cluster, that the tables
// must answer for: a write into an unmapped cluster of a thin volume, or
// into a cluster another map shares (copy on write), Write Zeroes into a
// shared cluster, a whole cluster of a thin volume unmapped. The
// request's reactor hands it to the metadata reactor, which looks again
// (another fill may have mapped the cluster meanwhile) and, for a new
// cluster:
//
//  1. allocates one (none free: the write waits while clusters are held
//     back by a grace period, else fails with StatusNoSpace);
//  2. writes all its bytes: the request's data where it covers the
//     cluster, and zeroes, or the old cluster's bytes for copy on
//     write, elsewhere: a mapped cluster never shows another volume's
//     old data;
//  3. flushes the pool (with a volatile cache), so that no crash can keep
//     the record without the bytes;
//  4. appends the mapping record (FUA with the request's FUA) and once it
//     is written applies it: the map points at the cluster, and later
//     writes go there in place;
//
// then hands the answer back to the request's reactor. Fills of the same
// cluster wait behind the one in flight (pending), then look again.
type fill struct {
	b *backend // the request's; nil for the store's own (internal)
	// internal answers a fill the store made itself, on the metadata
	// reactor.
	internal func(bdev.Status)
	s        *Store
	child    *bdev.Request
	vol      uint32
	lc       uint64
	off      uint64 // the part of the cluster, in blocks
	n        uint64
	data     []byte // nil: zeroes
	unmap    bool   // the whole cluster leaves a thin volume's map
	fua      bool
	back     bool // on its way back to the request's reactor
	st       bdev.Status

	// The metadata reactor's.
	key     clusterKey
	pc      uint32 // the new cluster
	alloced bool
	old     uint32 // the entry it replaces
	pos     uint64 // how far the new cluster's bytes are written, in blocks
	copying bool   // a copy piece read, its write next
	piece   uint64 // the copy piece's blocks
	cow     *iomem.Region
	req     bdev.Request
	waiters []*fill
}

type clusterKey struct {
	vol uint32
	lc  uint64
}

// cowBytes is the copy buffer of a fill: copy on write moves the old
// cluster's bytes through it a piece at a time.
const cowBytes = 1 << 20

// fillState is the metadata reactor's bookkeeping of fills.
type fillState struct {
	pending   map[clusterKey]*fill
	allocated map[uint32]bool // clusters allocated for fills not yet mapped
	spaceWait []*fill
	bufs      []*iomem.Region // free copy buffers
	all       []*iomem.Region
	inflight  int
}

func (fs *fillState) init() {
	fs.pending = make(map[clusterKey]*fill)
	fs.allocated = make(map[uint32]bool)
}

func (fs *fillState) busy() bool { return fs.inflight > 0 }

func (fs *fillState) close() error {
	var errs []error
	for _, r := range fs.all {
		errs = append(errs, r.Unmap())
	}
	fs.all, fs.bufs = nil, nil
	return errors.Join(errs...)
}

// toMeta hands blocks [off, off+n) of cluster lc (data: their bytes, nil
// for zeroes) to the metadata reactor as a child of req.
func (b *backend) toMeta(req *bdev.Request, p uint64, lc, off, n uint64, data []byte, unmap bool) {
	c := b.child(req, p)
	var f *fill
	if k := len(b.fills); k > 0 {
		f = b.fills[k-1]
		b.fills = b.fills[:k-1]
	} else {
		f = &fill{b: b, s: b.s}
		f.req.Callback = f.ioDone
	}
	f.child, f.vol, f.lc, f.off, f.n, f.data, f.unmap, f.fua = c, b.v.id, lc, off, n, data, unmap, req.FUA
	f.back, f.st = false, bdev.StatusOK
	if b.r == b.s.r {
		b.r.Defer(f)
		return
	}
	if err := b.s.r.Post(f); err != nil {
		f.back, f.st = true, bdev.StatusNotReady
		b.r.Defer(f)
	}
}

// Run is the fill's step on the reactor it was handed to.
func (f *fill) Run(*reactor.Reactor) {
	if f.back {
		b, c, st := f.b, f.child, f.st
		f.child, f.data = nil, nil
		b.fills = append(b.fills, f)
		b.children.Finish(c, st)
		return
	}
	f.s.fills.inflight++
	f.s.onFill(f)
}

// done answers a fill: back to its request's reactor.
func (s *Store) done(f *fill, st bdev.Status) {
	f.st, f.back = st, true
	s.fills.inflight--
	if f.internal != nil {
		cb := f.internal
		f.internal = nil
		cb(st)
		return
	}
	if f.b.r == s.r {
		s.r.Defer(f)
		return
	}
	f.b.r.Post(f) // a stopped reactor has no request left to answer
}

func (s *Store) onFill(f *fill) {
	if s.err != nil {
		s.done(f, bdev.StatusWriteFault)
		return
	}
	v := s.t.vols[f.vol]
	if v == nil || f.lc >= v.m.Clusters() {
		s.done(f, bdev.StatusNotReady)
		return
	}
	f.key = clusterKey{f.vol, f.lc}
	if p := s.fills.pending[f.key]; p != nil {
		p.waiters = append(p.waiters, f)
		return
	}
	e := v.m.Lookup(f.lc)
	switch {
	case f.unmap && e == clmap.None, !f.unmap && e == clmap.None && f.data == nil:
		s.done(f, bdev.StatusOK) // nothing there: zeroes already
	case f.unmap && s.t.refs[e-1].Load() > 1 && !s.mapRoom():
		// Unmapping a shared cluster adds a difference to a snapshot's
		// or clone's map in the checkpoint.
		s.done(f, bdev.StatusNoSpace)
	case f.unmap:
		s.fills.pending[f.key] = f
		s.commit([]format.Record{{Type: format.RecMap, ID: f.vol, LC: f.lc, Entry: clmap.None}}, f.fua, f.mapped)
	case e != clmap.None && s.t.refs[e-1].Load() == 1:
		// Mapped by a fill before it, or no longer shared: in place.
		f.old, f.pos = e, f.off
		f.submit(e-1, f.n, f.data)
	default:
		if !s.mapRoom() {
			s.done(f, bdev.StatusNoSpace) // metadata full (mapRoom)
			return
		}
		pc, ok := s.t.alloc()
		if !ok {
			if s.grace.holding() {
				s.fills.spaceWait = append(s.fills.spaceWait, f)
				return
			}
			s.done(f, bdev.StatusNoSpace)
			return
		}
		s.fills.pending[f.key] = f
		s.fills.allocated[pc] = true
		f.pc, f.alloced, f.old, f.pos = pc, true, e, 0
		f.next()
	}
}

// submit writes n blocks (data, or zeroes when nil) at block f.pos of
// physical cluster pc.
func (f *fill) submit(pc uint32, n uint64, data []byte) {
	s := f.s
	f.req.Op, f.req.Buf, f.req.FUA = bdev.OpWrite, data, false
	if data == nil {
		f.req.Op = bdev.OpWriteZeroes
	}
	f.req.LBA, f.req.Blocks = s.dataLBA+uint64(pc)*s.csBlocks+f.pos, uint32(n)
	if !f.alloced {
		f.req.FUA = f.fua // in place: the request's own write
	}
	s.ch.Submit(&f.req)
}

// next writes the new cluster's next piece: zeroes or old bytes before
// the request's part, its data, zeroes or old bytes after; once all are
// written, the pool is flushed for the record.
func (f *fill) next() {
	s := f.s
	cs := s.csBlocks
	if f.pos == cs {
		s.fl.flush(f.flushed)
		return
	}
	if f.pos >= f.off && f.pos < f.off+f.n {
		f.submit(f.pc, f.off+f.n-f.pos, f.data)
		f.pos = f.off + f.n
		return
	}
	end := cs
	if f.pos < f.off {
		end = f.off
	}
	if f.old == clmap.None {
		f.submit(f.pc, end-f.pos, nil)
		f.pos = end
		return
	}
	// Copy on write: the old cluster's bytes, a buffer at a time.
	if f.cow == nil {
		if err := f.takeBuffer(); err != nil {
			f.fail(bdev.StatusInternal)
			return
		}
	}
	f.piece = min(end-f.pos, uint64(cowBytes)/s.bs)
	f.copying = true
	f.req.Op, f.req.FUA = bdev.OpRead, false
	f.req.LBA, f.req.Blocks = s.dataLBA+uint64(f.old-1)*cs+f.pos, uint32(f.piece)
	f.req.Buf = f.cow.Bytes()[:f.piece*s.bs]
	s.ch.Submit(&f.req)
}

func (f *fill) takeBuffer() error {
	fs := &f.s.fills
	if k := len(fs.bufs); k > 0 {
		f.cow = fs.bufs[k-1]
		fs.bufs = fs.bufs[:k-1]
		return nil
	}
	r, err := iomem.Map(cowBytes)
	if err != nil {
		return err
	}
	fs.all = append(fs.all, r)
	f.cow = r
	return nil
}

func (f *fill) putBuffer() {
	if f.cow != nil {
		f.s.fills.bufs = append(f.s.fills.bufs, f.cow)
		f.cow = nil
	}
}

// ioDone is the callback of every request a fill makes.
func (f *fill) ioDone(req *bdev.Request) {
	s := f.s
	if req.Status != bdev.StatusOK {
		if !f.alloced {
			s.done(f, req.Status)
			return
		}
		f.fail(req.Status)
		return
	}
	switch {
	case !f.alloced: // the write in place
		if f.fua && f.data != nil && s.dur.pending() {
			s.fl.flush(func(err error) { // durable.go
				if err != nil {
					s.done(f, bdev.StatusWriteFault)
					return
				}
				s.done(f, bdev.StatusOK)
			})
			return
		}
		s.done(f, bdev.StatusOK)
	case f.copying && req.Op == bdev.OpRead:
		f.submit(f.pc, f.piece, f.cow.Bytes()[:f.piece*s.bs])
	default:
		if f.copying {
			f.copying = false
			f.pos += f.piece
		}
		f.next()
	}
}

func (f *fill) flushed(err error) {
	f.putBuffer()
	if err != nil {
		f.fail(bdev.StatusWriteFault)
		return
	}
	f.s.commit([]format.Record{{Type: format.RecMap, ID: f.vol, LC: f.lc, Entry: f.pc + 1}}, f.fua, f.mapped)
}

// fail gives the new cluster back and answers the fill with st.
func (f *fill) fail(st bdev.Status) {
	s := f.s
	f.putBuffer()
	if f.alloced {
		delete(s.fills.allocated, f.pc)
		s.t.release(f.pc)
		f.alloced = false
	}
	f.finish(st)
}

// mapped is the callback of a fill's record: applied, or the store
// faulted.
func (f *fill) mapped(err error) {
	if err != nil {
		if f.alloced {
			// The record may be on the device: the cluster is not given
			// out again (the store is faulted anyway).
			delete(f.s.fills.allocated, f.pc)
			f.alloced = false
		}
		f.finish(bdev.StatusWriteFault)
		return
	}
	if f.alloced {
		delete(f.s.fills.allocated, f.pc)
		f.alloced = false
	}
	f.finish(bdev.StatusOK)
}

// finish answers a fill that was pending for its cluster and lets the
// fills behind it look again.
func (f *fill) finish(st bdev.Status) {
	s := f.s
	if s.fills.pending[f.key] == f {
		delete(s.fills.pending, f.key)
	}
	waiters := f.waiters
	f.waiters = nil
	s.done(f, st)
	for _, w := range waiters {
		s.onFill(w)
	}
}

// zeroTail zeroes blocks off to the end of volume id's cluster lc, as a
// fill: in place, or, when the cluster is shared, in a copy of it. A
// shrink that ends inside a cluster keeps every mapped cluster's bytes
// past the volume's end zero, so that growing again, or a larger clone
// of a snapshot, reads zeroes there. Metadata reactor only.
func (s *Store) zeroTail(id uint32, lc, off uint64, done func(error)) {
	f := &fill{s: s, vol: id, lc: lc, off: off, n: s.csBlocks - off}
	f.req.Callback = f.ioDone
	f.internal = func(st bdev.Status) {
		if err := st.Err(); err != nil {
			done(fmt.Errorf("lvol: zeroing volume %d's cluster %d past block %d: %w", id, lc, off, err))
			return
		}
		done(nil)
	}
	s.fills.inflight++
	s.onFill(f)
}

// spaceFreed lets the fills that waited for clusters try again.
func (s *Store) spaceFreed() {
	w := s.fills.spaceWait
	s.fills.spaceWait = nil
	for _, f := range w {
		s.onFill(f)
	}
}
