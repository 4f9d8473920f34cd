package engine

import (
	"context"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/engine/extent"
	"github.com/strata-storage/strata/reactor"
)

// volumeKind is what differs between kinds of volume (volumeRecord.Kind):
// how a volume's blocks are kept in its pool, what creating, growing and
// deleting one does to the pool's space, the device a volume is seen
// through, and the device work new blocks need before hosts may see them.
// Everything else (names, identities, states, shares, waiting, crash
// safety) is the engine's, the same for every kind.
//
// The planning methods are pure functions of the records they are given
// and run under the engine's mutex; open is cheap (no I/O); prepare is the
// long device work and runs on a worker, outside the mutex.
type volumeKind interface {
	// create plans a new volume of blocks blocks in pool p: it fills the
	// kind's fields of v and returns p with the space taken. It refuses
	// (ErrInvalid, ErrNoSpace) what the pool cannot hold.
	create(st *state, p poolRecord, v *volumeRecord, blocks uint64) (poolRecord, error)
	// grow plans growing v to blocks blocks (more than it has): it updates
	// v and returns p with the space taken.
	grow(st *state, p poolRecord, v *volumeRecord, blocks uint64) (poolRecord, error)
	// free returns p with v's space given back.
	free(p poolRecord, v volumeRecord) (poolRecord, error)
	// blocks returns v's size in blocks: all of it, ready or not.
	blocks(v volumeRecord) uint64
	// used returns the pool space v holds, for the state's checks.
	used(v volumeRecord) []extent.Extent
	// describe fills the kind's fields of v's view; bs is the block size.
	describe(v volumeRecord, bs uint64, out *Volume)
	// open returns v's device over its pool's device, showing its first
	// blocks blocks (blocks > 0).
	open(pool bdev.Device, v volumeRecord, blocks uint64) (volumeDevice, error)
	// prepare does the device work blocks [from, to) of v need before
	// hosts see them, through channels on r. It calls progress with the
	// blocks done so far (from the start of the range) after each step,
	// and returns ctx's error once ctx is done, after the step in flight:
	// it never leaves I/O behind. The work is idempotent: after a crash it
	// is done again from its last recorded progress.
	prepare(ctx context.Context, pool bdev.Device, r *reactor.Reactor, v volumeRecord, from, to uint64, progress func(done uint64)) error
}

// kinds are the volume kinds the engine knows, by their names in the state
// file. A new kind is a file implementing volumeKind and a line here.
var kinds = map[string]volumeKind{
	KindExtent: extentKind{},
}

// volumeDevice is what the engine needs of a volume's device: a device it
// can tell in use from idle, and grow in place under a quiesce (as
// part.Device does), telling its consumers with bdev.EventResized.
type volumeDevice interface {
	bdev.Device
	OpenChannels() int
	Resize(ctx context.Context, blocks uint64) error
}
