package bdevtest

import (
	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/reactor"
)

// Split is a layer that passes every request down to its base cut into
// up to Pieces children over consecutive parts of its span (a flush: one
// child): the smallest device that splits and fans out requests, so the
// conformance suite runs over stacks (a split over a part over a file, a
// split over a split) and the child machinery is tested as layers use it.
type Split struct {
	bdev.Base
	base   bdev.Device
	pieces uint32
}

// NewSplit returns a layer named name over base cutting requests into up
// to pieces children.
func NewSplit(name string, base bdev.Device, pieces uint32) *Split {
	in := base.Info()
	in.Name, in.Product, in.UUID = name, "split", bdev.NewUUID()
	return &Split{Base: bdev.NewBase(in), base: base, pieces: max(pieces, 1)}
}

// OpenBackend opens the base's channel on r.
func (s *Split) OpenBackend(r *reactor.Reactor) (bdev.Backend, error) {
	ch, err := bdev.OpenOnReactor(s.base, r)
	if err != nil {
		return nil, err
	}
	return &splitBackend{ch: ch, pieces: s.pieces, bs: s.base.Info().BlockSize}, nil
}

// Close releases the layer; the base stays open.
func (s *Split) Close() error { return nil }

type splitBackend struct {
	ch       *bdev.Channel
	pieces   uint32
	bs       uint32
	children bdev.Children
}

func (b *splitBackend) Submit(req *bdev.Request) {
	if req.Op == bdev.OpFlush {
		c := b.children.Get(req)
		c.Op = bdev.OpFlush
		b.ch.Submit(c)
		return
	}
	n := min(b.pieces, req.Blocks)
	per := req.Blocks / n
	lba, left := req.LBA, req.Blocks
	for i := range n {
		blocks := per
		if i == n-1 {
			blocks = left
		}
		c := b.children.Get(req)
		c.Op, c.LBA, c.Blocks, c.FUA = req.Op, lba, blocks, req.FUA
		if req.Buf != nil {
			off := uint64(lba-req.LBA) * uint64(b.bs)
			c.Buf = req.Buf[off : off+uint64(blocks)*uint64(b.bs)]
		}
		lba += uint64(blocks)
		left -= blocks
		b.ch.Submit(c)
	}
}

func (b *splitBackend) Close() error { return b.ch.Close() }
