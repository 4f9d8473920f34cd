package engine

import (
	"context"
	"fmt"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/part"
	"github.com/strata-storage/strata/engine/extent"
	"github.com/strata-storage/strata/reactor"
)

// KindExtent is a volume that is one contiguous extent of its pool, seen
// through a part device: the first free extent large enough, grown only
// in place. Its new space is unmapped before hosts see it, so that it
// reads back as zeroes and never shows what a deleted volume left.
const KindExtent = "extent"

type extentKind struct{}

func (extentKind) create(_ *state, p poolRecord, v *volumeRecord, blocks uint64) (poolRecord, error) {
	bs := p.BlockSize
	if blocks > p.Blocks {
		return p, errorf(ErrInvalid, "volume %q: size %d bytes is larger than pool %q (%d bytes)", v.Name, blocks*uint64(bs), p.Name, p.Blocks*uint64(bs))
	}
	ext, free, err := p.Free.Alloc(blocks)
	if err != nil {
		return p, errorf(ErrNoSpace, "pool %q has no free extent of %d bytes (largest free extent: %d bytes of %d free)", p.Name, blocks*uint64(bs), p.Free.Largest()*uint64(bs), p.Free.FreeBlocks()*uint64(bs))
	}
	v.Extent, p.Free = ext, free
	return p, nil
}

func (extentKind) grow(st *state, p poolRecord, v *volumeRecord, blocks uint64) (poolRecord, error) {
	more := blocks - v.Extent.Blocks
	free, err := p.Free.Take(extent.Extent{Start: v.Extent.End(), Blocks: more})
	if err != nil {
		return p, errorf(ErrNoSpace, "volume %q cannot grow in place by %d bytes: %s", v.Name, more*uint64(p.BlockSize), whyNoRoomAfter(st, *v, p))
	}
	v.Extent.Blocks, p.Free = blocks, free
	return p, nil
}

// whyNoRoomAfter says what keeps volume v from growing in place.
func whyNoRoomAfter(st *state, v volumeRecord, p poolRecord) string {
	end := v.Extent.End()
	bs := uint64(p.BlockSize)
	if end == p.Blocks {
		return fmt.Sprintf("it ends at the end of pool %q", p.Name)
	}
	if n := p.Free.FreeAfter(end); n > 0 {
		next := "the end of the pool"
		if o := volumeAt(st, p.Name, end+n); o != "" {
			next = "volume " + o
		}
		return fmt.Sprintf("only %d bytes are free after it, up to %s", n*bs, next)
	}
	return fmt.Sprintf("the space after it is used by volume %q", volumeAt(st, p.Name, end))
}

// volumeAt returns the extent volume of pool that starts at block.
func volumeAt(st *state, pool string, block uint64) string {
	for name, v := range st.volumes {
		if v.Pool == pool && v.Kind == KindExtent && v.Extent.Start == block {
			return name
		}
	}
	return ""
}

func (extentKind) free(p poolRecord, v volumeRecord) (poolRecord, error) {
	free, err := p.Free.Free(v.Extent, p.Blocks)
	if err != nil {
		return p, fmt.Errorf("engine: volume %s: free its extent: %w", v.Name, err)
	}
	p.Free = free
	return p, nil
}

func (extentKind) blocks(v volumeRecord) uint64 { return v.Extent.Blocks }

func (extentKind) used(v volumeRecord) []extent.Extent { return []extent.Extent{v.Extent} }

func (extentKind) describe(v volumeRecord, bs uint64, out *Volume) {
	out.OffsetBytes = v.Extent.Start * bs
}

func (extentKind) open(pool bdev.Device, v volumeRecord, blocks uint64) (volumeDevice, error) {
	d, err := part.New(v.Name, pool, v.Extent.Start, blocks, bdev.UUID(v.UUID))
	if err != nil {
		return nil, err // not a nil *part.Device in a non-nil interface
	}
	return d, nil
}

// prepare unmaps the range through the pool: the volume's statistics
// start at zero, and no host can see the blocks yet anyway.
func (extentKind) prepare(ctx context.Context, pool bdev.Device, r *reactor.Reactor, v volumeRecord, from, to uint64, progress func(uint64)) error {
	return unmapRange(ctx, pool, r, v.Extent.Start+from, to-from, progress)
}
