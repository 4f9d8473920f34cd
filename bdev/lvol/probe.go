package lvol

import (
	"context"
	"fmt"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/lvol/format"
	"github.com/strata-storage/strata/reactor"
)

// ErrNotPool reports a device that holds no volume store, not even a
// damaged one.
var ErrNotPool = format.ErrNotPool

// Probe reads dev's superblock slots, writing nothing, and returns the
// pool UUID of the volume store it holds: ErrNotPool when it holds none,
// another error when it holds a damaged one. Callers use it before Create
// (which overwrites whatever is there) to refuse formatting a pool.
func Probe(dev bdev.Device, r *reactor.Reactor) (bdev.UUID, error) {
	var pool bdev.UUID
	err := offline(dev, r, func(_ *Store, bio *blockIO) error {
		slots := make([]byte, format.SuperblockBytes)
		if err := bio.read(0, slots); err != nil {
			return err
		}
		sb, err := format.NewestSuperblock(slots, dev.Info().Size())
		if err != nil {
			return fmt.Errorf("lvol: probe %s: %w", dev.Info().Name, err)
		}
		pool = sb.Pool
		return nil
	})
	return pool, err
}

// Resize changes the volume's size through its store (ResizeVolume):
// the device grows or shrinks under a quiesce and tells its consumers.
func (v *Volume) Resize(ctx context.Context, blocks uint64) error {
	return v.s.ResizeVolume(ctx, v.Info().Name, blocks*v.s.bs)
}

// Store returns the store the volume is of.
func (v *Volume) Store() *Store { return v.s }
