package lvol

import (
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/lvol/clmap"
	"github.com/strata-storage/strata/reactor"
)

// Product is the Info.Product of volumes.
const Product = "lvol"

// Volume is a volume of the store as a block device.
//
// Its I/O path, on every reactor: each cluster a request spans is looked
// up in the volume's map (atomic loads, no lock). A read of a mapped
// cluster, and a write, Write Zeroes or Unmap into a cluster only this
// map points at (reference count 1), go to the pool device in place, as
// children of the request, physically adjacent clusters in one child.
// A read of an unmapped cluster is zeroes. Anything else (a thin
// volume's first write into a cluster, copy on write of a shared one, a
// whole cluster unmapped) goes to the metadata reactor (fill.go), which
// answers for that part.
type Volume struct {
	bdev.Base
	s        *Store
	id       uint32
	m        *clmap.Map
	thin     bool
	readOnly bool
}

// OpenVolume returns the volume named name as a device (one at a time per
// volume); Close it before the volume is deleted or the store closed.
func (s *Store) OpenVolume(name string) (*Volume, error) {
	var dev *Volume
	err := s.r.Call(func(*reactor.Reactor) error {
		v, err := s.byName(name)
		if err != nil {
			return err
		}
		dev = &Volume{
			Base: bdev.NewBase(bdev.Info{
				Name: name, Product: Product, UUID: v.rec.UUID,
				BlockSize: s.sb.BlockSize, Blocks: v.rec.Size / s.bs,
				BufAlign: s.ch.Info().BufAlign, VolatileCache: s.ch.Info().VolatileCache,
			}),
			s: s, id: v.rec.ID, m: v.m, thin: v.thin(), readOnly: v.snapshot(),
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[dev.id] != nil {
		return nil, fmt.Errorf("%w: %q", ErrOpen, name)
	}
	s.open[dev.id] = dev
	return dev, nil
}

// Close releases the device; its channels must be closed first.
func (v *Volume) Close() error {
	if n := v.OpenChannels(); n > 0 {
		return fmt.Errorf("lvol %s: %d channels still open", v.Info().Name, n)
	}
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	if v.s.open[v.id] == v {
		delete(v.s.open, v.id)
	}
	return nil
}

// OpenBackend opens a channel of the pool on r. Called on r.
func (v *Volume) OpenBackend(r *reactor.Reactor) (bdev.Backend, error) {
	ch, err := bdev.OpenOnReactor(v.s.dev, r)
	if err != nil {
		return nil, err
	}
	b := &backend{v: v, s: v.s, ch: ch, r: r, refs: v.s.t.refs}
	b.children.OnDone = b.childDone
	v.s.mu.Lock()
	v.s.backends = append(v.s.backends, b)
	v.s.mu.Unlock()
	return b, nil
}

// backend is one reactor's channel to a volume. Reactor-owned.
type backend struct {
	v        *Volume
	s        *Store
	ch       *bdev.Channel // the pool's channel on this reactor
	r        *reactor.Reactor
	refs     []atomic.Uint32
	got      int // children got in the Submit running
	children bdev.Children
	// inflight counts the children of each grace epoch's parity, and
	// drain waits for one to reach 0 (grace.go).
	inflight [2]int
	drain    [2][]func()
	fills    []*fill // free
	closed   bool
}

func (b *backend) Submit(req *bdev.Request) {
	p := b.s.epoch.Load() & 1 // before any lookup: grace.go
	if req.Op == bdev.OpFlush {
		b.flush(req, p)
		return
	}
	if b.v.readOnly && req.Op != bdev.OpRead {
		req.Status = bdev.StatusInvalidRequest
		b.r.Defer(req)
		return
	}
	s := b.s
	bs := s.bs
	b.got = 0
	inPlaceFUA := false
	var last *bdev.Request // the child being gathered, not yet submitted
	var lastEnd uint64     // its end on the pool, in blocks
	var lastBuf uint64     // where its data starts in req.Buf, in blocks
	submitLast := func() {
		if last != nil {
			b.ch.Submit(last)
			last = nil
		}
	}
	lba, left, bufOff := req.LBA, uint64(req.Blocks), uint64(0)
	for left > 0 {
		lc, off := lba/s.csBlocks, lba%s.csBlocks
		n := min(left, s.csBlocks-off)
		var seg []byte
		if req.Op == bdev.OpRead || req.Op == bdev.OpWrite {
			seg = req.Buf[bufOff*bs : (bufOff+n)*bs]
		}
		e := b.v.m.Lookup(lc)
		inPlace := false
		switch req.Op {
		case bdev.OpRead:
			if e == clmap.None {
				clear(seg)
			} else {
				inPlace = true
			}
		case bdev.OpWrite:
			if e != clmap.None && b.refs[e-1].Load() == 1 {
				inPlace = true
			} else {
				submitLast()
				b.toMeta(req, p, lc, off, n, seg, false)
			}
		default: // Write Zeroes, Unmap
			whole := off == 0 && n == s.csBlocks
			switch {
			case e == clmap.None:
			case b.v.thin && whole:
				submitLast()
				b.toMeta(req, p, lc, 0, n, nil, true)
			case b.refs[e-1].Load() == 1:
				inPlace = true
			default:
				submitLast()
				b.toMeta(req, p, lc, off, n, nil, false)
			}
		}
		if inPlace {
			inPlaceFUA = inPlaceFUA || req.FUA && req.Op == bdev.OpWrite
			at := s.dataLBA + uint64(e-1)*s.csBlocks + off
			// Gather only what is adjacent both on the pool and in the
			// request: an unmapped cluster between two adjacent physical
			// ones breaks the run.
			if last != nil && lastEnd == at && lastBuf+uint64(last.Blocks) == bufOff && uint64(last.Blocks)+n <= 1<<31 {
				last.Blocks += uint32(n)
				if seg != nil {
					last.Buf = req.Buf[lastBuf*bs : (bufOff+n)*bs]
				}
			} else {
				submitLast()
				last = b.child(req, p)
				last.Op, last.LBA, last.Blocks, last.Buf, last.FUA = req.Op, at, uint32(n), seg, req.FUA
				lastBuf = bufOff
			}
			lastEnd = at + n
		}
		lba, left, bufOff = lba+n, left-n, bufOff+n
	}
	submitLast()
	if inPlaceFUA && s.dur.pending() {
		b.flush(req, p) // durable.go
	}
	if b.got == 0 {
		req.Status = bdev.StatusOK // all zeroes, or nothing to unmap
		b.r.Defer(req)
	}
}

// flush adds a flush of the pool to req. Its Tag carries, above the
// epoch parity, the journal records it makes durable.
func (b *backend) flush(req *bdev.Request, p uint64) {
	c := b.child(req, p)
	c.Op, c.LBA = bdev.OpFlush, 0
	c.Tag |= b.s.dur.snapshot() << 1
	b.ch.Submit(c)
}

// child returns a child of req counted in epoch parity p.
func (b *backend) child(req *bdev.Request, p uint64) *bdev.Request {
	c := b.children.Get(req)
	c.Tag = p
	b.inflight[p]++
	b.got++
	return c
}

// childDone counts a finished child out of its epoch and tells a grace
// period waiting for the epoch to drain.
func (b *backend) childDone(c *bdev.Request) {
	p := c.Tag & 1
	if c.Op == bdev.OpFlush && c.Status == bdev.StatusOK {
		b.s.dur.covered(c.Tag >> 1)
	}
	if b.inflight[p]--; b.inflight[p] == 0 && len(b.drain[p]) > 0 {
		waiters := b.drain[p]
		b.drain[p] = nil
		for _, w := range waiters {
			w()
		}
	}
}

// Close closes the pool's channel; no request is in flight.
func (b *backend) Close() error {
	b.closed = true
	s := b.s
	s.mu.Lock()
	if i := slices.Index(s.backends, b); i >= 0 {
		s.backends = slices.Delete(s.backends, i, i+1)
	}
	s.mu.Unlock()
	return b.ch.Close()
}
