package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/strata-storage/strata/bdev"
)

// VolumeSpec asks for a volume.
type VolumeSpec struct {
	Name      string
	Pool      string
	SizeBytes uint64 // a multiple of the pool's block size
}

// Volume describes a volume.
type Volume struct {
	Name        string `json:"name"`
	Pool        string `json:"pool"`
	UUID        string `json:"uuid"`
	NGUID       string `json:"nguid"`
	Serial      string `json:"serial"`
	SizeBytes   uint64 `json:"size_bytes"`
	BlockSize   uint32 `json:"block_size"`
	OffsetBytes uint64 `json:"offset_bytes"` // where the volume starts in its pool
	State       string `json:"state"`
	Error       string `json:"error,omitempty"`
	// Share is the NQN the volume is shared as, if it is.
	Share string `json:"share,omitempty"`
}

func (e *Engine) volumeView(name string) Volume {
	v, lv := e.st.volumes[name], e.volumes[name]
	bs := uint64(e.st.pools[v.Pool].BlockSize)
	out := Volume{
		Name: name, Pool: v.Pool, UUID: bdev.UUID(v.UUID).String(), NGUID: hex.EncodeToString(v.NGUID[:]),
		Serial: v.Serial, SizeBytes: lv.kind.blocks(v) * bs, BlockSize: uint32(bs), State: StateOnline,
	}
	lv.kind.describe(v, bs, &out)
	if lv.dev == nil {
		out.State, out.Error = StateFaulted, lv.err.Error()
	}
	if sh, ok := e.st.shares[name]; ok {
		out.Share = sh.NQN
	}
	return out
}

// Volumes lists the volumes by name.
func (e *Engine) Volumes() []Volume {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Volume, 0, len(e.st.volumes))
	for _, name := range slices.Sorted(maps.Keys(e.st.volumes)) {
		out = append(out, e.volumeView(name))
	}
	return out
}

// Volume returns the volume called name.
func (e *Engine) Volume(name string) (Volume, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.st.volumes[name]; !ok {
		return Volume{}, errorf(ErrNotFound, "volume %q not found", name)
	}
	return e.volumeView(name), nil
}

// VolumeDevice returns the block device of an online volume, for in-process
// users (tests, tools). It is valid until the volume is resized or deleted;
// close every channel to it before that.
func (e *Engine) VolumeDevice(name string) (bdev.Device, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	lv, ok := e.volumes[name]
	if !ok {
		return nil, errorf(ErrNotFound, "volume %q not found", name)
	}
	if lv.dev == nil {
		return nil, errorf(ErrConflict, "volume %q is faulted: %v", name, lv.err)
	}
	return lv.dev, nil
}

// CreateVolume carves a volume out of a pool: one contiguous extent, the
// first free one large enough. Its space reads back as zeroes. Asking again
// for an existing volume with the same pool and size returns it (created
// false); another spec under the same name is a conflict.
func (e *Engine) CreateVolume(ctx context.Context, spec VolumeSpec) (Volume, bool, error) {
	if err := bdev.ValidName(spec.Name); err != nil {
		return Volume{}, false, errorf(ErrInvalid, "volume name: %v", err)
	}
	if spec.SizeBytes == 0 {
		return Volume{}, false, errorf(ErrInvalid, "volume %q: size must be more than 0", spec.Name)
	}
	if err := e.begin(); err != nil {
		return Volume{}, false, err
	}
	defer e.mu.Unlock()
	if v, ok := e.st.volumes[spec.Name]; ok {
		cur := e.volumeView(spec.Name)
		if v.Pool != spec.Pool || cur.SizeBytes != spec.SizeBytes {
			return Volume{}, false, errorf(ErrConflict, "volume %q exists in pool %q with size %d bytes", spec.Name, v.Pool, cur.SizeBytes)
		}
		return cur, false, nil
	}
	p, ok := e.st.pools[spec.Pool]
	if !ok {
		return Volume{}, false, errorf(ErrNotFound, "pool %q not found", spec.Pool)
	}
	lp := e.pools[spec.Pool]
	if lp.dev == nil {
		return Volume{}, false, errorf(ErrConflict, "pool %q is faulted: %v", spec.Pool, lp.err)
	}
	bs := uint64(p.BlockSize)
	if spec.SizeBytes%bs != 0 {
		return Volume{}, false, errorf(ErrInvalid, "volume %q: size %d is not a multiple of pool %q's block size %d", spec.Name, spec.SizeBytes, spec.Pool, bs)
	}
	k := kinds[KindExtent]
	rec := volumeRecord{Name: spec.Name, Pool: spec.Pool, Kind: KindExtent, UUID: textUUID(bdev.NewUUID()), NGUID: hexID(bdev.NewUUID()), Serial: newSerial()}
	p, err := k.create(e.st, p, &rec, spec.SizeBytes/bs)
	if err != nil {
		return Volume{}, false, err
	}
	// A new volume must not show what a deleted one left in its space.
	if err := k.prepare(ctx, lp.dev, e.r, rec, 0, k.blocks(rec), func(uint64) {}); err != nil {
		return Volume{}, false, errorf(ErrDevice, "volume %q: clear its space in pool %q: %w", spec.Name, spec.Pool, err)
	}
	dev, err := k.open(lp.dev, rec, k.blocks(rec))
	if err != nil {
		return Volume{}, false, fmt.Errorf("engine: volume %s: %w", spec.Name, err)
	}
	next := e.st.clone()
	next.pools[spec.Pool] = p
	next.volumes[spec.Name] = rec
	if err := e.commit(next); err != nil {
		return Volume{}, false, errors.Join(err, dev.Close())
	}
	e.volumes[spec.Name] = &liveVolume{kind: k, dev: dev}
	e.log.Info("volume created", "volume", spec.Name, "pool", spec.Pool, "size_bytes", spec.SizeBytes)
	return e.volumeView(spec.Name), true, nil
}

// newSerial returns a controller serial number: 20 hex digits.
func newSerial() string {
	var b [serialLen / 2]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b[:])
}

// ResizeVolume grows a volume to sizeBytes in place: the blocks after it in
// its pool must be free. Shrinking is refused (it would cut off data a
// host may be using); the same size is a no-op. The volume's device grows
// under a quiesce, once the new extent is on disk: whoever has it open (a
// share's target) sees the new size from its next I/O on, and hears of it
// through the device's resize event.
func (e *Engine) ResizeVolume(ctx context.Context, name string, sizeBytes uint64) (Volume, error) {
	if err := e.begin(); err != nil {
		return Volume{}, err
	}
	defer e.mu.Unlock()
	v, ok := e.st.volumes[name]
	if !ok {
		return Volume{}, errorf(ErrNotFound, "volume %q not found", name)
	}
	lv := e.volumes[name]
	if lv.dev == nil {
		return Volume{}, errorf(ErrConflict, "volume %q is faulted: %v", name, lv.err)
	}
	p := e.st.pools[v.Pool]
	bs := uint64(p.BlockSize)
	cur := lv.kind.blocks(v) * bs
	switch {
	case sizeBytes%bs != 0 || sizeBytes == 0:
		return Volume{}, errorf(ErrInvalid, "volume %q: size %d is not a positive multiple of the block size %d", name, sizeBytes, bs)
	case sizeBytes < cur:
		return Volume{}, errorf(ErrInvalid, "volume %q: shrinking from %d to %d bytes is refused: it would cut off data", name, cur, sizeBytes)
	case sizeBytes == cur:
		return e.volumeView(name), nil
	}
	old := v
	p, err := lv.kind.grow(e.st, p, &v, sizeBytes/bs)
	if err != nil {
		return Volume{}, err
	}
	if err := lv.kind.prepare(ctx, e.pools[v.Pool].dev, e.r, v, lv.kind.blocks(old), lv.kind.blocks(v), func(uint64) {}); err != nil {
		return Volume{}, errorf(ErrDevice, "volume %q: clear the space it grows into: %w", name, err)
	}
	// The new size is on disk before any host can write into it.
	prev := e.st
	next := e.st.clone()
	next.pools[v.Pool] = p
	next.volumes[name] = v
	if err := e.commit(next); err != nil {
		return Volume{}, err
	}
	if err := lv.dev.Resize(ctx, lv.kind.blocks(v)); err != nil {
		// Nothing used the new space: give it back.
		return Volume{}, errors.Join(errorf(ErrDevice, "volume %q: %w", name, err), e.commit(prev))
	}
	e.log.Info("volume resized", "volume", name, "from_bytes", cur, "to_bytes", sizeBytes)
	return e.volumeView(name), nil
}

// DeleteVolume frees a volume's extent. A shared volume, or one with
// channels open, is refused.
func (e *Engine) DeleteVolume(_ context.Context, name string) error {
	if err := e.begin(); err != nil {
		return err
	}
	defer e.mu.Unlock()
	v, ok := e.st.volumes[name]
	if !ok {
		return errorf(ErrNotFound, "volume %q not found", name)
	}
	if sh, ok := e.st.shares[name]; ok {
		return errorf(ErrConflict, "volume %q is shared as %s: remove the share first", name, sh.NQN)
	}
	lv := e.volumes[name]
	if lv.dev != nil {
		if n := lv.dev.OpenChannels(); n > 0 {
			return errorf(ErrConflict, "volume %q is in use: %d channels open", name, n)
		}
	}
	next := e.st.clone()
	p, err := lv.kind.free(next.pools[v.Pool], v)
	if err != nil {
		return err
	}
	next.pools[v.Pool] = p
	delete(next.volumes, name)
	if err := e.commit(next); err != nil {
		return err
	}
	delete(e.volumes, name)
	e.log.Info("volume deleted", "volume", name, "pool", v.Pool)
	if lv.dev != nil {
		if err := lv.dev.Close(); err != nil {
			return fmt.Errorf("engine: volume %s deleted, but its device did not close: %w", name, err)
		}
	}
	return nil
}
